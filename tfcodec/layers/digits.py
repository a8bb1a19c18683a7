"""Fast exact convolutions for the transforms: int8 digit products.

tfcodec.layers.exact makes coding independent of threads and kernels by
computing every convolution on integers whose sums are exact in float64. For
g_a and g_s that costs most of the coding time: float64 convolutions run on
Eigen, about a fifth of float32's speed and a fiftieth of int8's on a CPU
with AMX or VNNI (bench/codec_speed.py, docs/ARCHITECTURE.md).

Here the same idea runs on int8 matrix products, whose int32 sums are exact
in any order. An activation a (14 bits, per image) is offset to
u = a + 2^13 in [0, 2^14) and written as two base-128 digits,
u = 128 d1 + d0; a weight w (about 14 bits, per output channel) as
w = 128 e1 + e0 with e1 in [-127, 127] and e0 in [-64, 63]. Then

    sum a w = 2^14 sum d1 e1 + 2^7 (sum d1 e0 + sum d0 e1) + sum d0 e0
              - 2^13 sum w,

four int8 products (one oneDNN `QuantizedConv2D` of the digit planes
stacked [d1; d0] with the kernel digits [e1 | e0], or, where that op does
not run, one `QuantizedMatMulWithBias` of their patches) and a per-channel
constant, combined in float64 where every term is an exact integer. Digits
below 128 keep each pair of products below 2^15, so the AVX2 kernels
(vpmaddubsw, which saturates at 16 bits) are exact too.

Where the oneDNN kernel is missing (TF_ENABLE_ONEDNN_OPTS=0, other builds)
or fails its probe, the same integer sums are computed by a float64
convolution of a and w: the same numbers, bit for bit, only slower. So
bytes and pixels do not depend on which path ran.

Transposed convolutions become one stride-1 convolution with s*s times the
output channels followed by depth_to_space (the sub-pixel form), which is
the same sum of the same integer products.

Precision: 14-bit activations and ~14-bit weights instead of exact.py's
20 / 19. On Kodak (bmshj2018-hyperprior q3, six images) decoded PSNR moved
by 0.0001 dB; 8-bit weights (one digit) would have cost 0.02 dB.
"""

import functools

import numpy as np
import tensorflow as tf

# a in [-2^13, 2^13): u = a + 2^13 has two base-128 digits.
ACTIVATION_OFFSET = 2 ** 13
# w = 128 e1 + e0 with e1 = floor((w + 64) / 128) in [-127, 127].
WEIGHT_LIMIT = 127 * 128 + 63
DIGIT = 128


def quantize_kernel(kernel, out_axis):
  """numpy kernel -> (integer-valued float64 kernel with |w| <= WEIGHT_LIMIT,
  int64 shift per output channel): kernel ~= integers * 2^-shift."""
  kernel = np.asarray(kernel, np.float64)
  axes = tuple(i for i in range(kernel.ndim) if i != out_axis)
  peak = np.maximum(np.abs(kernel).max(axis=axes), 2. ** -100)
  # peak = m 2^e with m in [0.5, 1) (frexp reads the exponent exactly), so
  # peak * 2^(14 - e) = m 2^14 in [2^13, 2^14); one less where that rounds
  # above the limit.
  mantissa, exponent = np.frexp(peak)
  shift = 14 - exponent.astype(np.int64)
  shift -= (mantissa * 2. ** 14 > WEIGHT_LIMIT).astype(np.int64)
  shape = [1] * kernel.ndim
  shape[out_axis] = -1
  integers = np.round(kernel * np.exp2(shift).reshape(shape))
  assert np.abs(integers).max() <= WEIGHT_LIMIT
  return integers, shift


def power_of_two_scale(peak, bits):
  """Normal float32 peak -> (int32 shift, float32 2^shift) with peak * 2^shift
  in [2^(bits-1), 2^bits), read from the exponent bits (exact)."""
  exponent = tf.bitwise.right_shift(tf.bitcast(peak, tf.int32), 23) - 127
  shift = (bits - 1) - exponent
  return shift, tf.bitcast(tf.bitwise.left_shift(shift + 127, 23), tf.float32)


def quantize_activations(x):
  """float NHWC -> (integer-valued float32 in [-2^13, 2^13), int32 shift
  [B,1,1,1]) per image: x ~= integers * 2^-shift.

  In float32: scaling by a power of two and rounding are exact there too,
  and half the memory traffic of float64 (this runs on every activation of
  g_a and g_s)."""
  x = tf.cast(x, tf.float32)
  x = tf.where(tf.math.is_finite(x), x, tf.zeros_like(x))
  peak = tf.reduce_max(tf.abs(x), axis=[1, 2, 3], keepdims=True)
  peak = tf.clip_by_value(peak, 2. ** -100, 2. ** 100)
  # peak * 2^shift in [2^12, 2^13), and only +peak can round up to 2^13.
  shift, scale = power_of_two_scale(peak, 13)
  integers = tf.round(x * scale)
  return tf.clip_by_value(integers, -ACTIVATION_OFFSET,
                          ACTIVATION_OFFSET - 1.), shift


def digit_planes(x):
  """float NHWC, one image -> (uint8 [2, H, W, C]: the two base-128 digits of
  u = a + 2^13, a = `quantize_activations(x)`'s integers; its int32 shift)."""
  integers, shift = quantize_activations(x)
  return _planes(integers), shift


def _planes(integers):
  offset = tf.cast(integers[0], tf.int32) + ACTIVATION_OFFSET
  return tf.cast(tf.stack([tf.bitwise.right_shift(offset, 7),
                           tf.bitwise.bitwise_and(offset, DIGIT - 1)]),
                 tf.uint8)


def split_kernel_digits(integers, axis):
  """Integer kernel (|w| <= WEIGHT_LIMIT) -> int8 [e1 | e0] joined along the
  output `axis`: w = 128 e1 + e0, e1 in [-127, 127], e0 in [-64, 63]."""
  high = np.floor((integers + DIGIT // 2) / DIGIT)
  return np.concatenate([high, integers - DIGIT * high],
                        axis=axis).astype(np.int8)


def subpixel_kernel(kernel, stride):
  """A "same" conv2d_transpose kernel [kh, kw, out, in] -> (kernel of the
  equivalent stride-1 convolution [kh', kw', in, stride^2 * out], padding
  [[top, bottom], [left, right]]), whose output through depth_to_space(stride)
  is the transposed convolution's, product for product."""
  kernel = np.asarray(kernel)

  def taps(size):
    # conv2d_transpose is the gradient of a "same" conv2d, whose input of
    # n = H * stride is padded by pad_before = max(size - stride, 0) // 2:
    # output j = q * stride + p reads input q - m through tap
    # m * stride + p + pad_before.
    pad_before = max(size - stride, 0) // 2
    per_phase = []
    for phase in range(stride):
      per_phase.append([(-m, m * stride + phase + pad_before)
                        for m in range(-size, size + 1)
                        if 0 <= m * stride + phase + pad_before < size])
    offsets = [d for phase in per_phase for d, _ in phase]
    return per_phase, min(offsets), max(offsets)

  rows, row_lo, row_hi = taps(kernel.shape[0])
  cols, col_lo, col_hi = taps(kernel.shape[1])
  out_channels, in_channels = kernel.shape[2], kernel.shape[3]
  result = np.zeros((row_hi - row_lo + 1, col_hi - col_lo + 1, in_channels,
                     stride * stride * out_channels), kernel.dtype)
  for row_phase, row_taps in enumerate(rows):
    for col_phase, col_taps in enumerate(cols):
      block = (row_phase * stride + col_phase) * out_channels
      for row_offset, row_tap in row_taps:
        for col_offset, col_tap in col_taps:
          result[row_offset - row_lo, col_offset - col_lo, :,
                 block:block + out_channels] = kernel[row_tap, col_tap].T
  return result, [[-row_lo, row_hi], [-col_lo, col_hi]]


@functools.lru_cache(maxsize=None)
def int8_products_available():
  """Whether oneDNN's QuantizedMatMulWithBias runs here and returns exact
  integer products of digits below 128 (checked once per process)."""
  rng = np.random.default_rng(0)
  left = rng.integers(0, DIGIT, (37, 300))
  right = rng.integers(-127, 128, (300, 19))
  # Eagerly, also when first asked while a coder is being traced.
  with tf.init_scope():
    try:
      got = _digit_matmul(tf.constant(left, tf.uint8),
                          tf.constant(right, tf.int8))
      return bool(np.array_equal(got.numpy().astype(np.int64),
                                 left.astype(np.int64) @ right))
    except (tf.errors.OpError, NotImplementedError, TypeError, ValueError):
      return False


def _digit_matmul(left, right):
  """uint8 [M, K] (values < 128) @ int8 [K, N] -> int32 [M, N], exactly."""
  columns = right.shape[1]
  products = tf.raw_ops.QuantizedMatMulWithBias(
      a=tf.bitcast(left, tf.quint8), b=tf.bitcast(right, tf.qint8),
      bias=tf.zeros([columns], tf.qint32), min_a=0., max_a=255.,
      min_b=-127., max_b=127., Toutput=tf.qint32,
      input_quant_mode="SCALED")[0]
  return tf.bitcast(products, tf.int32)


def _quantized_convolution(planes, kernel_digits, stride):
  """uint8 planes [B, H, W, C] (values < 128) convolved ("VALID") with the
  int8 numpy kernel [kh, kw, C, N] -> int32 [B, H', W', N], exactly.

  oneDNN's quantized convolution insists on a filter that is a constant
  node of the graph (a captured tensor fails: "filter must be a
  constant"), so the kernel goes in as a numpy array and becomes one here,
  inside the trace."""
  kernel = tf.bitcast(tf.constant(kernel_digits, tf.int8), tf.qint8)
  products = tf.raw_ops.QuantizedConv2D(
      input=tf.bitcast(planes, tf.quint8), filter=kernel, min_input=0.,
      max_input=255., min_filter=-127., max_filter=127.,
      strides=[1, stride, stride, 1], padding="VALID",
      out_type=tf.qint32)[0]
  return tf.bitcast(products, tf.int32)


@functools.lru_cache(maxsize=None)
def int8_convolution_available():
  """Whether oneDNN's QuantizedConv2D runs here and returns exact integer
  sums of digits below 128 (checked once per process, strided and not)."""
  rng = np.random.default_rng(2)
  planes = rng.integers(0, DIGIT, (2, 13, 11, 24))
  kernel = rng.integers(-127, 128, (5, 5, 24, 10))
  kernel.flat[:2] = [-127, 127]
  planes.flat[:2] = [DIGIT - 1, DIGIT - 1]
  with tf.init_scope():
    try:
      for stride in (1, 2):
        # The op runs only in a graph (eagerly it fails, or without oneDNN
        # returns wrong sums).
        # (The kernel is closed over: as an argument it would be a tensor.)
        got = tf.function(lambda x, s=stride: _quantized_convolution(
            x, kernel.astype(np.int8), s))(tf.constant(planes,
                                                       tf.uint8)).numpy()
        want = tf.nn.conv2d(tf.constant(planes, tf.float64),
                            tf.constant(kernel, tf.float64), stride,
                            "VALID").numpy()
        if not np.array_equal(got.astype(np.float64), want):
          return False
      return True
    except (tf.errors.OpError, NotImplementedError, TypeError, ValueError):
      return False


def combine_digit_products(products, offset_sums):
  """int32 products [2M, 2N] of the activation digit rows [d1; d0] by the
  kernel digit columns [e1 | e0] -> the float64 sums sum a w [M, N], exact:
  2^14 d1e1 + 2^7 (d1e0 + d0e1) + d0e0 - 2^13 sum w."""
  products = tf.cast(products, tf.float64)
  high_rows, low_rows = tf.split(products, 2, axis=0)
  high_cols, cross_high = tf.split(high_rows, 2, axis=1)
  cross_low, low_cols = tf.split(low_rows, 2, axis=1)
  return (2. ** 14 * high_cols + DIGIT * (cross_high + cross_low) + low_cols
          - offset_sums)


def scale_digit_products(products, offset_sums, scale):
  """int32 digit products [2M, 2N] -> float32 [M, N]: the exact sums
  (`combine_digit_products`) times `scale` (powers of two, [N]), rounded to
  float32 once: what exact._rescale makes of the sums."""
  return tf.cast(combine_digit_products(products, offset_sums) * scale,
                 tf.float32)


# The same function compiled by XLA into one pass over the products: plain
# TF runs it as ~10 passes over [2M, 2N] int32 and [M, N] float64 tensors,
# which cost more than the int8 products themselves (g_s's third layer on a
# Kodak image: ~300 ms vs ~25 ms compiled, one thread). Every intermediate
# is an integer below 2^53 or an exact power-of-two scaling of one, so
# fusing, reordering or contracting the arithmetic cannot change a bit.
_scale_digit_products_compiled = tf.function(scale_digit_products,
                                             jit_compile=True)

# XLA compiles once per shape (~70-90 ms on this CPU, measured); below this
# many outputs (M * N) the plain ops cost less than a compile.
COMPILED_MIN_OUTPUTS = 1 << 20


# Quantizing an activation and splitting it into digit planes is ~8 plain
# passes over the tensor (abs, max, scale, round, clip, shift, mask, casts)
# and cost as much as the int8 convolution on g_s's largest layers; compiled,
# it is one pass for the maximum and one for the rest. Integer operations, a
# maximum, a power-of-two scaling and round-half-even: exact, so compiling
# cannot change a bit either (the probe below checks).
_digit_planes_compiled = tf.function(digit_planes, jit_compile=True)


@functools.lru_cache(maxsize=None)
def compiled_planes_available():
  """Whether the XLA-compiled `digit_planes` runs here and equals the plain
  ops bit for bit, on values that round half-way, overflow the float32
  range and are not finite (checked once per process)."""
  rng = np.random.default_rng(4)
  x = rng.normal(size=(1, 9, 7, 16)) * np.exp2(rng.integers(-30, 30,
                                                           (1, 9, 7, 16)))
  x = x.astype(np.float32)
  x.flat[:6] = [np.inf, -np.inf, np.nan, 0., -0., 1e-45]
  # Peak 4096: a shift of 0, so x.5 values round half to even.
  halves = np.array([[[[4096., 0.5, 1.5, 2.5, -0.5, -2.5, 3.5, 4095.5]]]],
                    np.float32)
  with tf.init_scope():
    for case in (x, halves):
      try:
        got = _digit_planes_compiled(tf.constant(case))
      except (tf.errors.OpError, NotImplementedError, TypeError, ValueError):
        return False
      want = digit_planes(tf.constant(case))
      if not all(np.array_equal(g.numpy(), w.numpy())
                 for g, w in zip(got, want)):
        return False
  return True


@functools.lru_cache(maxsize=None)
def compiled_scaling_available():
  """Whether the XLA-compiled `scale_digit_products` runs here and equals
  the plain ops bit for bit (checked once per process)."""
  rng = np.random.default_rng(1)
  products = rng.integers(-2 ** 25, 2 ** 25, (2 * 37, 2 * 19))
  products[:2, :2] = [[2 ** 25, -2 ** 25], [-2 ** 25, 2 ** 25]]
  offset_sums = rng.integers(-2 ** 40, 2 ** 40, 19).astype(np.float64)
  scale = np.exp2(-rng.integers(0, 60, 19).astype(np.float64))
  args = (tf.constant(products, tf.int32), tf.constant(offset_sums),
          tf.constant(scale))
  with tf.init_scope():
    try:
      got = _scale_digit_products_compiled(*args).numpy()
    except (tf.errors.OpError, NotImplementedError, TypeError, ValueError):
      return False
    want = scale_digit_products(*args).numpy()
  return bool(np.array_equal(got.view(np.uint32), want.view(np.uint32)))


def fold_stride(kernel, stride):
  """A stride-s kernel [kh, kw, in, out] -> the stride-1 kernel [ceil(kh/s),
  ceil(kw/s), s * s * in, out] that computes the same sums over
  space_to_depth(s) of the (padded) input; the added taps are zero."""
  kh, kw, channels, out = kernel.shape
  fh, fw = -(-kh // stride), -(-kw // stride)
  padded = np.zeros((fh * stride, fw * stride, channels, out), kernel.dtype)
  padded[:kh, :kw] = kernel
  padded = padded.reshape(fh, stride, fw, stride, channels, out)
  return padded.transpose(0, 2, 1, 3, 4, 5).reshape(
      fh, fw, stride * stride * channels, out)


class DigitConvolution:
  """The integer sums of a convolution ("same" padding), forward or
  transposed, from integer activations: int8 digit products where oneDNN has
  them, otherwise float64 (the same sums)."""

  def __init__(self, integers, strides, transposed=False):
    """integers: integer-valued kernel from `quantize_kernel`, [kh, kw, in,
    out] (or [kh, kw, out, in] when `transposed`)."""
    stride = int(strides[0])
    if tuple(strides) != (stride, stride):
      raise NotImplementedError("square strides only")
    if transposed:
      integers, self._padding = subpixel_kernel(integers, stride)
      self.stride, self.block = 1, stride
    else:
      self._padding = None
      self.stride, self.block = stride, 1
    self.kernel_size = integers.shape[:2]
    self.out_channels = integers.shape[3]
    self._kernel = tf.constant(integers, tf.float64)
    # The int8 path: stride folded into channels, so that each tap's patch
    # is a contiguous slice (strided slices of uint8 ran at ~30 MB/s).
    folded = fold_stride(integers, self.stride)
    self._folded_size = folded.shape[:2]
    self._folded_channels = folded.shape[2]
    flat = folded.reshape(-1, self.out_channels)
    self._depth = flat.shape[0]  # taps * channels: the patches' length
    self._digits = tf.constant(split_kernel_digits(flat, axis=1), tf.int8)
    self._offset_sums = tf.constant(ACTIVATION_OFFSET * flat.sum(axis=0),
                                    tf.float64)
    # oneDNN's int8 convolution of the digit planes, where it runs: no
    # patches to build (g_a's 256x384 layer spent most of its time on
    # ~300 MB of them).
    self._kernel_digits = split_kernel_digits(integers, axis=3)
    self.use_int8 = int8_products_available()
    self.use_convolution = self.use_int8 and int8_convolution_available()
    self.compiled = self.use_int8 and compiled_scaling_available()
    self.compiled_planes = self.use_int8 and compiled_planes_available()

  def _same_paddings(self, shape):
    """([[top, bottom], [left, right]], output [H', W']) of the stride-1 (or
    strided "same") convolution for the input's spatial shape."""
    if self._padding is not None:
      paddings = tf.constant(self._padding, tf.int32)
      return paddings, shape[1:3]
    paddings, sizes = [], []
    for axis, size in enumerate(self.kernel_size):
      length = shape[1 + axis]
      out = (length + self.stride - 1) // self.stride
      total = tf.maximum((out - 1) * self.stride + size - length, 0)
      paddings.append(tf.stack([total // 2, total - total // 2]))
      sizes.append(out)
    return tf.stack(paddings), tf.stack(sizes)

  def __call__(self, integers):
    """integers [1, H, W, in] float32 (from `quantize_activations`) -> float64 sums
    [1, H', W', out] (H' = H * stride for a transposed convolution)."""
    if self.use_int8:
      products, out_size = self._int8_products(_planes(integers),
                                               tf.shape(integers))
      sums = tf.reshape(
          combine_digit_products(products, self._offset_sums),
          tf.concat([[1], out_size, [-1]], 0))
    else:
      sums = self._float64_sums(integers)
    if self.block > 1:
      sums = tf.nn.depth_to_space(sums, self.block)
    return sums

  def scaled(self, integers, scale):
    """float32 round(sums * scale): `__call__`'s sums scaled per output
    channel by `scale` (float64 powers of two [out]) and rounded once, as
    exact._rescale does, bit for bit; on the int8 path in one compiled pass
    where XLA is available (see `scale_digit_products`)."""
    if self.use_int8:
      return self._scaled_planes(_planes(integers), tf.shape(integers), scale)
    outputs = tf.cast(self._float64_sums(integers) * self._tiled(scale),
                      tf.float32)
    if self.block > 1:
      outputs = tf.nn.depth_to_space(outputs, self.block)
    return outputs

  def scaled_float(self, x, kernel_shift):
    """float32 x [1, H, W, in] -> `scaled` of its 14-bit integers
    (`quantize_activations`) with scale 2^-(activation shift + kernel
    shift): the layer's output before bias and activation. On the int8
    path the quantization and digit planes come from one XLA-compiled pass
    for inputs of 2^20 values or more."""
    if not self.use_int8:
      integers, shift = quantize_activations(x)
      return self.scaled(integers, self._scale(shift, kernel_shift))
    large = tf.size(x) >= COMPILED_MIN_OUTPUTS
    planes, shift = tf.cond(
        tf.logical_and(self.compiled_planes, large),
        lambda: _digit_planes_compiled(x), lambda: digit_planes(x))
    return self._scaled_planes(planes, tf.shape(x),
                               self._scale(shift, kernel_shift))

  @staticmethod
  def _scale(shift, kernel_shift):
    # The two power-of-two factors of exact._rescale as one (exact).
    return (pow2(-tf.cast(tf.reshape(shift, [-1])[0], tf.int64)) *
            pow2(-tf.cast(kernel_shift, tf.int64)))

  def _tiled(self, scale):
    # Before depth_to_space the channels are (row phase, column phase,
    # channel), the channel fastest.
    if self.block > 1:
      return tf.tile(scale, [self.block * self.block])
    return scale

  def _scaled_planes(self, planes, shape, scale):
    """Digit planes of an input of `shape` -> float32 round(sums * scale),
    [1, H', W', out] (after depth_to_space for a transposed convolution)."""
    products, out_size = self._int8_products(planes, shape)
    args = (products, self._offset_sums, self._tiled(scale))
    large = tf.size(products) >= 4 * COMPILED_MIN_OUTPUTS
    outputs = tf.cond(
        tf.logical_and(self.compiled, large),
        lambda: _scale_digit_products_compiled(*args),
        lambda: scale_digit_products(*args))
    outputs = tf.reshape(outputs, tf.concat([[1], out_size, [-1]], 0))
    if self.block > 1:
      outputs = tf.nn.depth_to_space(outputs, self.block)
    return outputs

  def _float64_sums(self, integers):
    paddings, _ = self._same_paddings(tf.shape(integers))
    padded = tf.pad(tf.cast(integers, tf.float64),
                    tf.concat([[[0, 0]], paddings, [[0, 0]]], 0))
    return tf.nn.conv2d(padded, self._kernel, self.stride, "VALID")

  def _int8_products(self, planes, shape):
    """Digit planes [2, H, W, in] (`digit_planes`) of an input of `shape` ->
    (int32 digit products [2M, 2N], the activation digit rows [d1; d0] by the
    kernel digit columns [e1 | e0]; output [H', W'])."""
    paddings, out_size = self._same_paddings(shape)
    # oneDNN's convolution runs only inside a graph (the coders are traced;
    # eager calls, e.g. an evaluation forward pass, take the patches).
    convolve = self.use_convolution and not tf.executing_eagerly()
    if not convolve:
      # Pad the bottom and right further, to whole stride blocks covering
      # every folded tap; the extra values meet zero taps only.
      fh, fw = self._folded_size
      needed = self.stride * (out_size + tf.constant([fh - 1, fw - 1]))
      extra = needed - (shape[1:3] + paddings[:, 0] + paddings[:, 1])
      paddings = tf.stack([paddings[:, 0], paddings[:, 1] + extra], axis=1)
    full = tf.concat([[[0, 0]], paddings, [[0, 0]]], 0)
    # Padding is a = 0, i.e. u = 2^13: digits 64 and 0.
    planes = tf.concat([
        tf.pad(planes[:1], full, constant_values=ACTIVATION_OFFSET // DIGIT),
        tf.pad(planes[1:], full)], 0)
    if convolve:
      # "VALID" over the "same" padding: out_size positions per plane.
      products = _quantized_convolution(planes, self._kernel_digits,
                                        self.stride)
      return tf.reshape(products, [-1, 2 * self.out_channels]), out_size
    if self.stride > 1:
      planes = tf.nn.space_to_depth(planes, self.stride)
    patches = self._patches(planes, out_size)
    products = _digit_matmul(tf.reshape(patches, (-1, self._depth)),
                             self._digits)
    return products, out_size

  def _patches(self, planes, out_size):
    """[2, Hf, Wf, C] -> [2, H', W', fh * fw * C] in the folded kernel's
    (row, column, channel) order: one contiguous slice per tap, joined as
    int64 words where the channels allow (a concat of uint8 rows is ~10x
    slower)."""
    fh, fw = self._folded_size
    if (fh, fw) == (1, 1):
      return planes
    channels = self._folded_channels
    words = channels % 8 == 0
    if words:
      shape = tf.shape(planes)
      planes = tf.bitcast(tf.reshape(
          planes, tf.concat([shape[:3], [channels // 8, 8]], 0)), tf.int64)
    taps = [planes[:, row:row + out_size[0], col:col + out_size[1], :]
            for row in range(fh) for col in range(fw)]
    patches = tf.concat(taps, axis=-1)
    if words:
      patches = tf.reshape(tf.bitcast(patches, tf.uint8),
                           tf.concat([[2], out_size, [-1]], 0))
    return patches


def pow2(exponent):
  """2.0 ** exponent (integer tensor) as float64, built from the bits (exact,
  no exp/log). Shared with tfcodec.layers.exact."""
  return tf.bitcast(tf.bitwise.left_shift(tf.cast(exponent, tf.int64) + 1023,
                                          52), tf.float64)


def floor_log2(positive):
  """floor(log2(x)) for positive normal float64 x, read from the exponent."""
  return tf.bitwise.right_shift(tf.bitcast(positive, tf.int64), 52) - 1023


def quantize_columns(kernel):
  """kernel [K, N] (float tensor) -> (integer-valued float64 with |w| <=
  WEIGHT_LIMIT, int64 shift [N]): `quantize_kernel` in graph ops, for
  kernels read from variables inside a traced coder."""
  kernel = tf.cast(kernel, tf.float64)
  kernel = tf.where(tf.math.is_finite(kernel), kernel, tf.zeros_like(kernel))
  peak = tf.clip_by_value(tf.reduce_max(tf.abs(kernel), axis=0),
                          2. ** -100, 2. ** 100)
  # frexp's exponent: peak = m 2^e with m in [0.5, 1).
  exponent = floor_log2(peak) + 1
  mantissa = peak * pow2(-exponent)
  shift = 14 - exponent - tf.cast(mantissa * 2. ** 14 > WEIGHT_LIMIT, tf.int64)
  return tf.round(kernel * pow2(shift)), shift


def quantize_rows(x):
  """float [P, K] -> (integer-valued float32 in [-2^13, 2^13), int32 shift
  [P, 1]) per row: x ~= integers * 2^-shift. `quantize_activations` with
  one scale per row instead of per image."""
  x = tf.cast(x, tf.float32)
  x = tf.where(tf.math.is_finite(x), x, tf.zeros_like(x))
  peak = tf.clip_by_value(tf.reduce_max(tf.abs(x), axis=-1, keepdims=True),
                          2. ** -100, 2. ** 100)
  shift, scale = power_of_two_scale(peak, 13)
  integers = tf.round(x * scale)
  return tf.clip_by_value(integers, -ACTIVATION_OFFSET,
                          ACTIVATION_OFFSET - 1.), shift


class DigitRowDense:
  """x [P, K] -> activation(x @ kernel + bias) in float32 for the wavefront
  coders: each row quantized on its own (14 bits) and the products summed
  exactly (int8 digits on oneDNN, else float64), so a position's result does
  not depend on which positions share its step, the threads or the kernels.

  The fast form of `exact.RowDense` (20-bit rows, float64 products, ~3x
  slower on the loop's few-row products); the two give different numbers,
  so which one a coder uses is part of the file format (docs/FORMAT.md).
  kernel [K, N] and bias [N] may be variables; they are quantized when the
  object is made (once per coded image)."""

  def __init__(self, kernel, bias=None, activation=None):
    integers, shift = quantize_columns(kernel)
    self.kernel_shift = shift
    self.use_int8 = int8_products_available()
    if self.use_int8:
      high = tf.floor((integers + DIGIT // 2) / DIGIT)
      low = integers - DIGIT * high
      self._digits = tf.cast(tf.concat([high, low], axis=1), tf.int8)
      self._offset_sums = ACTIVATION_OFFSET * tf.reduce_sum(integers, axis=0)
    else:
      self._kernel = integers
    self.bias = None if bias is None else tf.cast(bias, tf.float32)
    if activation is tf.keras.activations.linear:
      activation = None
    self.activation = activation

  def sums(self, integers):
    """integers [P, K] float32 (from `quantize_rows`) -> float64 [P, N]."""
    if not self.use_int8:
      return tf.matmul(tf.cast(integers, tf.float64), self._kernel)
    offset = tf.cast(integers, tf.int32) + ACTIVATION_OFFSET
    planes = tf.cast(tf.concat([tf.bitwise.right_shift(offset, 7),
                                tf.bitwise.bitwise_and(offset, DIGIT - 1)],
                               axis=0), tf.uint8)
    return combine_digit_products(_digit_matmul(planes, self._digits),
                                  self._offset_sums)

  def __call__(self, x):
    # Local import: exact imports this module. Rescaling, bias and
    # activation are exact.RowDense's.
    from tfcodec.layers import exact
    integers, shift = quantize_rows(x)
    outputs = exact._rescale(self.sums(integers), tf.cast(shift, tf.int64),
                             self.kernel_shift)
    if self.bias is not None:
      outputs = exact._add_bias(outputs, self.bias)
    return exact.apply_activation(self.activation, outputs)
