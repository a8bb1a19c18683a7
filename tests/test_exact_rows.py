"""Per-row exact arithmetic (tfcodec.layers.exact) for the coding loops.

The wavefront decoder runs the context and entropy-parameter networks (and
Informer's CA_s) on a different set of positions at every step than the
encoder-side or any other caller would. A position's result must therefore
not depend on which other rows share the call, on whether the call is traced
or eager, or on the summation order; and it must stay close to the float
network the model was trained with.
"""

import functools

import numpy as np
import pytest
import tensorflow as tf

from tfcodec.layers import exact
from tfcodec.models import create_model
from tfcodec.testing import TINY_INFORMER

RNG = np.random.default_rng(3)


def _rows(count, width, scale=1.):
  return tf.constant(RNG.normal(size=(count, width)) * scale, tf.float32)


def _split_call(fn, rows, sizes=(1, 4, 7, 13)):
  parts, start = [], 0
  for size in sizes:
    parts.append(fn(rows[start:start + size]).numpy())
    start += size
  return np.concatenate(parts)


def test_row_dense_is_per_row_and_close_to_float():
  kernel = _rows(96, 40, .1)
  bias = _rows(1, 40)[0]
  dense = exact.RowDense(kernel, bias, functools.partial(tf.nn.gelu,
                                                         approximate=False))
  # Rows of very different magnitudes: each row keeps its own 20 bits.
  x = _rows(25, 96) * tf.constant(10. ** RNG.integers(-4, 4, (25, 1)),
                                  tf.float32)
  full = dense(x).numpy()
  assert np.array_equal(_split_call(dense, x), full)
  assert np.array_equal(tf.function(dense)(x).numpy(), full)
  expected = tf.nn.gelu(x @ kernel + bias, approximate=False).numpy()
  np.testing.assert_allclose(full, expected, rtol=1e-4, atol=1e-4)


def test_row_dense_sums_are_exact_in_any_order():
  """Permuting the input features (and the kernel rows with them) changes
  the summation order of a float matmul, not the exact product."""
  kernel = _rows(512, 8)
  x = _rows(6, 512)
  order = RNG.permutation(512)
  straight = exact.RowDense(kernel)(x).numpy()
  permuted = exact.RowDense(tf.gather(kernel, order))(
      tf.gather(x, order, axis=1)).numpy()
  assert np.array_equal(straight, permuted)


def test_row_layer_norm_matches_keras_and_is_per_row():
  layer = tf.keras.layers.LayerNormalization(epsilon=1e-5)
  x = _rows(25, 48, 3.) + 5.
  expected = layer(x).numpy()  # builds gamma = 1, beta = 0
  layer.gamma.assign(RNG.normal(size=48))
  layer.beta.assign(RNG.normal(size=48))
  expected = layer(x).numpy()

  def norm(rows):
    return exact.row_layer_norm(rows, layer.gamma, layer.beta, layer.epsilon)

  full = norm(x).numpy()
  np.testing.assert_allclose(full, expected, rtol=1e-4, atol=1e-4)
  assert np.array_equal(_split_call(norm, x), full)
  assert np.array_equal(tf.function(norm)(x).numpy(), full)


@pytest.fixture(scope="module")
def informer():
  tf.keras.utils.set_random_seed(5)
  return create_model("informer", **TINY_INFORMER)


def test_informer_cross_attention_coding_path(informer):
  """CA_s: each position attends to the 8 tokens on its own, bit-identically
  in any grouping, traced or eager, and close to the Keras float block."""
  block = informer.global_attention
  queries = _rows(25, block.dim)
  tokens = _rows(8, block.dim)
  full = block.coding_call(queries, tokens).numpy()
  expected = block(queries[None], tokens[None])[0].numpy()
  np.testing.assert_allclose(full, expected, rtol=1e-4, atol=1e-4)
  assert np.array_equal(
      _split_call(lambda q: block.coding_call(q, tokens), queries), full)
  assert np.array_equal(tf.function(block.coding_call)(queries, tokens).numpy(),
                        full)


def test_informer_global_analysis_coding_path(informer):
  """CA_a (tokens attend to every position of y) in exact arithmetic: close
  to the float layer, and the same traced or eager."""
  analysis = informer.global_h_a
  y = tf.constant(RNG.normal(size=(1, 5, 7, informer.M)), tf.float32)
  coded = analysis.coding_call(y).numpy()
  np.testing.assert_allclose(coded, analysis(y).numpy(), rtol=1e-4, atol=1e-4)
  assert np.array_equal(tf.function(analysis.coding_call)(y).numpy(), coded)


@pytest.mark.parametrize("shifted", [False, True])
def test_swin_block_coding_path(shifted):
  """TCM's Swin blocks (window attention with the shifted mask, layer norms,
  GELU MLP) on the coding path: close to the float block, the same traced
  or eager, and each image's output independent of the batch it is in."""
  from tfcodec.layers.attention import SwinBlock
  tf.keras.utils.set_random_seed(7)
  block = SwinBlock(16, head_dim=8, window=4, shifted=shifted)
  x = tf.constant(RNG.normal(size=(2, 8, 12, 16)), tf.float32)
  expected = block(x).numpy()
  block.prepare_exact()
  coded = block(x).numpy()  # inference now takes the coding path
  np.testing.assert_allclose(coded, expected, rtol=1e-4, atol=1e-4)
  assert np.array_equal(block.coding_call(x[:1]).numpy(), coded[:1])
  assert np.array_equal(tf.function(block.coding_call)(x).numpy(), coded)
  # Training still runs the float path.
  assert np.array_equal(block(x, training=True).numpy(), expected)


def test_a_frozen_residual_block_is_the_same_traced_or_eager():
  """grappler's arithmetic optimizer turned `main + (sums + bias)` (the
  shortcut convolution's bias) into one AddN summing in another order, so a
  traced coder and an eager forward pass differed by an ulp on ~0.7% of a
  TCM block's values, enough to move decoded pixels. Biases are BiasAdds
  now, which that rewrite leaves alone."""
  from tfcodec.layers.residual import ResidualBlockDown
  tf.keras.utils.set_random_seed(11)
  block = ResidualBlockDown(32, name="down")
  x = tf.constant(RNG.uniform(size=(1, 64, 64, 16)), tf.float32)
  block(x)
  for variable in block.trainable_variables:  # biases too, not zeros
    variable.assign(tf.random.normal(variable.shape, stddev=.2))
  assert exact.prepare_model(block) >= 4
  eager = block(x).numpy()
  traced = tf.function(lambda t: block(t))(x).numpy()
  np.testing.assert_array_equal(traced, eager)


@pytest.mark.parametrize("form,inverse", [("simplified", False),
                                          ("simplified", True),
                                          ("classic", False),
                                          ("classic", True)])
def test_gdn_float64_path_compiled_equals_plain(monkeypatch, form, inverse):
  """g_s's exact GDN (float64 sums; part of the format) runs its
  element-wise steps XLA-compiled on large tensors: bit for bit what the
  plain ops give, in both forms and directions."""
  from tfcodec.layers import gdn, igdn
  if not exact.gdn_compiled_available():
    pytest.skip("no XLA in this build")
  tf.keras.utils.set_random_seed(4)
  layer = (igdn if inverse else gdn)(form=form)
  x = tf.constant(RNG.normal(size=(1, 128, 128, 64)) * 3., tf.float32)
  layer(x, training=True)
  # Mixing channels: tfc initialises gamma to a scaled identity.
  parameter = layer.gamma_parameter
  parameter.variable.assign(parameter.variable + tf.constant(
      RNG.uniform(0., .05, (64, 64)), tf.float32))
  layer.prepare_exact()
  compiled = tf.function(lambda t: layer(t, training=False))(x).numpy()
  monkeypatch.setattr(exact, "gdn_compiled_available", lambda: False)
  plain = tf.function(lambda t: layer(t, training=False))(x).numpy()
  np.testing.assert_array_equal(compiled.view(np.uint32), plain.view(np.uint32))
  # And what an eager call gives (a traced x / sqrt(p) once became
  # x * rsqrt(p)).
  eager = layer(x, training=False).numpy()
  np.testing.assert_array_equal(eager.view(np.uint32), plain.view(np.uint32))
  floating = layer(x, training=True).numpy()
  np.testing.assert_allclose(compiled, floating, rtol=1e-4, atol=1e-5)
