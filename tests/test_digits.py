"""The int8-digit convolutions of g_a and g_s (tfcodec/layers/digits.py):
the same integer sums as a float64 convolution, on either path."""

import numpy as np
import pytest
import tensorflow as tf

from tfcodec.layers import digits

# (kernel size, stride, transposed, input height, width)
GEOMETRIES = [(5, 2, False, 16, 24), (3, 1, False, 9, 7), (1, 1, False, 8, 8),
              (3, 2, False, 7, 9), (5, 2, True, 8, 12), (3, 2, True, 5, 7),
              (4, 2, True, 6, 6), (3, 1, True, 5, 5)]


@pytest.mark.parametrize("path", ["convolution", "matmul", "float64"])
@pytest.mark.parametrize("size,stride,transposed,height,width", GEOMETRIES)
def test_digit_sums_equal_float64_convolution(size, stride, transposed,
                                              height, width, path):
  """Every path gives the same sums: oneDNN's int8 convolution of the digit
  planes, int8 products of their patches, or a float64 convolution."""
  if path != "float64" and not digits.int8_products_available():
    pytest.skip("no oneDNN int8 products in this build")
  if path == "convolution" and not digits.int8_convolution_available():
    pytest.skip("no oneDNN int8 convolution in this build")
  rng = np.random.default_rng(size * 100 + stride * 10 + height)
  in_channels, out_channels = 6, 5
  # The extremes of both ranges, then random values.
  activations = rng.integers(-2 ** 13, 2 ** 13,
                             (1, height, width, in_channels))
  activations.flat[:2] = [-2 ** 13, 2 ** 13 - 1]
  shape = ((size, size, out_channels, in_channels) if transposed
           else (size, size, in_channels, out_channels))
  kernel = rng.integers(-digits.WEIGHT_LIMIT, digits.WEIGHT_LIMIT + 1, shape)
  kernel.flat[:2] = [-digits.WEIGHT_LIMIT, digits.WEIGHT_LIMIT]
  x = activations.astype(np.float64)
  w = kernel.astype(np.float64)
  if transposed:
    want = tf.nn.conv2d_transpose(
        x, w, [1, height * stride, width * stride, out_channels], stride,
        "SAME").numpy()
  else:
    want = tf.nn.conv2d(x, w, stride, "SAME").numpy()
  convolution = digits.DigitConvolution(w, (stride, stride), transposed)
  convolution.use_int8 = path != "float64"
  convolution.use_convolution = path == "convolution"
  # Traced, as the coders run it (eagerly the convolution path falls back
  # to the patches).
  got = tf.function(convolution)(tf.constant(activations,
                                             tf.float32)).numpy()
  np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("transposed", [True, False])
def test_scaled_sums_equal_rescaled_float64_sums(transposed, compiled):
  """`DigitConvolution.scaled` (the transforms' path: combine, scale and
  round in one step, XLA-compiled for large outputs) gives exact._rescale of
  the float64 sums bit for bit, on a layer above the compiled size."""
  from tfcodec.layers import exact
  if not digits.int8_products_available():
    pytest.skip("no oneDNN int8 products in this build")
  if compiled and not digits.compiled_scaling_available():
    pytest.skip("no XLA in this build")
  rng = np.random.default_rng(7)
  # 64 x 64 positions by 256 columns (before depth_to_space for the
  # transposed one): 2^20, the compiled size.
  shape = (3, 3, 64, 16) if transposed else (3, 3, 16, 256)
  out_axis = 2 if transposed else 3
  # Output channels of very different magnitudes (their own shifts).
  channel_scales = np.exp2(rng.integers(-6, 6, shape[out_axis]))
  kernel = rng.normal(size=shape) * (channel_scales[:, None] if transposed
                                     else channel_scales)
  integers, kernel_shift = digits.quantize_kernel(kernel, out_axis)
  convolution = digits.DigitConvolution(integers, (2, 2) if transposed
                                        else (1, 1), transposed)
  convolution.compiled = compiled
  x = tf.constant(rng.normal(size=(1, 64, 64, shape[2 + transposed]))
                  * 3., tf.float32)
  activations, shift = digits.quantize_activations(x)
  shift = tf.cast(shift, tf.int64)
  want = exact._rescale(convolution(activations), shift,  # pylint: disable=protected-access
                        tf.constant(kernel_shift)).numpy()
  scale = (exact.pow2(-shift[0, 0, 0, 0]) *
           exact.pow2(tf.constant(-kernel_shift)))
  got = tf.function(convolution.scaled)(activations, scale).numpy()
  assert got.shape == want.shape == ((1, 128, 128, 64) if transposed
                                     else (1, 64, 64, 256))
  np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("path", ["convolution", "matmul", "float64"])
def test_scaled_float_equals_scaled_of_quantized_activations(path, compiled):
  """`scaled_float` (the layers' path: quantization and digit planes in one
  XLA-compiled pass for large inputs) gives `scaled` of
  `quantize_activations`, bit for bit, on every path."""
  if path != "float64" and not digits.int8_products_available():
    pytest.skip("no oneDNN int8 products in this build")
  if path == "convolution" and not digits.int8_convolution_available():
    pytest.skip("no oneDNN int8 convolution in this build")
  if compiled and not digits.compiled_planes_available():
    pytest.skip("no XLA in this build")
  rng = np.random.default_rng(8)
  kernel = rng.normal(size=(3, 3, 16, 8))
  integers, kernel_shift = digits.quantize_kernel(kernel, 3)
  convolution = digits.DigitConvolution(integers, (2, 2))
  convolution.use_int8 = path != "float64"
  convolution.use_convolution = path == "convolution"
  convolution.compiled_planes = compiled
  # 256 x 256 x 16 = 2^20 inputs: the compiled size.
  x = tf.constant(rng.normal(size=(1, 256, 256, 16)) * 5., tf.float32)
  activations, shift = digits.quantize_activations(x)
  scale = digits.pow2(-tf.cast(shift[0, 0, 0, 0], tf.int64)) * digits.pow2(
      tf.constant(-kernel_shift))
  want = tf.function(convolution.scaled)(activations, scale).numpy()
  got = tf.function(convolution.scaled_float)(
      x, tf.constant(kernel_shift)).numpy()
  assert got.shape == (1, 128, 128, 8)
  np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_compiled_digit_planes_match_plain_ops():
  if not digits.compiled_planes_available():
    pytest.skip("no XLA in this build")
  rng = np.random.default_rng(9)
  x = rng.normal(size=(1, 64, 64, 256)).astype(np.float32)
  x[0, 0, 0, :4] = [np.nan, np.inf, -3e38, 0.]
  got = digits._digit_planes_compiled(tf.constant(x))  # pylint: disable=protected-access
  want = digits.digit_planes(tf.constant(x))
  for g, w in zip(got, want):
    np.testing.assert_array_equal(g.numpy(), w.numpy())
  assert got[0].dtype == tf.uint8 and int(got[0].numpy().max()) < 128


def test_quantize_kernel_keeps_two_digits():
  rng = np.random.default_rng(3)
  kernel = rng.normal(size=(3, 3, 4, 7)) * np.exp2(rng.integers(-20, 20, 7))
  integers, shift = digits.quantize_kernel(kernel, 3)
  assert np.abs(integers).max() <= digits.WEIGHT_LIMIT
  # Each channel uses its range: its peak lands in the top octave.
  peaks = np.abs(integers).max(axis=(0, 1, 2))
  assert (peaks >= 2 ** 13 - 1).all(), peaks
  # Rounded to the nearest step of the channel's grid.
  assert (np.abs(integers * np.exp2(-shift) - kernel)
          <= .5 * np.exp2(-shift)).all()


def test_quantize_activations_range_and_scale():
  x = tf.constant([[[[3.0, -0.001], [1.5, -3.0]]]])
  integers, shift = digits.quantize_activations(x)
  assert int(shift[0, 0, 0, 0]) == 11  # 3 = 1.5 * 2^1: 3 * 2^11 in [2^12, 2^13)
  np.testing.assert_array_equal(integers.numpy().ravel(),
                                [6144, -2, 3072, -6144])
  big = tf.constant([[[[1.0, -1.0, 0.99999994]]]])
  integers, _ = digits.quantize_activations(big)
  assert integers.numpy().max() <= 2 ** 13 - 1
  assert integers.numpy().min() >= -2 ** 13


def _digit_row_dense(kernel, bias, int8):
  dense = digits.DigitRowDense(kernel, bias, tf.nn.leaky_relu)
  if not int8:
    dense.use_int8 = False
    dense._kernel = digits.quantize_columns(kernel)[0]
  return dense


@pytest.mark.parametrize("int8", [True, False])
def test_digit_row_dense_is_per_row_exact_and_close_to_float(int8):
  """The wavefront loop's per-step networks: a row's result does not depend
  on the rows beside it (each step codes another set of positions), on
  tracing or on the path (int8 digits or the float64 fallback), and stays
  within 14 bits of the float network."""
  if int8 and not digits.int8_products_available():
    pytest.skip("no oneDNN int8 products in this build")
  rng = np.random.default_rng(11)
  kernel = tf.constant(rng.normal(size=(300, 40)) * .05, tf.float32)
  bias = tf.constant(rng.normal(size=40), tf.float32)
  # Rows of very different magnitudes: each keeps its own 14 bits.
  x = tf.constant(rng.normal(size=(23, 300))
                  * 10. ** rng.integers(-4, 4, (23, 1)), tf.float32)
  dense = _digit_row_dense(kernel, bias, int8)
  full = dense(x).numpy()
  parts = np.concatenate([dense(x[:1]).numpy(), dense(x[1:9]).numpy(),
                          dense(x[9:]).numpy()])
  np.testing.assert_array_equal(parts, full)
  traced = tf.function(lambda rows: _digit_row_dense(kernel, bias, int8)(rows))
  np.testing.assert_array_equal(traced(x).numpy(), full)
  other = _digit_row_dense(kernel, bias, not int8 or
                           not digits.int8_products_available())
  np.testing.assert_array_equal(other(x).numpy(), full)
  want = tf.nn.leaky_relu(x @ kernel + bias).numpy()
  row_peaks = np.abs(want).max(axis=1, keepdims=True)
  assert (np.abs(full - want) <= 2e-3 * row_peaks + 1e-6).all()


def test_quantize_columns_is_quantize_kernel_in_graph_ops():
  rng = np.random.default_rng(5)
  kernel = rng.normal(size=(50, 9)) * np.exp2(rng.integers(-20, 20, 9))
  want, want_shift = digits.quantize_kernel(kernel.astype(np.float32), 1)
  got, shift = digits.quantize_columns(tf.constant(kernel, tf.float32))
  np.testing.assert_array_equal(got.numpy(), want)
  np.testing.assert_array_equal(shift.numpy(), want_shift)


@pytest.mark.parametrize("name", [
    "bmshj2018-hyperprior",
    pytest.param("cheng2020-anchor", marks=pytest.mark.slow)])
def test_models_on_digits_round_trip_and_match_the_float64_fallback(
    monkeypatch, name):
  """Tiny models' convolutions are below the fan-in where the transforms
  switch to digits, so this lowers it: every g_a / g_s convolution (strided,
  transposed, sub-pixel) then runs on digits. Decoding equals the encoder-side
  reconstruction, and the float64 fallback (what runs without oneDNN)
  decodes the same file to the same pixels."""
  from conftest import random_image
  from tfcodec.layers import exact
  from tfcodec.models import create_model
  from tfcodec.models.base import pad_to_multiple
  from tfcodec.testing import TINY
  monkeypatch.setattr(exact, "DIGITS_MIN_FAN_IN", 1)
  # And every int8 layer through the compiled scaling, where XLA runs.
  monkeypatch.setattr(digits, "COMPILED_MIN_OUTPUTS", 1)
  tf.keras.utils.set_random_seed(21)
  model = create_model(name, **TINY)
  model.freeze()
  convolutions = [m._digits for m in model.submodules  # pylint: disable=protected-access
                  if getattr(m, "_digits", None) is not None]
  # Every convolution of g_a and g_s, and g_a's GDNs.
  transforms = [m for t in model.transform_modules() for m in t.submodules
                if isinstance(m, exact._ExactMixin)  # pylint: disable=protected-access
                or (t is model.g_a and isinstance(m, exact.GDN))]
  assert len(convolutions) == len(transforms) > 4
  image = random_image(65, 97, seed=5)
  size = tf.constant([65, 97])
  strings, shapes = model.compress(image)
  decoded = model.decompress(strings, shapes, size).numpy()
  x = pad_to_multiple(tf.constant(image, tf.float32)[None] / 255., model.stride)
  if hasattr(model, "encode_latents"):
    # Context models: the coder's own y_hat (the forward pass's context
    # sees round(y), not the decoded neighbours).
    x_hat = model.g_s(model.encode_latents(x)[2])
  else:
    x_hat = model(x, training=False)["x_hat"]
  encoder_side = model._to_image(x_hat, size)  # pylint: disable=protected-access
  np.testing.assert_array_equal(decoded, encoder_side.numpy())
  # The int8 products of patches (oneDNN without its int8 convolution),
  # then float64 (no oneDNN): the same file, the same pixels.
  for attribute in ("use_convolution", "use_int8"):
    for convolution in convolutions:
      setattr(convolution, attribute, False)
    model._build_coding_functions()  # pylint: disable=protected-access
    np.testing.assert_array_equal(
        model.decompress(strings, shapes, size).numpy(), decoded)
    assert model.compress(image)[0][0].numpy() == strings[0].numpy()
