"""Liu, Sun, Katto: "Learned Image Compression with Mixed Transformer-CNN
Architectures", CVPR 2023. https://arxiv.org/abs/2303.14978

TCM (ARCHITECTURES.md 6): every transform interleaves Transformer-CNN Mixture
blocks with residual up/down-sampling, and y is coded by a channel-wise
autoregressive entropy model (5 slices) whose supports go through SWAtten.

  x -> g_a -> y (M=320 ch, 1/16) -> h_a -> z (192 ch, 1/64)
                                        Q, factorized prior (z)
  z_hat -> h_mean_s  -> latent_means   (M ch, 1/16)
  z_hat -> h_scale_s -> latent_scales  (M ch, 1/16)

  for slice i = 0..4 (64 channels each; the 5 network steps of the decoder):
    mean_support  = SWAtten_mean_i (latent_means  | y_hat_0 .. y_hat_{i-1})
    scale_support = SWAtten_scale_i(latent_scales | y_hat_0 .. y_hat_{i-1})
    means_i         = mean_net_i(mean_support)
    scale_indexes_i = scale_net_i(scale_support)
    y_hat_i  = round(y_i - means_i) + means_i      (Gaussian conditional)
    y_hat_i += 0.5 * tanh(lrp_net_i(mean_support | y_hat_i))   (LRP)
  y_hat = y_hat_0 | .. | y_hat_4 -> g_s -> x_hat

  TCM block (2N channels): 1x1 conv, split; N channels through a doubly
  residual CNN block, N through a Swin block (W or SW); concat, 1x1, +input.

Choices made here (all documented in docs/ARCHITECTURE.md):
* The scale networks output a *scale index* into the shared 64-entry log
  table (0.11 .. 256), as tfc's ms2020 does, instead of sigma. The table is
  what the range coder uses anyway, so training sees the coder's scales.
* Training: noise for the rate, straight-through rounding for what flows to
  later slices and to g_s (as ms2020); z reaches h_s rounded straight-through
  to integers (ms2020's plain rounding, not the reference's median offset).
* Images are edge-padded to `stride` (128 = 16 x window 8 on y, and
  32 x window 4 in the hyper path), so windows tile every feature map.
* One range-coded string per slice (y0..y4) plus z.

"Educational" in tfc's sense: the structure follows the reference so the
parameter counts match (45.18M / 59.13M / 76.57M for S / M / L); the
numerics (Keras "same" padding, scale indexes) are this project's.
"""

import functools

import tensorflow as tf

from tfcodec.entropy import FactorizedPrior, GaussianConditional
from tfcodec.layers import conv
from tfcodec.layers.conv import torch_default_init
from tfcodec.layers.attention import SWAtten, SwinBlock
from tfcodec.layers.chain import Chain
from tfcodec.layers.residual import (ResidualBlock, ResidualBlockDown,
                                     ResidualBlockUp, SubpelConv)
from tfcodec.models.base import CompressionModel
from tfcodec.models.registry import register_model

gelu = functools.partial(tf.nn.gelu, approximate=False)


class TCMBlock(tf.keras.layers.Layer):
  """Transformer-CNN Mixture block: 2N channels in and out, same size."""

  def __init__(self, N, head_dim, window, shifted, name=None):
    super().__init__(name=name)
    self.N = N
    self.in_conv = conv(2 * N, 1, name="in_conv")
    self.cnn = ResidualBlock(N, name="cnn")
    self.transformer = SwinBlock(N, head_dim, window, shifted,
                                 name="transformer")
    self.out_conv = conv(2 * N, 1, name="out_conv")

  def call(self, x):
    cnn_features, transformer_features = tf.split(
        self.in_conv(x), [self.N, self.N], axis=-1)
    # The CNN branch is residual twice: inside the block and around it.
    cnn_features = self.cnn(cnn_features) + cnn_features
    transformer_features = self.transformer(transformer_features)
    mixed = tf.concat([cnn_features, transformer_features], axis=-1)
    return x + self.out_conv(mixed)


def tcm_pair(N, head_dim, window, name):
  """A W-block then an SW-block, as the reference always pairs them."""
  return [TCMBlock(N, head_dim, window, shifted=False, name=f"{name}_w"),
          TCMBlock(N, head_dim, window, shifted=True, name=f"{name}_sw")]


class AnalysisTransform(Chain):
  """g_a: image in [0, 1] -> y (M channels, 1/16 resolution)."""

  def __init__(self, N, M, head_dims, window, gdn_form, name="analysis"):
    super().__init__(name=name)
    for stage, head_dim in enumerate(head_dims):
      self.add(ResidualBlockDown(2 * N, gdn_form, name=f"down_{stage}"))
      for block in tcm_pair(N, head_dim, window, f"tcm_{stage}"):
        self.add(block)
    # float32: bf16 would quantise y to ~3 significant digits before rounding.
    self.add(conv(M, 3, 2, name="conv_out", dtype="float32"))


class SynthesisTransform(Chain):
  """g_s: y_hat -> reconstruction (float32, about [0, 1])."""

  def __init__(self, N, head_dims, window, gdn_form, name="synthesis"):
    super().__init__(name=name)
    for stage, head_dim in enumerate(head_dims):
      self.add(ResidualBlockUp(2 * N, gdn_form, name=f"up_{stage}"))
      for block in tcm_pair(N, head_dim, window, f"tcm_{stage}"):
        self.add(block)
    # float32: the distortion is measured on this output.
    self.add(SubpelConv(3, name="subpel_out", dtype="float32"))


class HyperAnalysisTransform(Chain):
  """h_a: y -> z (hyper_channels, 1/64 resolution)."""

  def __init__(self, N, hyper_channels, head_dim, window, gdn_form,
               name="hyper_analysis"):
    super().__init__(name=name)
    self.add(ResidualBlockDown(2 * N, gdn_form, name="down"))
    for block in tcm_pair(N, head_dim, window, "tcm"):
      self.add(block)
    self.add(conv(hyper_channels, 3, 2, name="conv_out", dtype="float32"))


class HyperSynthesisTransform(Chain):
  """One h_s branch: z_hat -> M channels of latent features at 1/16."""

  def __init__(self, N, M, head_dim, window, gdn_form, name):
    super().__init__(name=name)
    self.add(ResidualBlockUp(2 * N, gdn_form, name="up"))
    for block in tcm_pair(N, head_dim, window, "tcm"):
      self.add(block)
    # float32: these features set the means and scales the coder uses.
    self.add(SubpelConv(M, name="subpel_out", dtype="float32"))


class SliceTransform(Chain):
  """conv3 GELU conv3 GELU conv3: a support -> one slice's parameters."""

  def __init__(self, hidden, out_channels, name):
    super().__init__(name=name)
    self.add(conv(hidden[0], 3, activation=gelu, name="conv_0"))
    self.add(conv(hidden[1], 3, activation=gelu, name="conv_1"))
    # float32: means, scale indexes and LRP feed the entropy coder / y_hat.
    self.add(conv(out_channels, 3, name="conv_2", dtype="float32"))


class TCMModel(CompressionModel):
  """TCM with the SWAtten channel-wise entropy model. Args: N, M, ...

  Args:
    N: half the block width C = 2N (64 / 96 / 128 for S / M / L).
    M: channels of y (320); must divide into `num_slices`.
    num_slices: channel slices of y coded one after the other (5).
    max_support_slices: how many previous slices a slice may condition on.
    window / hyper_window: attention window in g_a, g_s / in h_a, h_s.
    head_dims: per-stage head size: 3 stages of g_a, then 3 of g_s.
    hyper_head_dim: head size in h_a and h_s.
    hyper_channels: channels of z (192).
    attention_channels, attention_head_dim, attention_window: SWAtten's
      squeezed width (128), head size (16) and window (8).
    slice_hidden: widths of the two hidden layers of the slice nets.
    gdn_form: GDN form in the residual up/down blocks.
  """

  stride = 128
  string_names = ("y0", "y1", "y2", "y3", "y4", "z")  # per instance if not 5
  shape_names = ("y", "z")
  default_N = 64

  def __init__(self, N=None, M=320, num_slices=5, max_support_slices=5,
               window=8, hyper_window=4, head_dims=(8, 16, 32, 32, 16, 8),
               hyper_head_dim=32, hyper_channels=192, attention_channels=128,
               attention_head_dim=16, attention_window=8,
               slice_hidden=(224, 128), gdn_form="simplified", **kwargs):
    super().__init__(**kwargs)
    N = N or self.default_N
    if M % num_slices:
      raise ValueError(f"M={M} does not split into {num_slices} slices")
    self.N, self.M = N, M
    self.num_slices = num_slices
    self.max_support_slices = max_support_slices
    self.slice_channels = M // num_slices
    # y is at 1/16 and attended in windows of `window` and `attention_window`;
    # the hyper path attends at 1/32 in windows of `hyper_window`.
    self.stride = max(16 * window, 16 * attention_window, 32 * hyper_window)
    self.string_names = tuple(f"y{i}" for i in range(num_slices)) + ("z",)

    self.g_a = AnalysisTransform(N, M, head_dims[:3], window, gdn_form)
    self.g_s = SynthesisTransform(N, head_dims[3:], window, gdn_form)
    self.h_a = HyperAnalysisTransform(N, hyper_channels, hyper_head_dim,
                                      hyper_window, gdn_form)
    self.h_mean_s = HyperSynthesisTransform(
        N, M, hyper_head_dim, hyper_window, gdn_form, name="hyper_mean")
    self.h_scale_s = HyperSynthesisTransform(
        N, M, hyper_head_dim, hyper_window, gdn_form, name="hyper_scale")

    self.mean_attention, self.scale_attention = [], []
    self.mean_nets, self.scale_nets, self.lrp_nets = [], [], []
    for i in range(num_slices):
      support = M + self.slice_channels * min(i, max_support_slices)
      attention = functools.partial(
          SWAtten, support, attention_channels, attention_head_dim,
          attention_window)
      self.mean_attention.append(attention(name=f"mean_attention_{i}"))
      self.scale_attention.append(attention(name=f"scale_attention_{i}"))
      self.mean_nets.append(SliceTransform(
          slice_hidden, self.slice_channels, name=f"mean_net_{i}"))
      self.scale_nets.append(SliceTransform(
          slice_hidden, self.slice_channels, name=f"scale_net_{i}"))
      self.lrp_nets.append(SliceTransform(
          slice_hidden, self.slice_channels, name=f"lrp_net_{i}"))

    # Plain rounding of z (as tfc's ms2020), not around the prior's median as
    # the reference: z_hat feeds h_s in every training step, and tfc finds
    # the median with an iterative search each time.
    # Width 1, not tfc's 10: a fresh h_a puts z near 0 (std 0.12), where the
    # default width charges 5.4 bits per symbol for thousands of steps (the
    # first TCM-S run's z still cost 0.21 bpp after 771); width 1 charges 2.3.
    self.z_prior = FactorizedPrior(hyper_channels, offset_heuristic=False,
                                   init_scale=1., name="z_prior")
    self.y_conditional = GaussianConditional(name="y_conditional")
    self.build_variables()
    # The reference's init (PyTorch's default); Keras' would blow up the
    # activations through the nested residual blocks (see the function).
    torch_default_init(self)

  # -- the pieces shared by the forward pass, compress and decompress -------
  def hyper_synthesis(self, z_hat):
    return self.h_mean_s(z_hat), self.h_scale_s(z_hat)

  def slice_parameters(self, i, latent_means, latent_scales, y_hat_slices):
    """Means, scale indexes and the mean support of slice i."""
    previous = y_hat_slices[:self.max_support_slices]
    mean_support = self.mean_attention[i](
        tf.concat([latent_means] + previous, axis=-1))
    scale_support = self.scale_attention[i](
        tf.concat([latent_scales] + previous, axis=-1))
    means = self.mean_nets[i](mean_support)
    scale_indexes = self.scale_nets[i](scale_support)
    return means, scale_indexes, mean_support

  def latent_residual(self, i, mean_support, y_hat_slice):
    """LRP: a bounded correction of the quantisation error of slice i."""
    support = tf.concat([mean_support, tf.cast(y_hat_slice,
                                               mean_support.dtype)], axis=-1)
    return .5 * tf.tanh(self.lrp_nets[i](support))

  def _slices(self, y):
    return tf.split(y, self.num_slices, axis=-1)

  # -- contract ------------------------------------------------------------
  def call(self, x, training=False):
    y = self.g_a(x)
    z = self.h_a(y)
    _, z_bits = self.z_prior(z, training=training)
    # h_s sees rounded z (straight-through in training), as at decode time.
    z_hat = self.z_prior.quantize(z)
    latent_means, latent_scales = self.hyper_synthesis(z_hat)
    y_hat_slices, y_bits = [], []
    for i, y_slice in enumerate(self._slices(y)):
      means, scale_indexes, mean_support = self.slice_parameters(
          i, latent_means, latent_scales, y_hat_slices)
      # Rate from the noisy slice in training; the reconstruction and the
      # later slices get straight-through rounding, which they see at test.
      _, slice_bits = self.y_conditional(y_slice, scale_indexes, means,
                                         training=training)
      y_bits.append(slice_bits)
      y_hat_slice = self.y_conditional.quantize(y_slice, means)
      y_hat_slice += self.latent_residual(i, mean_support, y_hat_slice)
      y_hat_slices.append(y_hat_slice)
    x_hat = self.g_s(tf.concat(y_hat_slices, axis=-1))
    bits = {f"y{i}": b for i, b in enumerate(y_bits)}
    bits["z"] = z_bits
    return dict(x_hat=x_hat, bits=bits)

  def entropy_modules(self):
    return [self.z_prior, self.y_conditional]

  def compress_latents(self, x):
    y = self.g_a(x)
    z = self.h_a(y)
    y_shape, z_shape = tf.shape(y)[1:3], tf.shape(z)[1:3]
    z_string, z_hat = self.z_prior.compress_with_reconstruction(z)
    latent_means, latent_scales = self.hyper_synthesis(z_hat)
    y_hat_slices, y_strings = [], []
    for i, y_slice in enumerate(self._slices(y)):
      means, scale_indexes, mean_support = self.slice_parameters(
          i, latent_means, latent_scales, y_hat_slices)
      y_strings.append(
          self.y_conditional.compress(y_slice, scale_indexes, means)[0])
      # The decoder's y_hat: the same rounding around the same means.
      y_hat_slice = self.y_conditional.quantize(y_slice, means)
      y_hat_slice += self.latent_residual(i, mean_support, y_hat_slice)
      y_hat_slices.append(y_hat_slice)
    return tuple(y_strings) + (z_string[0],), (y_shape, z_shape)

  def decompress_latents(self, strings, latent_shapes):
    y_strings, z_string = strings[:-1], strings[-1]
    _, z_shape = latent_shapes
    z_hat = self.z_prior.decompress(z_string[None], z_shape)
    latent_means, latent_scales = self.hyper_synthesis(z_hat)
    y_hat_slices = []
    for i in range(self.num_slices):
      means, scale_indexes, mean_support = self.slice_parameters(
          i, latent_means, latent_scales, y_hat_slices)
      y_hat_slice = self.y_conditional.decompress(
          y_strings[i][None], scale_indexes, means)
      y_hat_slice += self.latent_residual(i, mean_support, y_hat_slice)
      y_hat_slices.append(y_hat_slice)
    return self.g_s(tf.concat(y_hat_slices, axis=-1))


@register_model("tcm-s")
class TCMSmall(TCMModel):
  """TCM-S (Liu, Sun, Katto 2023), N=64. Args: N, M, ..."""


@register_model("tcm-m")
class TCMMedium(TCMModel):
  """TCM-M (Liu, Sun, Katto 2023), N=96. Args: N, M, ..."""

  default_N = 96


@register_model("tcm-l")
class TCMLarge(TCMModel):
  """TCM-L (Liu, Sun, Katto 2023), N=128. Args: N, M, ..."""

  default_N = 128
