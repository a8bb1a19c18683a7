"""Minnen, Ballé, Toderici: "Joint autoregressive and hierarchical priors for
learned image compression", NeurIPS 2018. https://arxiv.org/abs/1809.02736

mbt2018-mean (the mean-scale hyperprior, without the context model):

  x -> g_a -> y -> h_a -> z          (h_a sees y itself, not |y|)
                    Q, factorized prior (z)
  z_hat -> h_s -> [scale indexes | means]      (2M channels, split in half)
  y: Q around the mean, Gaussian conditional (mean-scale)
  y_hat -> g_s -> x_hat

g_a / g_s are Ballé 2018's; h_a / h_s use LeakyReLU (slope 0.01, as in
CompressAI) and h_s widens M -> 3M/2 -> 2M.
"""

import functools

import tensorflow as tf

from tfcodec.entropy import FactorizedPrior, GaussianConditional
from tfcodec.layers import conv, deconv
from tfcodec.models.base import CompressionModel
from tfcodec.models.bmshj2018 import AnalysisTransform, SynthesisTransform
from tfcodec.models.registry import register_model

leaky_relu = functools.partial(tf.nn.leaky_relu, alpha=0.01)


class MeanScaleHyperAnalysis(tf.keras.Sequential):
  """h_a: y -> z (N channels, 1/64 resolution)."""

  def __init__(self, N, name="hyper_analysis"):
    super().__init__(name=name)
    self.add(conv(N, 3, 1, activation=leaky_relu, name="conv_0", dtype="float32"))
    self.add(conv(N, 5, 2, activation=leaky_relu, name="conv_1", dtype="float32"))
    self.add(conv(N, 5, 2, name="conv_2", dtype="float32"))


class MeanScaleHyperSynthesis(tf.keras.Sequential):
  """h_s: z_hat -> 2M channels: M scale indexes, then M means."""

  def __init__(self, N, M, name="hyper_synthesis"):
    super().__init__(name=name)
    self.add(deconv(M, 5, 2, activation=leaky_relu, name="deconv_0", dtype="float32"))
    self.add(deconv(M * 3 // 2, 5, 2, activation=leaky_relu, name="deconv_1",
                    dtype="float32"))
    self.add(conv(M * 2, 3, 1, name="conv_2", dtype="float32"))


@register_model("mbt2018-mean")
class MeanScaleHyperpriorModel(CompressionModel):
  """Mean-scale hyperprior (Minnen 2018 without context). Args: N, M."""

  stride = 64
  string_names = ("y", "z")
  shape_names = ("y", "z")

  def __init__(self, N=128, M=192, gdn_form="simplified", **kwargs):
    super().__init__(**kwargs)
    self.N, self.M = N, M
    self.g_a = AnalysisTransform(N, M, gdn_form)
    self.g_s = SynthesisTransform(N, gdn_form)
    self.h_a = MeanScaleHyperAnalysis(N)
    self.h_s = MeanScaleHyperSynthesis(N, M)
    self.z_prior = FactorizedPrior(N, name="z_prior")
    self.y_conditional = GaussianConditional(name="y_conditional")
    self.build_variables()

  def entropy_parameters(self, z_hat, y_shape=None):
    params = self.h_s(z_hat)
    if y_shape is not None:
      params = params[:, :y_shape[0], :y_shape[1], :]
    scale_indexes, means = tf.split(params, 2, axis=-1)
    return scale_indexes, means

  def call(self, x, training=False):
    y = self.g_a(x)
    z = self.h_a(y)
    z_hat, z_bits = self.z_prior(z, training=training)
    scale_indexes, means = self.entropy_parameters(z_hat)
    y_hat, y_bits = self.y_conditional(y, scale_indexes, means,
                                       training=training)
    x_hat = self.g_s(y_hat)
    return dict(x_hat=x_hat, bits=dict(y=y_bits, z=z_bits))

  def entropy_modules(self):
    return [self.z_prior, self.y_conditional]

  def compress_latents(self, x):
    y = self.g_a(x)
    z = self.h_a(y)
    y_shape, z_shape = tf.shape(y)[1:3], tf.shape(z)[1:3]
    z_string = self.z_prior.compress(z)
    z_hat = self.z_prior.decompress(z_string, z_shape)
    scale_indexes, means = self.entropy_parameters(z_hat, y_shape)
    y_string = self.y_conditional.compress(y, scale_indexes, means)
    return (y_string[0], z_string[0]), (y_shape, z_shape)

  def decompress_latents(self, strings, latent_shapes):
    y_string, z_string = strings
    y_shape, z_shape = latent_shapes
    z_hat = self.z_prior.decompress(z_string[None], z_shape)
    scale_indexes, means = self.entropy_parameters(z_hat, y_shape)
    y_hat = self.y_conditional.decompress(y_string[None], scale_indexes, means)
    return self.g_s(y_hat)
