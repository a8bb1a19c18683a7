"""Determinism matrix on tiny models and small images, in subprocesses:
intra-op threads 1/2/4 x TF_ENABLE_ONEDNN_OPTS 0/1, own and cross decodes,
and batched against single forward passes (make determinism: Kodak, shipped
weights)."""

import numpy as np
import pytest
from PIL import Image

from conftest import random_image
from tfcodec import determinism

EXACT_MODELS = ("bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean")


# make test: threads 1 and 4 (on a 2-core machine, 4 splits the sums
# differently from 1 and from 2) x oneDNN off/on; make test-all adds 2
# against 1, so the two instances together cover determinism.THREADS.
@pytest.mark.parametrize("threads", [
    (1, 4), pytest.param((1, 2), marks=pytest.mark.slow)])
def test_matrix_has_no_mismatch(tmp_path, tiny_models, tiny_snapshots,
                                threads):
  paths = []
  for index, (height, width) in enumerate([(48, 80), (48, 80), (37, 29)]):
    path = tmp_path / f"img{index}.png"
    Image.fromarray(random_image(height, width, seed=index)).save(path)
    paths.append(str(path))
  # The hyperprior architectures. Six configurations of every tiny model
  # took over 15 minutes here, so the context models (mbt2018, the paper
  # Cheng 2020, Informer) change one setting at a time in
  # tests/test_context_models.py and TCM's decoder is held to its encoder's
  # forward pass in tests/test_tcm.py.
  records, mismatches = determinism.run_matrix(
      "tiny:" + "+".join(EXACT_MODELS), paths, tiny_snapshots,
      threads=threads, log=None, workdir=str(tmp_path / "work"))
  assert mismatches == []
  assert len(records) == 2 * len(threads)
  for config in records.values():
    assert len(config) == len(EXACT_MODELS) * len(paths)
    assert all("cross" in r for r in config.values())
    batched = [r for r in config.values() if r["image"] == "img0.png"]
    assert all(r["batch"] == "ok" for r in batched)


def test_batch_check_compares_bits(tiny_models):
  model = tiny_models["mbt2018-mean"]
  images = [random_image(32, 32, seed=s) for s in range(3)]
  assert determinism._batch_check(model, images) == {(32, 32): "ok"}


def test_exact_coding_path_is_close_to_float(tiny_models):
  """The integer arithmetic used for coding stays within float32 noise of
  the training arithmetic (it changes how sums are done, not the model)."""
  import tensorflow as tf
  model = tiny_models["bmshj2018-hyperprior"]
  x = tf.constant(random_image(64, 64)[None], tf.float32) / 255.
  # g_a runs on 14-bit digits throughout (a step of 2^-13 of each layer's
  # peak; measured 6.3e-4 of the peak after four layers), g_s's small
  # convolutions and GDNs on 20-bit float64 sums.
  for transform, tolerance, inputs in ((model.g_a, 1.5e-3, x),
                                       (model.g_s, 1e-4, None)):
    if inputs is None:
      inputs = tf.round(model.g_a(x, training=True))
    exact = transform(inputs, training=False)
    floating = transform(inputs, training=True)
    scale = float(tf.reduce_max(tf.abs(floating)))
    assert (float(tf.reduce_max(tf.abs(exact - floating)))
            < tolerance * scale + 1e-6)
    np.testing.assert_array_equal(exact.numpy(),
                                  transform(inputs, training=False).numpy())


def test_frozen_forward_pass_rounds_z_as_the_coder_does():
  """A frozen model's eval forward pass is what the decoder reconstructs,
  even when its stored tables' offsets differ from the ones tfc would
  recompute from the prior (as tables built on another machine may)."""
  from tfcodec.entropy.models import FactorizedPrior
  prior = FactorizedPrior(4)
  rng = np.random.default_rng(3)
  latent = rng.normal(scale=3., size=(2, 5, 6, 4)).astype(np.float32)
  unfrozen_hat, unfrozen_bits = prior(latent, training=False)
  prior.freeze()
  frozen_hat, frozen_bits = prior(latent, training=False)
  # Same offsets: the same rounding and tfc's bits, per batch element.
  np.testing.assert_array_equal(frozen_hat, unfrozen_hat)
  np.testing.assert_allclose(frozen_bits, unfrozen_bits, rtol=1e-5)
  tables = prior.coding_tables()
  tables["quantization_offset"] = tables["quantization_offset"] + 0.25
  prior.freeze(tables)
  latent_hat, bits = prior(latent, training=False)
  decoded = prior.decompress(prior.compress(latent), [5, 6])
  np.testing.assert_array_equal(latent_hat, decoded)
  assert not np.array_equal(latent_hat, unfrozen_hat)
  assert bits.shape == (2,)
  np.testing.assert_allclose(
      bits, [float(prior.bits(latent_hat[i:i + 1])) for i in range(2)],
      rtol=1e-5)
