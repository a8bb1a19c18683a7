"""Ballé, Minnen, Singh, Hwang, Johnston: "Variational image compression with a
scale hyperprior", ICLR 2018. https://arxiv.org/abs/1802.01436

Two models:

  bmshj2018-factorized           bmshj2018-hyperprior

  x -> g_a -> y                  x -> g_a -> y -> |.| -> h_a -> z
       Q, factorized prior (y)               Q, factorized prior (z)
  y_hat -> g_s -> x_hat          z_hat -> h_s -> scale indexes
                                 y: Q, Gaussian conditional (zero mean)
                                 y_hat -> g_s -> x_hat

g_a / g_s: four 5x5 stride-2 (transposed) convolutions with GDN / IGDN between
them. The hyper-synthesis predicts a *scale index* into a 64-entry log-spaced
table (tfc's convention, ARCHITECTURES.md 0.3) instead of sigma itself.
"""

import tensorflow as tf

from tfcodec.entropy import FactorizedPrior, GaussianConditional
from tfcodec.layers import conv, deconv, gdn, igdn
from tfcodec.models.base import CompressionModel
from tfcodec.models.registry import register_model


class AnalysisTransform(tf.keras.Sequential):
  """g_a: image in [0, 1] -> latent y at 1/16 resolution, M channels."""

  def __init__(self, N, M, gdn_form="simplified", name="analysis"):
    super().__init__(name=name)
    for i in range(3):
      self.add(conv(N, 5, 2, name=f"conv_{i}"))
      self.add(gdn(name=f"gdn_{i}", form=gdn_form))
    # float32: bf16 would quantise y to ~3 significant digits before rounding.
    self.add(conv(M, 5, 2, name="conv_3", dtype="float32"))


class SynthesisTransform(tf.keras.Sequential):
  """g_s: quantized latent -> reconstruction (float32, about [0, 1])."""

  def __init__(self, N, gdn_form="simplified", name="synthesis"):
    super().__init__(name=name)
    for i in range(3):
      self.add(deconv(N, 5, 2, name=f"deconv_{i}"))
      self.add(igdn(name=f"igdn_{i}", form=gdn_form))
    # float32: the distortion is measured on this output.
    self.add(deconv(3, 5, 2, name="deconv_3", dtype="float32"))


class HyperAnalysisTransform(tf.keras.Sequential):
  """h_a: |y| -> z at 1/64 resolution (N channels)."""

  def __init__(self, N, activation="relu", name="hyper_analysis"):
    super().__init__(name=name)
    # The hyper path is tiny (1/16 and 1/64 resolution) and predicts entropy
    # parameters, so it stays in float32.
    self.add(conv(N, 3, 1, activation=activation, name="conv_0", dtype="float32"))
    self.add(conv(N, 5, 2, activation=activation, name="conv_1", dtype="float32"))
    self.add(conv(N, 5, 2, name="conv_2", dtype="float32"))


class HyperSynthesisTransform(tf.keras.Sequential):
  """h_s: z_hat -> M scale indexes at 1/16 resolution."""

  def __init__(self, N, M, name="hyper_synthesis"):
    super().__init__(name=name)
    self.add(deconv(N, 5, 2, activation="relu", name="deconv_0", dtype="float32"))
    self.add(deconv(N, 5, 2, activation="relu", name="deconv_1", dtype="float32"))
    # No final activation: the output is an index, clipped to [0, 63] by the
    # entropy model (a log-scale, so it is well conditioned for training).
    self.add(conv(M, 3, 1, name="conv_2", dtype="float32"))


@register_model("bmshj2018-factorized")
class FactorizedPriorModel(CompressionModel):
  """Factorized-prior baseline (Ballé 2018, section 2). Args: N, M."""

  stride = 16
  string_names = ("y",)
  shape_names = ("y",)

  def __init__(self, N=128, M=192, gdn_form="simplified", **kwargs):
    super().__init__(**kwargs)
    self.N, self.M = N, M
    self.g_a = AnalysisTransform(N, M, gdn_form)
    self.g_s = SynthesisTransform(N, gdn_form)
    self.y_prior = FactorizedPrior(M, name="y_prior")
    self.build_variables()

  def call(self, x, training=False):
    y = self.g_a(x)
    y_hat, y_bits = self.y_prior(y, training=training)
    x_hat = self.g_s(y_hat)
    return dict(x_hat=x_hat, bits=dict(y=y_bits))

  def entropy_modules(self):
    return [self.y_prior]

  def compress_latents(self, x):
    y = self.g_a(x)
    y_shape = tf.shape(y)[1:3]
    return (self.y_prior.compress(y)[0],), (y_shape,)

  def decompress_latents(self, strings, latent_shapes):
    y_hat = self.y_prior.decompress(strings[0][None], latent_shapes[0])
    return self.g_s(y_hat)


@register_model("bmshj2018-hyperprior")
class ScaleHyperpriorModel(CompressionModel):
  """Scale hyperprior (Ballé 2018). Args: N, M."""

  stride = 64
  string_names = ("y", "z")
  shape_names = ("y", "z")

  def __init__(self, N=128, M=192, gdn_form="simplified", **kwargs):
    super().__init__(**kwargs)
    self.N, self.M = N, M
    self.g_a = AnalysisTransform(N, M, gdn_form)
    self.g_s = SynthesisTransform(N, gdn_form)
    self.h_a = HyperAnalysisTransform(N)
    self.h_s = HyperSynthesisTransform(N, M)
    self.z_prior = FactorizedPrior(N, name="z_prior")
    self.y_conditional = GaussianConditional(name="y_conditional")
    self.build_variables()

  def call(self, x, training=False):
    y = self.g_a(x)
    z = self.h_a(tf.abs(y))
    z_hat, z_bits = self.z_prior(z, training=training)
    scale_indexes = self.h_s(z_hat)
    y_hat, y_bits = self.y_conditional(y, scale_indexes, training=training)
    x_hat = self.g_s(y_hat)
    return dict(x_hat=x_hat, bits=dict(y=y_bits, z=z_bits))

  def entropy_modules(self):
    return [self.z_prior, self.y_conditional]

  def compress_latents(self, x):
    y = self.g_a(x)
    z = self.h_a(tf.abs(y))
    y_shape, z_shape = tf.shape(y)[1:3], tf.shape(z)[1:3]
    z_string, z_hat = self.z_prior.compress_with_reconstruction(z)
    scale_indexes = self.h_s(z_hat)[:, :y_shape[0], :y_shape[1], :]
    y_string = self.y_conditional.compress(y, scale_indexes)
    return (y_string[0], z_string[0]), (y_shape, z_shape)

  def decompress_latents(self, strings, latent_shapes):
    y_string, z_string = strings
    y_shape, z_shape = latent_shapes
    z_hat = self.z_prior.decompress(z_string[None], z_shape)
    scale_indexes = self.h_s(z_hat)[:, :y_shape[0], :y_shape[1], :]
    y_hat = self.y_conditional.decompress(y_string[None], scale_indexes)
    return self.g_s(y_hat)
