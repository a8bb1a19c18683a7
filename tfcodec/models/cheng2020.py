"""Cheng, Sun, Takeuchi, Katto: "Learned image compression with discretized
Gaussian mixture likelihoods and attention modules", CVPR 2020.
https://arxiv.org/abs/2001.01568

Three registered models share the blocks below (ARCHITECTURES.md 0.7, 5):

  cheng2020-anchor   CompressAI's anchor: residual transforms, no attention
  cheng2020-attn     CompressAI's attention model (four attention modules)
  cheng2020-gmm      the paper / official-code model (5.1)

  x -> g_a -> y (N ch, 1/16) -> h_a -> z (N ch, 1/64)
                                 Q, factorized prior (z)
  z_hat -> h_s -> psi (2N) --+
  y_hat -> masked 5x5 conv --+--> 1x1 entropy parameters -> likelihood of y
  y_hat -> g_s -> x_hat

g_a: RBS RB RBS [AM] RB RBS RB conv3/2 [AM]          (RBS: stride-2 residual)
g_s: [AM] RB RBU RB RBU [AM] RB RBU RB subpel3 (->3)  (RBU: sub-pixel residual)

`likelihood` picks the entropy model of y for every variant: "gaussian"
(mean-scale, 2N parameters, CompressAI's choice) or "gmm" (K = 3 discretized
Gaussian mixture, 9N parameters, the paper's). The anchor and attn models
default to the Gaussian, so they can be set beside CompressAI's published
numbers; cheng2020-gmm defaults to the mixture.

Differences of the paper model from CompressAI's attn: a 4N -> 640 -> 640 ->
9N entropy-parameter head without final bias, transposed 3x3 convolutions in
h_s, 1x1 sub-pixel shortcuts in the RBUs, no ReLU after the attention
residual units, no bias on g_a's last convolution, LeakyReLU slope 0.2 (the
slope of tf.nn.leaky_relu, which the official code used; CompressAI: 0.01).
"""

import functools

import tensorflow as tf

from tfcodec.layers import conv, deconv, gdn, igdn
from tfcodec.models.mbt2018 import JointContextModel
from tfcodec.models.registry import register_model


def leaky_relu(slope):
  """LeakyReLU as max(x, slope * x), which equals it for 0 < slope < 1.

  Written out so that Grappler's remapper does not fuse it into the preceding
  convolution: with tf.nn.leaky_relu, TF 2.14's remapper failed on the
  residual blocks' gradient graph ("fanout ... LeakyReluGrad exist for
  missing node") and the training step then crashed with a segmentation
  fault (seen with train.py --model=cheng2020-anchor).
  """
  return lambda x: tf.maximum(x, slope * x)


def subpel_conv(filters, kernel_size, name=None, dtype=None):
  """k x k convolution to 4x the channels, then depth-to-space by 2."""
  return tf.keras.Sequential([
      conv(filters * 4, kernel_size, name="conv", dtype=dtype),
      tf.keras.layers.Lambda(lambda t: tf.nn.depth_to_space(t, 2),
                             name="depth_to_space", dtype=dtype),
  ], name=name)


class ResidualBlock(tf.keras.layers.Layer):
  """RB: conv3 LReLU conv3 LReLU, plus identity."""

  def __init__(self, channels, slope, **kwargs):
    super().__init__(**kwargs)
    act = leaky_relu(slope)
    self.conv_0 = conv(channels, 3, activation=act, name="conv_0")
    self.conv_1 = conv(channels, 3, activation=act, name="conv_1")

  def call(self, x):
    return x + self.conv_1(self.conv_0(x))


class ResidualBlockWithStride(tf.keras.layers.Layer):
  """RBS: conv3/2 LReLU conv3 GDN, plus a conv1/2 shortcut (halves H, W)."""

  def __init__(self, channels, slope, gdn_form, **kwargs):
    super().__init__(**kwargs)
    act = leaky_relu(slope)
    self.conv_0 = conv(channels, 3, 2, activation=act, name="conv_0")
    self.conv_1 = conv(channels, 3, name="conv_1")
    self.gdn = gdn(name="gdn", form=gdn_form)
    self.shortcut = conv(channels, 1, 2, name="shortcut")

  def call(self, x):
    main = tf.cast(self.gdn(self.conv_1(self.conv_0(x))), x.dtype)
    return main + tf.cast(self.shortcut(x), x.dtype)


class ResidualBlockUpsample(tf.keras.layers.Layer):
  """RBU: subpel3 LReLU conv3 IGDN, plus a sub-pixel shortcut (doubles H, W)."""

  def __init__(self, channels, slope, gdn_form, shortcut_kernel=3, **kwargs):
    super().__init__(**kwargs)
    self.act = leaky_relu(slope)
    self.subpel = subpel_conv(channels, 3, name="subpel")
    self.conv = conv(channels, 3, name="conv")
    self.igdn = igdn(name="igdn", form=gdn_form)
    self.shortcut = subpel_conv(channels, shortcut_kernel, name="shortcut")

  def call(self, x):
    main = tf.cast(self.igdn(self.conv(self.act(self.subpel(x)))), x.dtype)
    return main + tf.cast(self.shortcut(x), x.dtype)


class ResidualUnit(tf.keras.layers.Layer):
  """Attention RU: conv1 (C -> C/2) ReLU conv3 ReLU conv1 (-> C), plus identity."""

  def __init__(self, channels, relu_after_add, **kwargs):
    super().__init__(**kwargs)
    self.relu_after_add = relu_after_add
    # Sub-layers take the global policy unless told: a float32 unit under
    # mixed_bfloat16 would otherwise add its float32 input to bf16 outputs.
    dtype = kwargs.get("dtype")
    self.conv_0 = conv(channels // 2, 1, activation="relu", name="conv_0",
                       dtype=dtype)
    self.conv_1 = conv(channels // 2, 3, activation="relu", name="conv_1",
                       dtype=dtype)
    self.conv_2 = conv(channels, 1, name="conv_2", dtype=dtype)

  def call(self, x):
    out = x + self.conv_2(self.conv_1(self.conv_0(x)))
    return tf.nn.relu(out) if self.relu_after_add else out


class AttentionBlock(tf.keras.layers.Layer):
  """Simplified attention module: x + trunk(x) * sigmoid(mask(x))."""

  def __init__(self, channels, relu_after_add, **kwargs):
    super().__init__(**kwargs)
    # The last attention of g_a is float32 (it feeds y); its units must be too.
    dtype = kwargs.get("dtype")
    self.trunk = [ResidualUnit(channels, relu_after_add, name=f"trunk_{i}",
                               dtype=dtype) for i in range(3)]
    self.mask = [ResidualUnit(channels, relu_after_add, name=f"mask_{i}",
                              dtype=dtype) for i in range(3)]
    self.mask_conv = conv(channels, 1, name="mask_conv", dtype=dtype)

  def call(self, x):
    trunk, mask = x, x
    for unit in self.trunk:
      trunk = unit(trunk)
    for unit in self.mask:
      mask = unit(mask)
    return x + trunk * tf.sigmoid(self.mask_conv(mask))


class AnalysisTransform(tf.keras.Sequential):
  """g_a: image -> y (N channels, 1/16)."""

  def __init__(self, N, slope, gdn_form, attention, relu_after_add,
               last_bias=True, name="analysis"):
    super().__init__(name=name)
    rbs = functools.partial(ResidualBlockWithStride, N, slope, gdn_form)
    rb = functools.partial(ResidualBlock, N, slope)
    am = functools.partial(AttentionBlock, N, relu_after_add)
    self.add(rbs(name="rbs_0"))
    self.add(rb(name="rb_0"))
    self.add(rbs(name="rbs_1"))
    if attention:
      self.add(am(name="attention_0"))
    self.add(rb(name="rb_1"))
    self.add(rbs(name="rbs_2"))
    self.add(rb(name="rb_2"))
    # float32 from here: y is rounded, bf16 would cost bits.
    self.add(conv(N, 3, 2, use_bias=last_bias, name="conv_out", dtype="float32"))
    if attention:
      self.add(AttentionBlock(N, relu_after_add, name="attention_1",
                              dtype="float32"))


class SynthesisTransform(tf.keras.Sequential):
  """g_s: y_hat -> reconstruction (float32 output)."""

  def __init__(self, N, slope, gdn_form, attention, relu_after_add,
               shortcut_kernel, name="synthesis"):
    super().__init__(name=name)
    rbu = functools.partial(ResidualBlockUpsample, N, slope, gdn_form,
                            shortcut_kernel)
    rb = functools.partial(ResidualBlock, N, slope)
    am = functools.partial(AttentionBlock, N, relu_after_add)
    if attention:
      self.add(am(name="attention_0"))
    self.add(rb(name="rb_0"))
    self.add(rbu(name="rbu_0"))
    self.add(rb(name="rb_1"))
    self.add(rbu(name="rbu_1"))
    if attention:
      self.add(am(name="attention_1"))
    self.add(rb(name="rb_2"))
    self.add(rbu(name="rbu_2"))
    self.add(rb(name="rb_3"))
    self.add(subpel_conv(3, 3, name="subpel_out", dtype="float32"))


class HyperAnalysis(tf.keras.Sequential):
  """h_a: y -> z, 3x3 convolutions (two per 5x5 of Minnen's), N channels."""

  def __init__(self, N, slope, name="hyper_analysis"):
    super().__init__(name=name)
    act = leaky_relu(slope)
    for i, stride in enumerate((1, 1, 2, 1)):
      self.add(conv(N, 3, stride, activation=act, name=f"conv_{i}",
                    dtype="float32"))
    self.add(conv(N, 3, 2, name="conv_4", dtype="float32"))


class HyperSynthesis(tf.keras.Sequential):
  """h_s: z_hat -> psi (2N channels, 1/16).

  CompressAI upsamples with sub-pixel 3x3 convolutions, the paper's code with
  3x3 transposed convolutions (`transposed=True`).
  """

  def __init__(self, N, slope, transposed, name="hyper_synthesis"):
    super().__init__(name=name)
    act = leaky_relu(slope)
    wide = N * 3 // 2
    for i, width in enumerate((N, wide)):
      self.add(conv(width, 3, activation=act, name=f"conv_{i}", dtype="float32"))
      if transposed:
        self.add(deconv(width, 3, 2, activation=act, name=f"up_{i}",
                        dtype="float32"))
      else:
        self.add(subpel_conv(width, 3, name=f"up_{i}", dtype="float32"))
        self.add(tf.keras.layers.Activation(act, name=f"up_act_{i}",
                                            dtype="float32"))
    self.add(conv(2 * N, 3, name="conv_out", dtype="float32"))


class Cheng2020Model(JointContextModel):
  """Shared body; the registered subclasses fix the variant."""

  attention = True
  paper = False  # True: the official-code (5.1) variant

  def __init__(self, N=192, M=None, gdn_form="simplified",
               likelihood="gaussian", **kwargs):
    super().__init__(**kwargs)
    if M is not None and M != N:
      raise ValueError(f"Cheng 2020 uses one width for y and z: N = M, got "
                       f"N={N}, M={M}")
    self.N = self.M = N
    slope = 0.2 if self.paper else 0.01
    relu_after_add = not self.paper
    self.g_a = AnalysisTransform(N, slope, gdn_form, self.attention,
                                 relu_after_add, last_bias=not self.paper)
    self.g_s = SynthesisTransform(N, slope, gdn_form, self.attention,
                                  relu_after_add,
                                  shortcut_kernel=1 if self.paper else 3)
    self.h_a = HyperAnalysis(N, slope)
    self.h_s = HyperSynthesis(N, slope, transposed=self.paper)
    activation = leaky_relu(slope)
    # A fresh h_a puts z near 0 (std ~0.1 at N=128), where tfc's default
    # prior width (10) charges 5.4 bits per symbol and takes thousands of
    # Adam steps to narrow; width 1 charges 2.3 (measured on Kodak crops).
    # Only the initialisation changes: trained weights load over it.
    if self.paper:
      self._build_entropy(N, N, hidden=(640, 640), likelihood=likelihood,
                          activation=activation, final_bias=False,
                          z_prior_init_scale=1.)
    else:
      self._build_entropy(N, N, hidden=(N * 10 // 3, N * 8 // 3),
                          likelihood=likelihood, activation=activation,
                          z_prior_init_scale=1.)
    self.build_variables()


@register_model("cheng2020-anchor")
class Cheng2020Anchor(Cheng2020Model):
  """CompressAI's cheng2020-anchor (no attention). Args: N, likelihood."""

  attention = False


@register_model("cheng2020-attn")
class Cheng2020Attention(Cheng2020Model):
  """CompressAI's cheng2020-attn. Args: N, likelihood."""

  attention = True


@register_model("cheng2020-gmm")
class Cheng2020GMM(Cheng2020Model):
  """The paper's model: attention and a K = 3 Gaussian mixture. Args: N."""

  attention = True
  paper = True

  def __init__(self, N=192, M=None, likelihood="gmm", **kwargs):
    super().__init__(N=N, M=M, likelihood=likelihood, **kwargs)
