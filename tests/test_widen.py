"""Widening a trained mean-scale hyperprior (tfcodec.train.widen): the wider
network starts as the narrow one, image for image and bit for bit."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import random_image
from tfcodec import zoo
from tfcodec.models import LAMBDAS, create_model
from tfcodec.train.widen import widen


def _trained_like(model, seed):
  """Perturbs every variable, so no zero or identity of a fresh init hides
  a mistake in where the widening puts things."""
  rng = np.random.default_rng(seed)
  for variable in model.trainable_variables:
    value = variable.numpy()
    variable.assign(value + 0.05 * np.abs(value).mean() *
                    rng.standard_normal(value.shape).astype(value.dtype))


@pytest.mark.parametrize("name, ladder", [
    ("mbt2018-mean", None), ("mbt2018-mean-vr", (3, 4, 5))])
def test_widened_model_reconstructs_the_same_at_the_same_bits(
    tmp_path, name, ladder):
  tf.keras.utils.set_random_seed(5)
  kwargs = {} if name == "mbt2018-mean" else dict(
      lmbdas=(0.0018, 0.0035, 0.0067, 0.0130))
  narrow = create_model(name, 3, N=8, M=12, **kwargs)
  _trained_like(narrow, seed=1)
  path = str(tmp_path / "narrow.npz")
  zoo.save_weights(narrow, path, 3)
  narrow = zoo.load_model(path=path, freeze=False)  # as stored (float16)

  wide_kwargs = {} if ladder is None else dict(
      lmbdas=tuple(LAMBDAS["mse"][q - 1] for q in ladder))
  # 32 new z channels: enough that a prior putting zeros in its tail shows.
  wide = create_model(name, 3, N=40, M=20, **wide_kwargs)
  widen(wide, path)
  if ladder is not None:
    narrow.set_quality(3)
    wide.set_quality(3)
  x = tf.constant(random_image(128, 128, seed=3)[None], tf.float32) / 255.

  def pad(t, channels):
    return tf.pad(t, [[0, 0], [0, 0], [0, 0], [0, channels - t.shape[-1]]])

  def close(a, b):
    # Float sums over more (zero) inputs may group differently: ulps only.
    b = b.numpy()
    np.testing.assert_allclose(a.numpy(), b, atol=1e-5 * np.abs(b).max())

  # Stage by stage, each fed the narrow model's own input, so a rounding
  # flipped by an ulp cannot hide or fake a mistake.
  y = narrow.analysis(x)
  y_wide = wide.analysis(x)
  close(y_wide[..., :12], y)
  assert not y_wide[..., 12:].numpy().any()
  z = narrow.h_a(y)
  z_wide = wide.h_a(pad(y, 20))
  close(z_wide[..., :8], z)
  assert not z_wide[..., 8:].numpy().any()
  z_hat, z_bits = narrow.z_prior(z, training=False)
  _, z_bits_wide = wide.z_prior(pad(z, 40), training=False)
  scales, means = narrow.entropy_parameters(z_hat)
  scales_wide, means_wide = wide.entropy_parameters(pad(z_hat, 40))
  close(scales_wide[..., :12], scales)
  close(means_wide[..., :12], means)
  # A new channel's scale index 0 is the table's smallest scale, its mean 0.
  assert not scales_wide[..., 12:].numpy().any()
  assert not means_wide[..., 12:].numpy().any()
  y_hat, y_bits = narrow.y_conditional(y, scales, means, training=False)
  _, y_bits_wide = wide.y_conditional(
      pad(y, 20), pad(scales, 20), pad(means, 20), training=False)
  # The new channels' zeros cost ~0 bits: y's at scale 0.11 (1e-5 bits),
  # z's under a narrow prior centred on 0 (0.02 bits; with tfc's random
  # density biases, 0.5 bits per zero).
  for old, new, new_symbols, bound in (
      (y_bits, y_bits_wide, 8 * 8 * 8, 1e-3),
      (z_bits, z_bits_wide, 2 * 2 * 32, 0.05)):
    old, new = float(tf.reduce_sum(old)), float(tf.reduce_sum(new))
    assert 0. <= new - old < bound * new_symbols, (old, new)
  close(wide.synthesis(pad(y_hat, 20)), narrow.synthesis(y_hat))

  # The new capacity is live: the new channels get gradients at once.
  with tf.GradientTape() as tape:
    loss = wide.rd_loss(x, wide(x, training=True))["loss"]
  kernel = wide.g_a.layers[-1].kernel
  grad = tape.gradient(loss, kernel).numpy()
  assert np.abs(grad[..., 12:]).max() > 0.

  if ladder is not None:
    # q3 and q4 keep their gains; q5 starts from q4's, scaled by
    # sqrt(lambda_5 / lambda_4); the new channels' gains are 1.
    np.testing.assert_allclose(wide.log_gains.numpy()[:2, :12],
                               narrow.log_gains.numpy()[2:, :], rtol=1e-6)
    np.testing.assert_allclose(
        wide.log_gains.numpy()[2, :12],
        narrow.log_gains.numpy()[3] + 0.5 * np.log(0.0250 / 0.0130),
        rtol=1e-5)
    assert not wide.log_gains.numpy()[:, 12:].any()


def test_widening_refuses_another_architecture_or_a_narrower_target(tmp_path):
  source = create_model("mbt2018-mean", 3, N=8, M=12)
  path = str(tmp_path / "narrow.npz")
  zoo.save_weights(source, path, 3)
  with pytest.raises(ValueError, match="cannot widen"):
    widen(create_model("mbt2018-mean", 3, N=8, M=8), path)
  with pytest.raises(ValueError, match="widening is for"):
    widen(create_model("bmshj2018-hyperprior", 3, N=8, M=12), path)


def test_a_run_starts_from_the_widened_file(tmp_path):
  from PIL import Image
  from tfcodec.train import loop
  images = tmp_path / "images"
  images.mkdir()
  for i in range(2):
    Image.fromarray(random_image(72, 72, seed=i)).save(images / f"{i}.png")
  source = create_model("mbt2018-mean", 3, N=8, M=12)
  path = str(tmp_path / "narrow.npz")
  zoo.save_weights(source, path, 3)
  run_dir = str(tmp_path / "run")
  model = loop.train("mbt2018-mean", 5, train_glob=str(images), run_dir=run_dir,
                     patch_size=64, batch_size=2, steps=1, lr=1e-5,
                     widen_from=path, log_every=1, eval_every=100,
                     model_kwargs=dict(N=12, M=16), echo=False)
  events = [r["event"] for r in loop.read_log(run_dir)]
  assert "widen_from" in events
  # One small step later the narrow part is still the file's.
  np.testing.assert_allclose(model.g_a.layers[0].kernel.numpy()[..., :8],
                             source.g_a.layers[0].kernel.numpy(), atol=1e-3)
