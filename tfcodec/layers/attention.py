"""Swin-style window attention and the SWAtten module, as Keras layers.

  WindowAttention  multi-head self-attention inside non-overlapping w x w
                   windows, with a learned relative position bias
                   ((2w-1)^2 entries per head); optionally with the cyclic
                   shift of Swin's "SW" blocks and its cross-region mask
  SwinBlock        LayerNorm -> WindowAttention -> +x; LayerNorm -> MLP
                   (4x, GELU) -> +x.  NHWC in and out.
  SwinPair         a W block followed by an SW block
  SWAtten          TCM's channel-squeezed attention on an entropy-model
                   support: 1x1 in to `inner` channels, a Swin pair and
                   residual units gate the features, 1x1 back out

Everything is einsum/reshape on dynamic shapes, so the layers trace into a
SavedModel for any H and W that are multiples of the window (the models pad
their input so that this holds; nothing is padded here).
"""

import numpy as np
import tensorflow as tf

from tfcodec.layers import exact
from tfcodec.layers.chain import Chain
from tfcodec.layers.conv import conv
from tfcodec.layers.residual import ResidualUnit

# Added to logits of pairs that must not attend to each other. Large enough
# that exp() underflows to exactly 0 in float32, and representable in bfloat16.
_MASKED = -1e9


def relative_position_index(window):
  """[w*w, w*w] int32: row of the bias table for each (query, key) pair."""
  coords = np.stack(np.meshgrid(np.arange(window), np.arange(window),
                                indexing="ij")).reshape(2, -1)
  delta = coords[:, :, None] - coords[:, None, :] + window - 1  # in [0, 2w-2]
  return (delta[0] * (2 * window - 1) + delta[1]).astype(np.int32)


def window_partition(x, window):
  """[B, H, W, C] -> [B * (H/w) * (W/w), w*w, C], windows in raster order."""
  shape = tf.shape(x)
  batch, height, width = shape[0], shape[1], shape[2]
  channels = x.shape[-1]
  x = tf.reshape(x, [batch, height // window, window, width // window, window,
                     channels])
  x = tf.transpose(x, [0, 1, 3, 2, 4, 5])
  return tf.reshape(x, [-1, window * window, channels])


def window_merge(windows, window, batch, height, width):
  """Inverse of `window_partition`."""
  channels = windows.shape[-1]
  x = tf.reshape(windows, [batch, height // window, width // window, window,
                           window, channels])
  x = tf.transpose(x, [0, 1, 3, 2, 4, 5])
  return tf.reshape(x, [batch, height, width, channels])


def shifted_window_mask(height, width, window):
  """[num_windows, w*w, w*w] additive mask for a map rolled by -w/2.

  After the roll, the last window row/column holds pixels from opposite
  borders of the image. Each axis has three regions (the body, the last
  window minus its wrapped part, the wrapped part); a pair of positions may
  attend only if they lie in the same region along both axes.
  """
  shift = window // 2

  def regions(size):
    index = tf.range(size)
    return (tf.cast(index >= size - window, tf.int32) +
            tf.cast(index >= size - shift, tf.int32))

  region = regions(height)[:, None] * 3 + regions(width)[None, :]
  region = window_partition(region[None, :, :, None], window)[..., 0]
  same = tf.equal(region[:, :, None], region[:, None, :])
  return tf.where(same, 0., _MASKED)


class WindowAttention(tf.keras.layers.Layer):
  """Multi-head self-attention within w x w windows (NHWC in and out)."""

  def __init__(self, dim, head_dim, window, shifted=False, name=None,
               dtype=None):
    super().__init__(name=name, dtype=dtype)
    if dim % head_dim:
      raise ValueError(f"dim {dim} is not a multiple of head_dim {head_dim}")
    self.dim, self.window, self.shifted = dim, window, shifted
    self.num_heads = dim // head_dim
    self.head_dim = head_dim
    self.qkv = tf.keras.layers.Dense(3 * dim, name="qkv", dtype=dtype)
    self.proj = tf.keras.layers.Dense(dim, name="proj", dtype=dtype)
    self._bias_index = relative_position_index(window)

  def build(self, input_shape):
    self.relative_position_bias = self.add_weight(
        "relative_position_bias", [(2 * self.window - 1) ** 2, self.num_heads],
        initializer=tf.keras.initializers.TruncatedNormal(stddev=.02))
    super().build(input_shape)

  def call(self, x):
    shape = tf.shape(x)
    batch, height, width = shape[0], shape[1], shape[2]
    w, area = self.window, self.window * self.window
    if self.shifted:
      x = tf.roll(x, shift=[-(w // 2), -(w // 2)], axis=[1, 2])
    windows = window_partition(x, w)  # [B*nW, w*w, C]
    qkv = tf.reshape(self.qkv(windows),
                     [-1, area, 3, self.num_heads, self.head_dim])
    query, key, value = tf.unstack(qkv, axis=2)  # each [B*nW, w*w, h, d]
    query = query * tf.cast(self.head_dim ** -.5, query.dtype)
    logits = tf.einsum("bqhd,bkhd->bhqk", query, key)
    bias = tf.gather(self.relative_position_bias, self._bias_index)  # [q,k,h]
    logits += tf.cast(tf.transpose(bias, [2, 0, 1]), logits.dtype)[None]
    if self.shifted:
      logits = self._mask_shifted(logits, batch, height, width)
    # Softmax in float32: the masked logits and bf16's 8-bit mantissa do not
    # mix well, and the attention maps are small.
    weights = tf.cast(tf.nn.softmax(tf.cast(logits, tf.float32)), value.dtype)
    attended = tf.einsum("bhqk,bkhd->bqhd", weights, value)
    attended = self.proj(tf.reshape(attended, [-1, area, self.dim]))
    x = window_merge(attended, w, batch, height, width)
    if self.shifted:
      x = tf.roll(x, shift=[w // 2, w // 2], axis=[1, 2])
    return x

  def _mask_shifted(self, logits, batch, height, width):
    """Adds the shifted windows' cross-region mask to logits [B*nW, h, q, k]."""
    w, area = self.window, self.window * self.window
    # Group the windows per image so one mask serves the whole batch.
    num_windows = (height // w) * (width // w)
    mask = shifted_window_mask(height, width, w)
    logits = tf.reshape(logits, [batch, num_windows, self.num_heads, area,
                                 area])
    logits += tf.cast(mask, logits.dtype)[None, :, None]
    return tf.reshape(logits, [-1, self.num_heads, area, area])

  def coding_call(self, x):
    """The same attention in tfcodec.layers.exact's per-row arithmetic (a
    frozen model's coding path): float32 NHWC in and out, bit-identical
    whatever the threads, kernels, batch or graph rewrites."""
    shape = tf.shape(x)
    batch, height, width = shape[0], shape[1], shape[2]
    w, area = self.window, self.window * self.window
    x = tf.cast(x, tf.float32)
    if self.shifted:
      x = tf.roll(x, shift=[-(w // 2), -(w // 2)], axis=[1, 2])
    windows = window_partition(x, w)  # [B*nW, w*w, C]
    qkv = exact.RowDense(self.qkv.kernel, self.qkv.bias)(
        tf.reshape(windows, [-1, self.dim]))
    qkv = tf.reshape(qkv, [-1, area, 3, self.num_heads, self.head_dim])
    query, key, value = tf.unstack(qkv, axis=2)  # each [B*nW, w*w, h, d]

    def adjust_logits(logits):
      bias = tf.gather(self.relative_position_bias, self._bias_index)
      logits += tf.cast(tf.transpose(bias, [2, 0, 1]), tf.float64)[None]
      if self.shifted:
        logits = self._mask_shifted(logits, batch, height, width)
      return logits

    attended = exact.attend(query, key, value, adjust_logits)
    attended = exact.RowDense(self.proj.kernel, self.proj.bias)(
        tf.reshape(attended, [-1, self.dim]))
    x = window_merge(tf.reshape(attended, [-1, area, self.dim]), w, batch,
                     height, width)
    if self.shifted:
      x = tf.roll(x, shift=[w // 2, w // 2], axis=[1, 2])
    return x


class SwinBlock(tf.keras.layers.Layer):
  """Pre-norm transformer block on windows: attention and a 4x GELU MLP."""

  def __init__(self, dim, head_dim, window, shifted=False, name=None,
               dtype=None):
    super().__init__(name=name, dtype=dtype)
    self.dim = dim
    # epsilon 1e-5 as in PyTorch's LayerNorm, which the reference trains with.
    self.norm_0 = tf.keras.layers.LayerNormalization(epsilon=1e-5,
                                                     name="norm_0", dtype=dtype)
    self.attention = WindowAttention(dim, head_dim, window, shifted,
                                     name="attention", dtype=dtype)
    self.norm_1 = tf.keras.layers.LayerNormalization(epsilon=1e-5,
                                                     name="norm_1", dtype=dtype)
    self.mlp_0 = tf.keras.layers.Dense(4 * dim, activation=tf.nn.gelu,
                                       name="mlp_0", dtype=dtype)
    self.mlp_1 = tf.keras.layers.Dense(dim, name="mlp_1", dtype=dtype)

  _exact = False

  def prepare_exact(self):
    """Switches inference (training=False) to the exact coding arithmetic
    (called by model.freeze(), like the exact convolutions)."""
    self._exact = True

  def call(self, x, training=None):
    if self._exact and not training:
      return self.coding_call(x)
    x = x + self.attention(self.norm_0(x))
    return x + self.mlp_1(self.mlp_0(self.norm_1(x)))

  def coding_call(self, x):
    """The block in tfcodec.layers.exact's per-row arithmetic."""
    x = tf.cast(x, tf.float32)
    shape = tf.shape(x)

    def norm(layer, features):
      rows = exact.row_layer_norm(tf.reshape(features, [-1, self.dim]),
                                  layer.gamma, layer.beta, layer.epsilon)
      return tf.reshape(rows, shape)

    x = x + self.attention.coding_call(norm(self.norm_0, x))
    hidden = exact.RowDense(self.mlp_0.kernel, self.mlp_0.bias,
                            self.mlp_0.activation)(
                                tf.reshape(norm(self.norm_1, x),
                                           [-1, self.dim]))
    update = exact.RowDense(self.mlp_1.kernel, self.mlp_1.bias)(hidden)
    return x + tf.reshape(update, shape)


class SwinPair(Chain):
  """A plain-window block, then a shifted-window block."""

  def __init__(self, dim, head_dim, window, name=None):
    super().__init__(name=name)
    self.add(SwinBlock(dim, head_dim, window, shifted=False, name="w_block"))
    self.add(SwinBlock(dim, head_dim, window, shifted=True, name="sw_block"))


class SWAtten(tf.keras.layers.Layer):
  """TCM's Swin-based attention on a channel-squeezed support.

  out = conv1x1_out(a * sigmoid(b) + x'),  x' = conv1x1_in(support),
  a = RU x3 (x'),  b = conv1x1(RU x3 (SwinPair(x'))).
  Squeezing to `inner` channels (128) before the attention is what keeps the
  ten of these in the entropy model affordable.
  """

  def __init__(self, channels, inner=128, head_dim=16, window=8, name=None):
    super().__init__(name=name)
    self.in_conv = conv(inner, 1, name="in_conv")
    self.non_local = SwinPair(inner, head_dim, window, name="non_local")
    self.trunk = [ResidualUnit(inner, name=f"trunk_{i}") for i in range(3)]
    self.gate = [ResidualUnit(inner, name=f"gate_{i}") for i in range(3)]
    self.gate_conv = conv(inner, 1, name="gate_conv")
    self.out_conv = conv(channels, 1, name="out_conv")

  def call(self, support):
    x = self.in_conv(support)
    trunk = x
    for unit in self.trunk:
      trunk = unit(trunk)
    gate = self.non_local(x)
    for unit in self.gate:
      gate = unit(gate)
    gate = tf.sigmoid(self.gate_conv(gate))
    return self.out_conv(trunk * gate + x)
