"""Order-independent ("exact") convolutions, so coding is bit-identical.

Why: a float32 convolution sums its products in an order that depends on the
kernel library (oneDNN or Eigen), the number of threads and the batch size,
so two machines computing the same layer get results that differ in the last
bits. For a learned codec that is fatal: the decoder recomputes the entropy
parameters (scale indexes, means) from z_hat, and a scale index that lands on
the other side of an integer boundary than on the encoder makes the range
decoder desynchronise and the rest of the image garbage. Measured on this
project's machines: with float32 convolutions, changing the intra-op thread
count or TF_ENABLE_ONEDNN_OPTS changed the encoded bytes and the decoded
pixels of Kodak images.

How: when a model is frozen for coding, every convolution (and GDN's
channel-mixing 1x1 convolution) switches to integer arithmetic carried in
float64. Per output channel, weights are scaled by a power of two and
rounded to integers of at most `52 - ACTIVATION_BITS - ceil(log2(fan_in))`
bits; per image, activations are scaled by a power of two (from their
maximum, an order-independent reduction) and rounded to integers below
2^ACTIVATION_BITS. Every partial sum is then an integer below 2^52, which
float64 represents exactly, so the sum is the same in any order, on any
kernel, with any threads. Rescaling by powers of two is exact too; bias,
activation and GDN's division are element-wise IEEE operations, which give
the same result wherever they run. Training keeps the float32 path; only
`freeze()`d (coding) models use this one.

Cost: 20 bits of relative precision for activations and about 19 for
weights (below what 8-bit output resolves), and float64 convolutions (Eigen,
no oneDNN) are slower than float32 ones. The transforms g_a and g_s, where
most of that time went, use tfcodec.layers.digits instead: the same kind of
exact integer sums at 14 bits, as int8 products on oneDNN.
"""

import functools
import math

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

from tfcodec.layers import digits

ACTIVATION_BITS = 20
# float64 represents every integer up to 2^53; partial sums stay below 2^52.
_SUM_BITS = 52


# The exact power-of-two helpers live in digits (which this module imports).
pow2 = _pow2 = digits.pow2
_floor_log2 = digits.floor_log2


def quantize_activations(x):
  """float NHWC -> (integer-valued float64, shift [B,1,1,1]) with
  |integers| < 2^ACTIVATION_BITS; x ~= integers * 2^-shift per image.

  Computed in float32 where the input is float32 (half the memory traffic),
  with the same result as in float64: the maximum is exact, the peak is
  clipped to a normal float32 (2^-100), 2^shift is a normal float32, scaling
  by it is exact, and rounding a float32 below 2^20 is exact."""
  if x.dtype != tf.float32:
    x = tf.cast(x, tf.float64)
  # Garbage from a damaged file can overflow; keep it finite and bounded.
  x = tf.where(tf.math.is_finite(x), x, tf.zeros_like(x))
  peak = tf.reduce_max(tf.abs(x), axis=[1, 2, 3], keepdims=True)
  peak = tf.maximum(peak, tf.constant(2. ** -100, x.dtype))
  if x.dtype == tf.float32:
    shift, scale = digits.power_of_two_scale(peak, ACTIVATION_BITS)
    return tf.cast(tf.round(x * scale), tf.float64), tf.cast(shift, tf.int64)
  shift = (ACTIVATION_BITS - 1) - _floor_log2(peak)
  return tf.round(x * _pow2(shift)), shift


def quantize_kernel(kernel, out_axis):
  """numpy kernel -> (integer-valued float64 kernel, shift per out channel)."""
  kernel = np.asarray(kernel, np.float64)
  fan_in = kernel.size // kernel.shape[out_axis]
  weight_bits = _SUM_BITS - ACTIVATION_BITS - math.ceil(math.log2(fan_in))
  axes = tuple(i for i in range(kernel.ndim) if i != out_axis)
  peak = np.maximum(np.abs(kernel).max(axis=axes), 2. ** -100)
  # max|w| * 2^shift < 2^weight_bits, so |round(w * 2^shift)| <= 2^weight_bits
  # and fan_in * 2^weight_bits * 2^ACTIVATION_BITS <= 2^52.
  # frexp reads the binary exponent exactly (log2 could round differently
  # in another libm): peak = m * 2^e with m in [0.5, 1), so floor(log2) = e-1.
  floor_log2 = np.frexp(peak)[1].astype(np.int64) - 1
  shift = (weight_bits - 1) - floor_log2
  shape = [1] * kernel.ndim
  shape[out_axis] = -1
  integers = np.round(kernel * np.exp2(shift).reshape(shape))
  return integers, shift


def _piecewise_linear(activation):
  function = getattr(activation, "func", activation)  # functools.partial
  return function in (tf.nn.relu, tf.nn.leaky_relu, tf.keras.activations.relu)


def apply_activation(activation, outputs):
  """activation(outputs) for a float32 tensor, the same traced or eager.

  grappler's remapper rewrites a float32 GELU subgraph (erf or tanh form)
  into a fused kernel that rounds differently, so a traced function and an
  eager call would disagree; in float64 nothing is fused. (Leaky) ReLU is
  never rewritten and stays in float32."""
  if activation is None or activation is tf.keras.activations.linear:
    return outputs
  if _piecewise_linear(activation):
    return activation(outputs)
  return tf.cast(activation(tf.cast(outputs, tf.float64)), tf.float32)


def _rescale(sums, activation_shift, kernel_shift):
  """Integer sums -> float32 values: two exact power-of-two scalings, then
  one rounding to float32."""
  scaled = sums * _pow2(-activation_shift) * _pow2(-kernel_shift)
  return tf.cast(scaled, tf.float32)


def _add_bias(outputs, bias):
  """outputs + bias as a BiasAdd, not an Add.

  grappler's arithmetic optimizer rewrites a tree of float Adds into one AddN
  that sums in another order: a residual `main + (shortcut_sums + bias)`
  became AddN(main, shortcut_sums, bias) in a traced function, one ulp off
  the eager result on ~0.7% of a TCM block's values, which g_s carried into
  the decoded pixels (TCM-S: 9 pixels of a 128^2 crop). BiasAdd is never
  absorbed into such a tree, so the bias is added exactly where it is
  written, traced or eager."""
  return tf.nn.bias_add(outputs, bias)


def _per_image(function, inputs):
  """function(inputs) for a batch, one image at a time: the digit paths
  quantize per image and convolve one image's planes (a batch of images,
  e.g. an evaluation forward pass, gives what coding each alone gives)."""
  if inputs.shape[0] == 1:
    return function(inputs)
  return tf.map_fn(lambda image: function(image[None])[0], inputs,
                   fn_output_signature=tf.float32)


# Below this fan-in (kh * kw * channels) the int8 digits' fixed costs (digit
# planes, patches, combining four products) outweigh their faster products:
# g_a's first 5x5 convolution of 3 channels and GDN's 1x1 ran 1.2-3x slower
# on digits than in float64 (kodim23, hyperprior q3).
DIGITS_MIN_FAN_IN = 512


class _ExactMixin:
  """Shared by the convolution layers: `prepare_exact()` switches to the
  integer path using the current weights (called by model.freeze());
  `prepare_exact(fast=True)` to the int8-digit one (tfcodec.layers.digits),
  which the transforms g_a and g_s use."""

  _exact = None
  _digits = None

  def prepare_exact(self, fast=False, min_fan_in=None):
    if min_fan_in is None:
      min_fan_in = DIGITS_MIN_FAN_IN
    transposed = isinstance(self, tf.keras.layers.Conv2DTranspose)
    out_axis = 2 if transposed else 3
    bias = self.bias.numpy().astype(np.float32) if self.use_bias else None
    if fast and self.kernel.shape[:3].num_elements() >= min_fan_in:
      integers, shift = digits.quantize_kernel(self.kernel.numpy(), out_axis)
      self._digits = digits.DigitConvolution(integers, self.strides,
                                             transposed=transposed)
      self._exact = (None, tf.constant(shift, tf.int64), bias)
      return
    self._digits = None
    integers, shift = quantize_kernel(self.kernel.numpy(), out_axis)
    self._exact = (tf.constant(integers, tf.float64),
                   tf.constant(shift, tf.int64), bias)

  def _digit_call(self, inputs):
    return _per_image(self._digit_call_one, inputs)

  def _digit_call_one(self, inputs):
    return self._bias_and_activation(
        self._digits.scaled_float(inputs, self._exact[1]))

  def _finish(self, sums, activation_shift):
    return self._bias_and_activation(
        _rescale(sums, activation_shift, self._exact[1]))

  def _bias_and_activation(self, outputs):
    bias = self._exact[2]
    if bias is not None:
      outputs = _add_bias(outputs, bias)
    return apply_activation(self.activation, outputs)


class Conv2D(_ExactMixin, tf.keras.layers.Conv2D):
  """Keras Conv2D ("same" padding) with the exact coding path."""

  def call(self, inputs, training=None):
    # Training (e.g. fine-tuning a frozen model) keeps the float32 path.
    if self._exact is None or training:
      return super().call(inputs)
    if self._digits is not None:
      return self._digit_call(inputs)
    integers, shift = quantize_activations(inputs)
    sums = tf.nn.conv2d(integers, self._exact[0], self.strides, "SAME")
    return self._finish(sums, shift)


class Conv2DTranspose(_ExactMixin, tf.keras.layers.Conv2DTranspose):
  """Keras Conv2DTranspose ("same" padding) with the exact coding path."""

  def call(self, inputs, training=None):
    if self._exact is None or training:
      return super().call(inputs)
    if self._digits is not None:
      return self._digit_call(inputs)
    integers, shift = quantize_activations(inputs)
    shape = tf.shape(inputs)
    output_shape = tf.stack([shape[0], shape[1] * self.strides[0],
                             shape[2] * self.strides[1], self.filters])
    sums = tf.nn.conv2d_transpose(integers, self._exact[0], output_shape,
                                  self.strides, "SAME")
    return self._finish(sums, shift)


class GDN(tfc.GDN):
  """tfc.GDN with a trace-proof float path and an exact path for coding.

  Why the float path is ours and not tfc's: `tfc.GDN.call` picks |x| (the
  simplified form) with `if self.alpha == 1`, a comparison of a *tensor*.
  Under `absl.app.run` (train.py, encoder.py, decoder.py) TF 2.14 evaluates
  `tensor == 1` inside a `tf.function` trace as Python object identity,
  i.e. False, so the traced graph fell through to `inputs ** alpha` = x
  instead of |x|, while eager calls (evaluation) used |x|. Every training
  step optimised y = x / (beta + gamma x), a different (and unstable)
  function from the one evaluated and coded: training-batch PSNR climbed to
  26 dB while Kodak fell to 5 dB. Here alpha and epsilon are Python floats,
  fixed at construction, so the branch is decided the same way everywhere.
  """

  _exact = None

  def __init__(self, *args, alpha_parameter=1, epsilon_parameter=1, **kwargs):
    super().__init__(*args, alpha_parameter=alpha_parameter,
                     epsilon_parameter=epsilon_parameter, **kwargs)
    fixed = isinstance(alpha_parameter, (int, float)) and isinstance(
        epsilon_parameter, (int, float))
    self._form = ((float(alpha_parameter), float(epsilon_parameter))
                  if fixed else None)

  def _fixed_form(self):
    if (self._form is None or self.rectify or self._form[0] not in (1., 2.)
        or self._form[1] not in (1., .5)):
      raise NotImplementedError("tfcodec's GDN supports the simplified and "
                                "classic forms only")
    return self._form

  def _float_call(self, inputs):
    alpha, epsilon = self._fixed_form()
    pool = tf.abs(inputs) if alpha == 1. else tf.math.square(inputs)
    # gamma and beta are float32 variables (tfc's reparameterisation); under
    # mixed_bfloat16 the whole layer runs in bf16 like the convolutions
    # around it, which costs a fifth of a training step less than a float32
    # island (bench/train_throughput.py); in float32 the casts are no-ops.
    gamma = tf.cast(tf.reshape(self.gamma, [1, 1] + self.gamma.shape.as_list()),
                    inputs.dtype)
    pool = tf.nn.bias_add(tf.nn.convolution(pool, gamma, padding="VALID"),
                          tf.cast(self.beta, inputs.dtype))
    if epsilon == .5:
      pool = tf.math.sqrt(pool)
    return inputs * pool if self.inverse else inputs / pool

  _digits = None

  def prepare_exact(self, fast=False):
    """`fast`: the channel-mixing 1x1 as 14-bit int8 digits
    (tfcodec.layers.digits) instead of 20-bit float64 sums; the analysis
    transform's GDNs take it (prepare_model's `analysis`)."""
    alpha, epsilon = self._fixed_form()
    gamma = self.gamma.numpy()  # [in, out]
    beta = self.beta.numpy().astype(np.float32)
    if fast:
      integers, shift = digits.quantize_kernel(gamma[None, None], 3)
      self._digits = digits.DigitConvolution(integers, (1, 1))
      self._exact = (None, tf.constant(shift, tf.int64), beta, alpha, epsilon)
      return
    self._digits = None
    integers, shift = quantize_kernel(gamma[None, None], 3)
    self._exact = (tf.constant(integers, tf.float64),
                   tf.constant(shift, tf.int64), beta, alpha, epsilon)

  def _digit_pool(self, pool):
    """beta + gamma |x| (or x^2) of one image on digits."""
    return _add_bias(self._digits.scaled_float(pool, self._exact[1]),
                     self._exact[2])

  def call(self, inputs, training=None):
    if self._exact is None or training:
      return self._float_call(inputs)
    kernel, kernel_shift, beta, alpha, epsilon = self._exact
    inputs = tf.cast(inputs, tf.float32)
    if self._digits is not None:
      pool = tf.abs(inputs) if alpha == 1. else tf.math.square(inputs)
      pool = _per_image(self._digit_pool, pool)
      if epsilon == .5:
        pool = tf.math.sqrt(pool)
      return _normalize(inputs, pool, self.inverse)
    # The float64 path (g_s, part of the format): the element-wise work
    # around the float64 1x1 sum, ~10 passes over the tensor, as two
    # XLA-compiled passes for large tensors where they are bit-identical.
    # The last step, x * pool or x / pool, stays a plain op: compiled, the
    # division rounded differently on large tensors (x * rcp(pool)), and
    # x / sqrt(pool) became x * rsqrt(pool).
    large = tf.logical_and(gdn_compiled_available(),
                           tf.size(inputs) >= digits.COMPILED_MIN_OUTPUTS)
    integers, shift = tf.cond(
        large, lambda: _gdn_quantize_compiled(inputs, alpha),
        lambda: _gdn_quantize(inputs, alpha))
    sums = tf.nn.conv2d(integers, kernel, 1, "VALID")
    args = (sums, shift, kernel_shift, beta, epsilon)
    pool = tf.cond(large, lambda: _gdn_pool_compiled(*args),
                   lambda: _gdn_pool(*args))
    return _normalize(inputs, pool, self.inverse)


def _normalize(inputs, pool, inverse):
  """x * pool (IGDN) or x / pool (GDN), the same traced or eager.

  Not `inputs / pool`: grappler's arithmetic optimizer rewrites a traced
  x / sqrt(p) (the classic form) into x * rsqrt(p), whose approximation
  rounds differently from the eager division, and differently with each
  instruction set. DivNoNan is not rewritten, and equals x / p for the
  positive pools GDN has (beta > 0)."""
  if inverse:
    return inputs * pool
  return tf.math.divide_no_nan(inputs, pool)


def _gdn_quantize(inputs, alpha):
  """|x| (alpha 1) or x^2 (alpha 2), quantized per image (20 bits)."""
  pool = tf.abs(inputs) if alpha == 1. else tf.math.square(inputs)
  return quantize_activations(pool)


def _gdn_pool(sums, shift, kernel_shift, beta, epsilon):
  """pool = (rescaled sums + beta)^epsilon."""
  pool = _rescale(sums, shift, kernel_shift) + beta
  return tf.math.sqrt(pool) if epsilon == .5 else pool


# Every step is an exact integer operation, a maximum, a power-of-two
# scaling, one rounding (round-half-even, float64 -> float32), an addition
# or a square root, which compiled code must round the same way;
# gdn_compiled_available checks that it does.
_gdn_quantize_compiled = tf.function(_gdn_quantize, jit_compile=True)
_gdn_pool_compiled = tf.function(_gdn_pool, jit_compile=True)


@functools.lru_cache(maxsize=None)
def gdn_compiled_available():
  """Whether the XLA-compiled GDN steps run here and equal the plain ops bit
  for bit (checked once per process, both forms, on 2^20 values: the
  smallest size that takes them, and vectorised code may differ from
  scalar code)."""
  rng = np.random.default_rng(5)
  x = (rng.normal(size=(1, 64, 128, 128)) *
       np.exp2(rng.integers(-20, 20, (1, 64, 128, 128)))).astype(np.float32)
  x.flat[:3] = [0., -0., 2. ** -140]
  kernel = tf.constant(rng.integers(0, 2 ** 20, (1, 1, 128, 128)), tf.float64)
  kernel_shift = tf.constant(rng.integers(20, 40, 128), tf.int64)
  beta = tf.constant(rng.uniform(1e-3, 2., 128), tf.float32)
  x = tf.constant(x)
  with tf.init_scope():
    try:
      for alpha, epsilon in ((1., 1.), (2., .5)):
        results = []
        for quantize, pool in ((_gdn_quantize_compiled, _gdn_pool_compiled),
                               (_gdn_quantize, _gdn_pool)):
          integers, shift = quantize(x, alpha)
          sums = tf.nn.conv2d(integers, kernel, 1, "VALID")
          results.append([integers.numpy(), shift.numpy(), pool(
              sums, shift, kernel_shift, beta, epsilon).numpy().view(
                  np.uint32)])
        if not all(np.array_equal(a, b) for a, b in zip(*results)):
          return False
    except (tf.errors.OpError, NotImplementedError, TypeError, ValueError):
      return False
  return True


def prepare_model(model, skip=(), fast=(), analysis=()):
  """Switches every exact-capable layer of `model` to the integer path,
  except those inside the modules in `skip`, which are switched (back) to
  their float path; convolutions inside the modules in `fast` with a fan-in
  of DIGITS_MIN_FAN_IN or more take the int8-digit integer path
  (tfcodec.layers.digits), and inside the modules in `analysis` every
  convolution and GDN does. Returns the number switched to an integer path.

  Why the analysis transform differs: its arithmetic decides only which y
  the encoder codes, never what a decoder computes from a file, so it can
  change without a format version; the synthesis transform's is part of the
  format (docs/FORMAT.md), and keeps float64 for its small convolutions and
  GDNs."""

  def inside(modules):
    ids = set()
    for module in modules:
      ids.add(id(module))
      ids.update(id(m) for m in module.submodules)
    return ids

  skipped, fast_ids = inside(skip), inside(fast)
  analysis_ids = inside(analysis)
  count = 0
  for module in model.submodules:
    # Convolutions, GDN, and the attention blocks that have a coding path.
    if not callable(getattr(module, "prepare_exact", None)):
      continue
    if id(module) in skipped:
      module._exact = None
      if hasattr(module, "_digits"):
        module._digits = None
    elif id(module) in analysis_ids and isinstance(module, _ExactMixin):
      module.prepare_exact(fast=True, min_fan_in=1)
      count += 1
    elif id(module) in analysis_ids and isinstance(module, GDN):
      module.prepare_exact(fast=True)
      count += 1
    elif id(module) in fast_ids and isinstance(module, _ExactMixin):
      module.prepare_exact(fast=True)
      count += 1
    else:
      module.prepare_exact()
      count += 1
  return count


# -- per-row arithmetic for the networks that run inside the coding loops -----
#
# The context models' per-step networks see a different set of positions on
# every step, and a different batch of them than training or another caller
# would use. So nothing may depend on a per-image statistic: activations are
# quantized per row (one position, or one position and head), and every
# reduction (a matrix product, a layer norm's mean and variance, a softmax's
# denominator) is a sum of integers below 2^52 in float64, exact in any order.
# What remains are element-wise operations (+, *, /, sqrt: IEEE, the same
# everywhere; exp, erf and leaky ReLU: the same on one machine whatever the
# threads or kernels), and the results are snapped to grids before coding.


def quantize_rows(x, bits=ACTIVATION_BITS):
  """float [..., C] -> (integer-valued float64, shift [..., 1]), per row:
  x ~= integers * 2^-shift with |integers| < 2^bits."""
  x = tf.cast(x, tf.float64)
  x = tf.where(tf.math.is_finite(x), x, tf.zeros_like(x))
  peak = tf.reduce_max(tf.abs(x), axis=-1, keepdims=True)
  peak = tf.clip_by_value(peak, 2. ** -200, 2. ** 200)
  shift = (bits - 1) - _floor_log2(peak)
  return tf.round(x * _pow2(shift)), shift


def _ceil_log2(count):
  """ceil(log2(n)) for a positive integer (Python int or scalar tensor)."""
  if isinstance(count, int):
    return max(0, math.ceil(math.log2(count)))
  # floor(log2(2n - 1)) = ceil(log2(n)) for n >= 1, read from the exponent.
  count = tf.cast(tf.maximum(count, 1), tf.float64)
  return _floor_log2(2. * count - 1.)


def quantize_columns(x, fan_in, axis=-2):
  """float tensor -> (integer-valued float64, shift with `axis` kept as 1)
  scaled so that `fan_in` products with ACTIVATION_BITS-bit integers sum
  below 2^52: the right-hand side of an exact matrix product. `fan_in` may
  be a scalar tensor (e.g. the number of positions of an image)."""
  x = tf.cast(x, tf.float64)
  x = tf.where(tf.math.is_finite(x), x, tf.zeros_like(x))
  weight_bits = _SUM_BITS - ACTIVATION_BITS - _ceil_log2(fan_in)
  if isinstance(weight_bits, int) and weight_bits < 8:
    raise ValueError(f"exact product over {fan_in} terms keeps only "
                     f"{weight_bits} bits")
  peak = tf.reduce_max(tf.abs(x), axis=axis, keepdims=True)
  peak = tf.clip_by_value(peak, 2. ** -200, 2. ** 200)
  shift = (weight_bits - 1) - _floor_log2(peak)
  return tf.round(x * _pow2(shift)), shift


class RowDense:
  """x [P, in] -> activation(x @ kernel + bias) in float32, each row's result
  independent of the other rows and of the summation order.

  kernel [in, out] and bias [out] may be variables or tensors; they are
  quantized when the object is made (once per coded image)."""

  def __init__(self, kernel, bias=None, activation=None):
    kernel = tf.convert_to_tensor(kernel)
    self.kernel, self.kernel_shift = quantize_columns(
        kernel, int(kernel.shape[0]), axis=0)
    self.kernel_shift = self.kernel_shift[0]
    self.bias = None if bias is None else tf.cast(bias, tf.float32)
    if activation is tf.keras.activations.linear:
      activation = None
    self.activation = activation

  def __call__(self, x):
    integers, shift = quantize_rows(x)
    outputs = _rescale(tf.matmul(integers, self.kernel), shift,
                       self.kernel_shift)
    if self.bias is not None:
      outputs = _add_bias(outputs, self.bias)
    return apply_activation(self.activation, outputs)


def attend(query, key, value, adjust_logits=None):
  """Multi-head attention core with exact sums: query [..., Q, H, D], key and
  value [..., K, H, D] (float) -> [..., Q, H, D] float32.

  Logits: query and key quantized per (position, head) row; products of two
  20-bit integers summed over D stay exact in float64. `adjust_logits` (on
  float64 [..., H, Q, K]) adds biases or masks. Softmax with an exact
  denominator: exp(l - max) <= 1 on a 2^-20 grid, summed as integers; the
  values are quantized per (head, channel) column over the keys, so the
  weighted sum is exact too."""
  head_dim = query.shape[-1]
  query, query_shift = quantize_rows(query)
  key, key_shift = quantize_rows(key)
  logits = tf.einsum("...qhd,...khd->...hqk", query, key)
  rank = len(query.shape)
  # [..., Q, H, 1] -> [..., H, Q, 1] and [..., K, H, 1] -> [..., H, 1, K].
  lead = list(range(rank - 3))
  logits *= (_pow2(-tf.transpose(query_shift, lead + [rank - 2, rank - 3,
                                                      rank - 1]))
             * _pow2(-tf.transpose(key_shift, lead + [rank - 2, rank - 1,
                                                    rank - 3])))
  logits *= head_dim ** -.5
  if adjust_logits is not None:
    logits = adjust_logits(logits)
  weights = tf.exp(logits - tf.reduce_max(logits, axis=-1, keepdims=True))
  weights = tf.round(weights * 2. ** ACTIVATION_BITS)
  total = tf.reduce_sum(weights, axis=-1, keepdims=True)  # [..., H, Q, 1]
  value, value_shift = quantize_columns(value, tf.shape(value)[-3], axis=-3)
  attended = tf.einsum("...hqk,...khd->...qhd", weights, value)
  total = tf.transpose(total, lead + [rank - 2, rank - 3, rank - 1])
  return tf.cast(attended * _pow2(-value_shift) / total, tf.float32)


def row_layer_norm(x, gamma, beta, epsilon):
  """Layer normalisation over the last axis with exact mean and variance:
  x [..., C] float -> float32."""
  channels = x.shape[-1]
  if channels >= 2 ** (_SUM_BITS - 2 * ACTIVATION_BITS):
    raise ValueError(f"exact layer norm over {channels} channels")
  integers, shift = quantize_rows(x)
  total = tf.reduce_sum(integers, axis=-1, keepdims=True)
  squares = tf.reduce_sum(tf.square(integers), axis=-1, keepdims=True)
  mean = total / channels
  variance = tf.maximum(squares / channels - tf.square(mean), 0.)
  unit = _pow2(-shift)
  normalized = (integers - mean) * unit / tf.sqrt(
      variance * tf.square(unit) + epsilon)
  return (tf.cast(normalized, tf.float32) * tf.cast(gamma, tf.float32)
          + tf.cast(beta, tf.float32))
