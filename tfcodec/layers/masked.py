"""Masked ("type A") convolution for autoregressive context models.

PixelCNN's type-A mask (ARCHITECTURES.md 0.6): in a k x k window the output at
(h, w) may only read positions strictly before it in raster order, i.e. the
rows above and, on its own row, the columns to its left. For 5 x 5 that is 12
of the 25 taps:

    x x x x x
    x x x x x
    x x . - -      . = the position being predicted, - = masked (zero)
    - - - - -

The full kernel is stored (and counted as parameters, like CompressAI); the
masked taps simply never receive a gradient. `causal_kernel()` hands the 12
live taps to the wavefront coder, which multiplies gathered neighbourhoods by
them instead of running a full convolution per step.
"""

import numpy as np
import tensorflow as tf


def causal_taps(kernel_size=5):
  """(row, column) of every unmasked tap, in raster order."""
  centre = kernel_size // 2
  return [(i, j) for i in range(kernel_size) for j in range(kernel_size)
          if i < centre or (i == centre and j < centre)]


class MaskedConv2D(tf.keras.layers.Layer):
  """k x k stride-1 convolution with a type-A causal mask, zero padding."""

  def __init__(self, filters, kernel_size=5, **kwargs):
    kwargs.setdefault("dtype", "float32")
    super().__init__(**kwargs)
    self.filters = filters
    self.kernel_size = kernel_size
    mask = np.zeros((kernel_size, kernel_size, 1, 1), np.float32)
    for i, j in causal_taps(kernel_size):
      mask[i, j] = 1.
    self._mask = tf.constant(mask)

  def build(self, input_shape):
    channels = int(input_shape[-1])
    self.kernel = self.add_weight(
        "kernel", (self.kernel_size, self.kernel_size, channels, self.filters),
        initializer="glorot_uniform")
    self.bias = self.add_weight("bias", (self.filters,), initializer="zeros")
    super().build(input_shape)

  def call(self, inputs):
    kernel = self.kernel * self._mask
    outputs = tf.nn.conv2d(inputs, kernel, 1, "SAME")
    return tf.nn.bias_add(outputs, self.bias)

  def causal_kernel(self, dtype=tf.float32):
    """[taps * C_in, C_out] matrix of the live taps, rows in `causal_taps` order.

    A gathered neighbourhood of shape [P, taps, C_in], flattened to
    [P, taps * C_in], times this matrix equals the convolution at P positions.
    """
    taps = causal_taps(self.kernel_size)
    live = tf.gather_nd(self.kernel, [[i, j] for i, j in taps])
    return tf.reshape(tf.cast(live, dtype), (-1, self.filters))
