"""Cui, Wang, Bai, Zhang, Ding, Liu, Cui: "Asymmetric Gained Deep Image
Compression With Continuous Rate Adaptation", CVPR 2021.
https://arxiv.org/abs/2003.02012

mbt2018-mean-vr: one mean-scale hyperprior network for a whole lambda ladder.
Each quality q owns a gain vector and an inverse-gain vector over y's M
channels; everything else is mbt2018-mean's and shared by all qualities:

  x -> g_a -> y -> * gain[q] -> y_q -> h_a -> z, Q, factorized prior (z)
  z_hat -> h_s -> [scale indexes | means] of y_q
  y_q: Q around the mean, Gaussian conditional
  y_q_hat -> * inverse_gain[q] -> g_s -> x_hat

A gain above 1 spreads y over more quantization bins (more bits, less
distortion); the inverse gain undoes it before synthesis, and learning the
two apart ("asymmetric") lets the decoder correct what rounding did at that
rate. Training draws a quality per image, so every step trains several rates
and each image's loss uses its own lambda.

Gains start at sqrt(lambda_q / lambda_reference) (at high rate the MSE-optimal
quantization step goes as 1/sqrt(lambda)), so the reference quality starts
with unit gains and a model warm-started from a single-rate mbt2018-mean at
that quality reproduces it exactly there.

The ladder is a list of lambdas of CompressAI's table, or the registry's
quality 0 below it (by default the registry's ladder of the network serving
the quality: q0-q4 narrow, q5-q7 wide, or `lmbdas`, e.g. train.py
--ladder=1,2,3,4,5,6); a quality keeps its number whatever the ladder, so q3
is lambda 0.0067 in every file.
The container keeps an integer quality, so only the ladder's qualities are
coded; the paper's interpolation between adjacent gain vectors is not offered.
The gains are applied in float32 from exp() taken in float64 (nothing there
is fused or vectorised differently by oneDNN), so coding stays reproducible.
"""

import math

import tensorflow as tf

from tfcodec.models.mbt2018 import MeanScaleHyperpriorModel
from tfcodec.models.registry import (LAMBDAS, LOW_LAMBDAS, lambda_quality,
                                     register_model, variable_rate_lambdas)


def ladder_qualities(lmbdas, metric):
  """The quality number of each lambda of a ladder (CompressAI's 1..8, or
  the low rung 0)."""
  missing = [l for l in lmbdas if lambda_quality(metric, l) is None]
  if missing:
    raise ValueError(f"variable-rate ladders use the {metric} lambdas of the "
                     f"quality table {LAMBDAS[metric]} (and quality 0's "
                     f"{LOW_LAMBDAS[metric]}); {missing} are not in it")
  if list(lmbdas) != sorted(lmbdas) or len(set(lmbdas)) != len(lmbdas):
    raise ValueError(f"a ladder's lambdas must increase: {list(lmbdas)}")
  return tuple(lambda_quality(metric, l) for l in lmbdas)


@register_model("mbt2018-mean-vr")
class GainedMeanScaleHyperpriorModel(MeanScaleHyperpriorModel):
  """mbt2018-mean with per-quality gain units. Args: N, M, lmbdas (the
  ladder, quality 1 first), quality (the one compress/forward use),
  reference_quality (the one whose gains start at 1; default q3, or the
  ladder's lowest rung if it has no q3)."""

  def __init__(self, N=128, M=192, lmbdas=None, quality=None,
               reference_quality=None, metric="mse", lmbda=None, **kwargs):
    if not lmbdas:
      # The registry's ladder of the network serving this quality (create_model
      # passes the quality's lambda), else of the narrowest network.
      serves = quality
      if serves is None and lmbda is not None:
        serves = lambda_quality(metric, lmbda)
      try:
        lmbdas = variable_rate_lambdas(self.model_name, metric, serves)
      except ValueError:  # a quality no network serves: the constructor's
        lmbdas = variable_rate_lambdas(self.model_name, metric)  # own error
    lmbdas = tuple(float(l) for l in lmbdas)
    self._qualities = ladder_qualities(lmbdas, metric)
    if reference_quality is None:
      # q3, or the lowest rung of a ladder without it (e.g. 4,5,6).
      reference_quality = 3 if 3 in self._qualities else self._qualities[0]
    if quality is None:
      # create_model passes the quality's lambda; find its rung.
      quality = (self._qualities[lmbdas.index(float(lmbda))]
                 if lmbda is not None and float(lmbda) in lmbdas
                 else reference_quality)
    if quality not in self._qualities:
      raise ValueError(f"quality {quality} is not on the ladder "
                       f"{self._qualities}")
    if reference_quality not in self._qualities:
      raise ValueError(f"reference quality {reference_quality} is not on the "
                       f"ladder {self._qualities}")
    reference = lmbdas[self._qualities.index(reference_quality)]
    init_gains = [0.5 * math.log(l / reference) for l in lmbdas]
    super().__init__(N=N, M=M, metric=metric,
                     lmbda=lmbdas[self._qualities.index(quality)], **kwargs)
    self.lmbdas = lmbdas
    self.reference_quality = int(reference_quality)
    init = tf.constant(init_gains, tf.float32)[:, None] * tf.ones([M])
    self.log_gains = tf.Variable(init, name="log_gains")
    self.log_inverse_gains = tf.Variable(-init, name="log_inverse_gains")
    # Which rung compress/decompress and forward(training=False) use; a
    # variable, so the traced coding functions follow set_quality().
    self.quality_index = tf.Variable(self._qualities.index(quality),
                                     trainable=False,
                                     dtype=tf.int32, name="quality_index")
    self._variables_ready = True
    MeanScaleHyperpriorModel.build_variables(self)

  @property
  def qualities(self):
    return self._qualities

  @property
  def quality(self):
    return self._qualities[int(self.quality_index.numpy())]

  def set_quality(self, quality):
    """Selects the rung used by forward (training=False) and coding."""
    if int(quality) not in self.qualities:
      raise ValueError(f"{self.model_name} has qualities "
                       f"{self.qualities[0]}..{self.qualities[-1]}, got "
                       f"{quality}")
    index = self._qualities.index(int(quality))
    self.quality_index.assign(index)
    self.lmbda = self.lmbdas[index]
    return self

  def build_variables(self):
    # The base constructor calls this before the gains exist; the real build
    # runs at the end of __init__.
    if getattr(self, "_variables_ready", False):
      super().build_variables()

  def gains(self, index):
    """(gain, inverse gain), each [B, 1, 1, M] float32, for rung indexes [B]."""
    gain = tf.exp(tf.cast(tf.gather(self.log_gains, index), tf.float64))
    inverse = tf.exp(tf.cast(tf.gather(self.log_inverse_gains, index),
                             tf.float64))
    return (tf.cast(gain, tf.float32)[:, None, None, :],
            tf.cast(inverse, tf.float32)[:, None, None, :])

  def _rung_indexes(self, batch, training):
    if training:
      # Every image of a training batch draws its own rate.
      return tf.random.uniform([batch], 0, len(self.lmbdas), dtype=tf.int32)
    return tf.fill([batch], self.quality_index)

  def call(self, x, training=False):
    index = self._rung_indexes(tf.shape(x)[0], training)
    gain, inverse_gain = self.gains(index)
    y = tf.cast(self.g_a(x), tf.float32) * gain
    z = self.h_a(y)
    z_hat, z_bits = self.z_prior(z, training=training)
    scale_indexes, means = self.entropy_parameters(z_hat)
    y_hat, y_bits = self.y_conditional(y, scale_indexes, means,
                                       training=training)
    x_hat = self.g_s(
        self.synthesis_input(y, y_hat, means, training) * inverse_gain)
    lmbda = tf.gather(tf.constant(self.lmbdas, tf.float32), index)
    return dict(x_hat=x_hat, bits=dict(y=y_bits, z=z_bits), lmbda=lmbda)

  def analysis(self, x):
    gain, _ = self.gains(self._rung_indexes(1, False))
    return tf.cast(self.g_a(x), tf.float32) * gain

  def synthesis(self, y_hat, training=False):
    _, inverse_gain = self.gains(self._rung_indexes(1, False))
    return self.g_s(y_hat * inverse_gain, training=training)

  def coding_lambda(self):
    # Read at run time: the traced coding functions follow set_quality().
    return tf.gather(tf.constant(self.lmbdas, tf.float32), self.quality_index)
