"""Residual blocks of the CompressAI family (ARCHITECTURES.md 0.7).

  ResidualBlock        conv3 LReLU conv3 LReLU, plus the input
  ResidualBlockDown    x2 down: conv3/2 LReLU conv3 GDN, shortcut conv1/2
  ResidualBlockUp      x2 up: subpel3 LReLU conv3 IGDN, shortcut subpel3
  ResidualUnit         1x1 (C/2) ReLU 3x3 ReLU 1x1 (C), plus the input, ReLU
  SubpelConv           conv3 to 4x the channels, then depth-to-space x2

All are Keras layers, so they run under `mixed_bfloat16`; the GDNs inside run
in the compute dtype too (see gdn.py). LeakyReLU uses slope 0.01 (PyTorch's default,
which the published models were trained with).
"""

import functools

import tensorflow as tf

from tfcodec.layers.conv import conv
from tfcodec.layers.gdn import gdn, igdn

leaky_relu = functools.partial(tf.nn.leaky_relu, alpha=0.01)


class SubpelConv(tf.keras.layers.Layer):
  """Sub-pixel upsampling by 2: a 3x3 conv to 4x filters, then depth-to-space.

  Upsampling with depth-to-space has no checkerboard artefacts of its own and
  is what the TCM and Cheng 2020 decoders use instead of transposed convs.
  """

  def __init__(self, filters, kernel_size=3, name=None, dtype=None):
    super().__init__(name=name, dtype=dtype)
    self.conv = conv(filters * 4, kernel_size, name="conv", dtype=dtype)

  def call(self, x):
    return tf.nn.depth_to_space(self.conv(x), 2)


class ResidualBlock(tf.keras.layers.Layer):
  """Two 3x3 convs with LeakyReLU after each, plus the (same-width) input."""

  def __init__(self, channels, name=None, dtype=None):
    super().__init__(name=name, dtype=dtype)
    self.conv_0 = conv(channels, 3, activation=leaky_relu, name="conv_0",
                       dtype=dtype)
    self.conv_1 = conv(channels, 3, activation=leaky_relu, name="conv_1",
                       dtype=dtype)

  def call(self, x):
    return x + self.conv_1(self.conv_0(x))


class ResidualBlockDown(tf.keras.layers.Layer):
  """Halves H and W: conv3/2 LReLU conv3 GDN, with a 1x1/2 conv shortcut."""

  def __init__(self, channels, gdn_form="simplified", name=None):
    super().__init__(name=name)
    self.conv_0 = conv(channels, 3, 2, activation=leaky_relu, name="conv_0")
    self.conv_1 = conv(channels, 3, name="conv_1")
    self.gdn = gdn(name="gdn", form=gdn_form)
    self.shortcut = conv(channels, 1, 2, name="shortcut")

  def call(self, x):
    main = tf.cast(self.gdn(self.conv_1(self.conv_0(x))), self.compute_dtype)
    return main + self.shortcut(x)


class ResidualBlockUp(tf.keras.layers.Layer):
  """Doubles H and W: subpel3 LReLU conv3 IGDN, with a subpel3 shortcut."""

  def __init__(self, channels, gdn_form="simplified", name=None):
    super().__init__(name=name)
    self.subpel = SubpelConv(channels, name="subpel")
    self.conv = conv(channels, 3, name="conv")
    self.igdn = igdn(name="igdn", form=gdn_form)
    self.shortcut = SubpelConv(channels, name="shortcut")

  def call(self, x):
    main = self.conv(leaky_relu(self.subpel(x)))
    main = tf.cast(self.igdn(main), self.compute_dtype)
    return main + self.shortcut(x)


class ResidualUnit(tf.keras.layers.Layer):
  """Bottleneck residual unit of the attention modules (Cheng 2020, TCM).

  The ReLU after the addition follows CompressAI, whose form TCM builds on.
  """

  def __init__(self, channels, name=None):
    super().__init__(name=name)
    self.conv_0 = conv(channels // 2, 1, activation="relu", name="conv_0")
    self.conv_1 = conv(channels // 2, 3, activation="relu", name="conv_1")
    self.conv_2 = conv(channels, 1, name="conv_2")

  def call(self, x):
    return tf.nn.relu(x + self.conv_2(self.conv_1(self.conv_0(x))))
