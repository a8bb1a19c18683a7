"""Parameter counts against ARCHITECTURES.md section 8, and model contracts."""

import numpy as np
import pytest
import tensorflow as tf

from tfcodec.models import create_model, quality_config

# (name, quality, published count from ARCHITECTURES.md section 8)
SPEC_COUNTS = [
    ("bmshj2018-factorized", 1, 2.998e6),
    ("bmshj2018-factorized", 6, 7.031e6),
    ("bmshj2018-hyperprior", 1, 5.076e6),
    ("bmshj2018-hyperprior", 6, 11.816e6),
    ("mbt2018-mean", 1, 7.028e6),
    ("mbt2018-mean", 5, 17.562e6),
    ("mbt2018", 1, 14.130e6),
    ("mbt2018", 5, 25.505e6),
    ("cheng2020-anchor", 1, 11.833e6),
    ("cheng2020-anchor", 4, 26.599e6),
    ("cheng2020-attn", 1, 13.183e6),
    ("cheng2020-attn", 4, 29.632e6),
    # The paper's model (official TF1 code): GMM head, transposed h_s.
    ("cheng2020-gmm", 1, 11.196e6),
    ("cheng2020-gmm", 4, 23.847e6),
    ("informer", 1, 10.940e6),
    ("informer", 5, 21.308e6),
]


@pytest.mark.parametrize("name,quality,expected", SPEC_COUNTS)
def test_parameter_count_matches_spec(name, quality, expected):
  model = create_model(name, quality)
  count = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
  assert abs(count - expected) / expected < 0.01, (name, quality, count)


def test_quality_table():
  assert quality_config("mbt2018-mean", 3) == (128, 192, 0.0067)
  assert quality_config("mbt2018-mean", 5) == (192, 320, 0.0250)
  assert quality_config("bmshj2018-hyperprior", 5) == (128, 192, 0.0250)
  assert quality_config("bmshj2018-hyperprior", 6) == (192, 320, 0.0483)
  assert quality_config("mbt2018-mean", 2, "ms-ssim")[2] == 4.58
  assert quality_config("mbt2018", 4) == (192, 192, 0.0130)
  assert quality_config("mbt2018", 5) == (192, 320, 0.0250)
  assert quality_config("cheng2020-attn", 3)[:2] == (128, 128)
  assert quality_config("cheng2020-gmm", 4)[:2] == (192, 192)
  with pytest.raises(ValueError):
    quality_config("mbt2018-mean", 9)


@pytest.mark.parametrize("name", ["bmshj2018-factorized", "bmshj2018-hyperprior",
                                  "mbt2018-mean", "tcm-s"])
def test_forward_contract(tiny_models, name):
  model = tiny_models[name]
  x = tf.random.uniform((2, 64, 128, 3))
  out = model(x, training=True)
  assert out["x_hat"].shape == x.shape
  assert set(out["bits"]) == set(model.string_names)
  for bits in out["bits"].values():
    assert bits.shape == (2,)
    assert np.all(np.isfinite(bits.numpy())) and np.all(bits.numpy() > 0)
  terms = model.rd_loss(x, out)
  assert np.isfinite(float(terms["loss"]))


def test_train_step_reduces_loss_and_skips_non_finite():
  model = create_model("mbt2018-mean", N=8, M=8, lmbda=0.01)
  optimizer = tf.keras.optimizers.Adam(1e-3)
  model.compile(optimizer=optimizer)
  optimizer.build(model.trainable_variables)
  x = tf.random.uniform((2, 64, 64, 3), seed=1)
  step = tf.function(model.train_step)
  first = float(step(x)["loss"])
  for _ in range(30):
    last = step(x)
  assert float(last["loss"]) < first
  before = [v.numpy().copy() for v in model.trainable_variables]
  terms = step(tf.fill((2, 64, 64, 3), float("nan")))
  assert float(terms["skipped"]) == 1.
  for b, v in zip(before, model.trainable_variables):
    np.testing.assert_array_equal(b, v.numpy())


def test_image_to_unit_has_the_same_bits_traced_and_eager():
  """The encoder's uint8 -> [0, 1] conversion runs inside a tf.function; a
  traced `x / 255.` differed from eager division in the last bit for about
  half the values, so the coded latents were not those of the forward pass
  (tiny TCM weights with seed 2 turned that into a different decode)."""
  from tfcodec.models.base import image_to_unit
  pixels = tf.constant(np.arange(256, dtype=np.uint8).reshape(16, 16))
  traced = tf.function(image_to_unit, input_signature=[
      tf.TensorSpec([None, None], tf.uint8)])(pixels).numpy()
  eager = image_to_unit(pixels).numpy()
  divided = (tf.cast(pixels, tf.float32) / 255.).numpy()
  np.testing.assert_array_equal(traced, eager)
  np.testing.assert_array_equal(eager, divided)
  np.testing.assert_array_equal(
      eager, np.arange(256, dtype=np.float32).reshape(16, 16) / np.float32(255))
