"""Bit-exact round trips and any-size coding, with tiny random models."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import random_image
from tfcodec import codec
from tfcodec.models.base import pad_to_multiple

NAMES = ["bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean"]


@pytest.mark.parametrize("name", NAMES)
def test_decode_equals_encoder_side_reconstruction(tiny_models, name):
  model = tiny_models[name]
  image = random_image(70, 90, seed=3)
  strings, shapes = model.compress(image)
  decoded = model.decompress(strings, shapes, tf.constant([70, 90])).numpy()
  # Encoder side: the forward pass with real rounding on the same padded input.
  x = pad_to_multiple(tf.constant(image, tf.float32)[None] / 255., model.stride)
  x_hat = model(x, training=False)["x_hat"]
  encoder_side = model._to_image(x_hat, tf.constant([70, 90])).numpy()
  np.testing.assert_array_equal(decoded, encoder_side)
  # Also bit-exact at the float level, before conversion to 8 bits.
  latent_x_hat = model.decompress_latents(strings, shapes).numpy()
  np.testing.assert_array_equal(latent_x_hat, x_hat.numpy())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("height,width", [(1, 1), (17, 5), (768, 512), (512, 768)])
def test_any_size_round_trips_through_the_container(tiny_models, name, height,
                                                    width):
  model = tiny_models[name]
  image = random_image(height, width, seed=height + width)
  data = codec.encode_image(model, image, quality=1)
  decoded = codec.decode_bytes(data, model=model)
  assert decoded.shape == (height, width, 3)
  assert decoded.dtype == np.uint8
  again = codec.decode_bytes(data, model=model)
  np.testing.assert_array_equal(decoded, again)


def test_padding_replicates_edges():
  x = tf.reshape(tf.range(6, dtype=tf.float32), (1, 2, 3, 1))
  padded = pad_to_multiple(x, 4).numpy()[0, ..., 0]
  assert padded.shape == (4, 4)
  np.testing.assert_array_equal(padded[:2, :3], [[0, 1, 2], [3, 4, 5]])
  np.testing.assert_array_equal(padded[:, 3], [2, 5, 5, 5])
  np.testing.assert_array_equal(padded[3], [3, 4, 5, 5])


@pytest.mark.parametrize("name", ["mbt2018-mean", "mbt2018", "mbt2018-mean-vr"])
def test_float_transforms_keep_the_entropy_path_exact(name):
  """freeze(exact_transforms=False): g_a / g_s run in float32, everything
  that decides the entropy parameters stays on the integer path, so a file
  written in either mode decodes in the other to the same latents (pixels
  within one level: only g_s' arithmetic differs)."""
  import tensorflow as tf
  from tfcodec.models import create_model
  from tfcodec.testing import tiny_config
  tf.keras.utils.set_random_seed(3)
  model = create_model(name, **tiny_config(name))
  image = random_image(70, 100, seed=4)
  model.freeze()
  tables = model.coding_tables()
  exact_file = model.compress(image)
  exact_pixels = model.decompress(*exact_file, [70, 100]).numpy()
  transforms = {id(m) for t in model.transform_modules()
                for m in [t, *t.submodules]}
  exact_layers = [m for m in model.submodules if hasattr(m, "prepare_exact")]
  assert all(m._exact is not None for m in exact_layers)
  model.freeze(tables, exact_transforms=False)
  assert not model.exact_transforms
  for m in exact_layers:
    # Float inside g_a / g_s, integer everywhere else (h_a, h_s, context).
    assert (m._exact is None) == (id(m) in transforms), m.name
  assert any(id(m) not in transforms for m in exact_layers)
  float_pixels = model.decompress(*exact_file, [70, 100]).numpy()
  assert np.abs(float_pixels.astype(int) - exact_pixels).max() <= 1
  # The float encoder's file decodes in exact mode to the same latents.
  float_file = model.compress(image)
  float_file_pixels = model.decompress(*float_file, [70, 100]).numpy()
  model.freeze(tables)
  back_in_exact = model.decompress(*float_file, [70, 100]).numpy()
  assert np.abs(back_in_exact.astype(int) - float_file_pixels).max() <= 1
