"""Informer (Kim 2022): its two hyperpriors and the attention they use.

Round trips, export and parameter counts run with the other context models
(test_context_models.py, test_export.py, test_models.py).
"""

import numpy as np
import tensorflow as tf

from conftest import random_image, tiny_config
from tfcodec import codec
from tfcodec.models import create_model
from tfcodec.models.informer2022 import CrossAttentionBlock


def _model():
  tf.random.set_seed(2)
  return create_model("informer", **tiny_config("informer"))


def test_strings_and_latent_shapes(tiny_models):
  model = tiny_models["informer"]
  image = random_image(70, 100, seed=1)
  strings, shapes = model.compress(image)
  assert len(strings) == 3
  # Padded to 16 (no downsampling hyperprior): 80 x 112 -> y 5 x 7.
  assert [list(s.numpy()) for s in shapes] == [[5, 7], [5, 7], [1, 1]]
  assert codec.expected_latent_shapes(type(model), 70, 100) == [
      [5, 7], [5, 7], [1, 1]]


def test_a_fresh_local_hyperprior_starts_near_zero_with_a_narrow_prior():
  """local_z is a dense map at y's resolution: at Glorot scale (|z| ~ 2 on
  this input) under tfc's default prior (5.4 bits per symbol here) it cost
  ~0.2 bpp for thousands of steps before it carried anything."""
  model = _model()
  y = tf.random.stateless_normal((2, 8, 8, model.M), [1, 2])
  local_z = model.local_h_a(y)
  assert float(tf.reduce_max(tf.abs(local_z))) < .2
  _, bits = model.local_z_prior(local_z, training=False)
  assert float(tf.reduce_sum(bits)) / local_z.shape.num_elements() < 3.


def test_global_z_is_one_vector_whatever_the_image_size():
  model = _model()
  for height, width in ((16, 16), (64, 48), (128, 256)):
    global_z = model.global_h_a(tf.random.uniform((2, height, width, model.M)))
    assert global_z.shape == (2, 1, 1, model.M)
    tokens = model.global_h_s(global_z)
    assert tokens.shape == (2, 8, 2 * model.M)


def test_positions_attend_only_to_the_tokens():
  """CA_s is per position: changing one position's context changes that
  position's output alone, so the wavefront decoder can run it step by step."""
  block = CrossAttentionBlock(16, head_dim=8)
  rng = np.random.default_rng(0)
  context = tf.constant(rng.normal(size=(1, 20, 16)), tf.float32)
  tokens = tf.constant(rng.normal(size=(1, 8, 16)), tf.float32)
  base = block(context, tokens).numpy()
  changed = context.numpy().copy()
  changed[0, 7] += 3.
  out = block(tf.constant(changed), tokens).numpy()
  differs = np.any(out != base, axis=-1)[0]
  assert differs[7] and differs.sum() == 1
  # One position alone gives the same answer as inside the whole map.
  single = block(context[:, 7:8], tokens).numpy()
  np.testing.assert_allclose(single[0, 0], base[0, 7], rtol=1e-5, atol=1e-5)
  # ...while the tokens do matter (a new set; LayerNorm ignores a shift).
  other = block(context, tf.constant(rng.normal(size=(1, 8, 16)),
                                     tf.float32)).numpy()
  assert np.abs(other - base).max() > 1e-3


def test_global_tokens_see_every_position():
  """CA_a: global_z depends on content anywhere in y (it is global)."""
  model = _model()
  y = tf.random.uniform((1, 8, 8, model.M), seed=4)
  base = model.global_h_a(y).numpy()
  bumped = y.numpy().copy()
  bumped[0, 7, 7] += 5.
  assert np.abs(model.global_h_a(tf.constant(bumped)).numpy() - base).max() > 0
  # The local hyperprior is 1x1: a change at one position stays there.
  local = model.local_h_a(y).numpy()
  local_bumped = model.local_h_a(tf.constant(bumped)).numpy()
  moved = np.any(local_bumped != local, axis=-1)[0]
  assert moved[7, 7] and moved.sum() == 1


def test_bits_of_all_three_latents_are_counted(tiny_models):
  model = tiny_models["informer"]
  x = tf.random.uniform((1, 64, 64, 3), seed=6)
  bits = model(x, training=False)["bits"]
  assert set(bits) == {"y", "local_z", "global_z"}
  assert all(float(b[0]) > 0 for b in bits.values())
