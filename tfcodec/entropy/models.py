"""Factorized prior and Gaussian conditional built on tfc's entropy models."""

import contextlib
import math

import tensorflow as tf
import tensorflow_compression as tfc
from tensorflow_compression.python.distributions import helpers as tfc_helpers

from tfcodec.entropy import guard

SCALE_MIN = 0.11
SCALE_MAX = 256.
NUM_SCALES = 64
# 16-bit range-coder tables keep the real file within ~1% of the estimated
# bits (tfc's default 12 bits costs several percent at low rates).
RANGE_CODER_PRECISION = 16
# Probability mass left to tfc's Elias-gamma escape code (out-of-table values).
TAIL_MASS = 2 ** -12

_LOG_MIN = math.log(SCALE_MIN)
_LOG_STEP = (math.log(SCALE_MAX) - math.log(SCALE_MIN)) / (NUM_SCALES - 1)


@contextlib.contextmanager
def traced_tail_estimation():
  """Runs tfc's tail-quantile search (an Adam loop, `estimate_tails`) as one
  traced function instead of op by op in eager mode.

  tfc's own source suggests it ("Consider wrapping in tf.function"). Building a
  factorized prior's tables took 21-47 s per tiny model on 2 cores, and 2-4 s
  traced, with bit-identical tables (bmshj2018-factorized, mbt2018-mean,
  tcm-s, informer). tfc looks the function up in its module at call time, so
  it is swapped there for the duration of a freeze.
  """
  original = tfc_helpers.estimate_tails
  tfc_helpers.estimate_tails = tf.function(original, autograph=False)
  try:
    yield
  finally:
    tfc_helpers.estimate_tails = original


def coding_scale_indexes(scale_indexes):
  """The table entries coded for predicted (fractional) scale indexes: the
  nearest entry, clipped to the table (float, integer-valued).

  Training sees the continuous index. tfc's coders truncate it, which lowers
  every coded scale by half a table step (6%) on average; a Gaussian coded
  with too small a scale costs more than with too large a one, and rounding
  halves the worst mismatch. Measured on Kodak (format version 3): y costs
  0.3-0.4% fewer bits than truncated with the mbt2018-mean-vr weights
  (within 0.15% of the continuous index), whole files 0.1% fewer with the
  mbt2018-mean q1/q3 weights."""
  return tf.floor(tf.clip_by_value(scale_indexes + 0.5, 0., NUM_SCALES - 1.))


def scale_from_index(index):
  """Scale for a (possibly fractional) index into the log-spaced table."""
  return tf.math.exp(_LOG_MIN + _LOG_STEP * tf.cast(index, tf.float32))


class FactorizedPrior(tf.Module):
  """A learned factorized density per channel, for y or z.

  The prior's parameters are tracked here; entropy models are created on
  demand: a stateless one for training/estimation, and, after `freeze()`, a
  compression one whose integer CDF tables are variables.
  """

  def __init__(self, channels, offset_heuristic=True, init_scale=10.,
               name="factorized_prior"):
    """`offset_heuristic=False` rounds to plain integers (tfc's ms2020 does).

    With the heuristic, tfc rounds around an offset that it finds by an
    iterative search over the prior each time a quantizer is built: cheap
    once, when the tables are frozen, but not in every training step of a
    model that feeds rounded latents onward (TCM's z).

    `init_scale`: the initial spread of the density (tfc's default, 10).
    Adam moves each of the density's parameters by at most ~lr per step, so
    narrowing it tenfold takes thousands of steps at lr 1e-4: a latent that
    starts near 0 should start with a narrow prior.
    """
    super().__init__(name=name)
    self.channels = channels
    self.offset_heuristic = offset_heuristic
    with self.name_scope:
      self.prior = tfc.NoisyDeepFactorized(batch_shape=(channels,),
                                           init_scale=init_scale)
    self._coder = None

  def _model(self, compression):
    return tfc.ContinuousBatchedEntropyModel(
        self.prior, coding_rank=3, compression=compression,
        offset_heuristic=self.offset_heuristic, tail_mass=TAIL_MASS, range_coder_precision=RANGE_CODER_PRECISION,
        bottleneck_dtype=tf.float32)

  def __call__(self, latent, training):
    """Returns (noisy or quantized latent, bits per batch element)."""
    latent = tf.cast(latent, tf.float32)
    if training or self._coder is None:
      return self._model(compression=False)(latent, training=training)
    # Frozen: round around the coder's stored offsets. tfc would recompute
    # them from the prior, and the recomputed ones can differ from the stored
    # tables by an ulp (oneDNN on or off), which flips the odd rounding: the
    # forward pass would then not be what the decoder reconstructs.
    latent_hat = self._round(latent)
    return latent_hat, self._bits(latent_hat, axis=(1, 2, 3))

  def quantize(self, latent):
    return self._model(compression=False).quantize(tf.cast(latent, tf.float32))

  def freeze(self, tables=None):
    """Builds the range-coding tables from the current weights.

    `tables` (from `coding_tables()`) restores tables computed earlier
    instead: building them runs a float optimisation (tfc's tail estimate)
    that is not guaranteed to give bit-identical tables on every machine,
    while restored tables are exact.
    """
    if tables is None:
      with traced_tail_estimation():
        self._coder = self._model(compression=True)
      return
    self._coder = tfc.ContinuousBatchedEntropyModel(
        prior_shape=(self.channels,), coding_rank=3, compression=True,
        tail_mass=TAIL_MASS,
        range_coder_precision=RANGE_CODER_PRECISION,
        bottleneck_dtype=tf.float32,
        cdf=tf.constant(tables["cdf"], tf.int32),
        cdf_offset=tf.constant(tables["cdf_offset"], tf.int32),
        quantization_offset=tf.constant(tables["quantization_offset"],
                                        tf.float32))

  def coding_tables(self):
    """{name: numpy array} of the frozen range-coding tables."""
    offset = self.coder.quantization_offset
    if offset is None:  # tfc drops an all-zero offset; store it explicitly.
      offset = tf.zeros([self.channels], tf.float32)
    return dict(cdf=self.coder.cdf.numpy(),
                cdf_offset=self.coder.cdf_offset.numpy(),
                quantization_offset=tf.convert_to_tensor(offset).numpy())

  @property
  def coder(self):
    if self._coder is None:
      raise RuntimeError("Entropy model not frozen: call freeze() before coding.")
    return self._coder

  def compress(self, latent):
    latent = tf.cast(latent, tf.float32)
    symbols = tf.round(latent - self._offset()) - tf.cast(
        self.coder.cdf_offset, tf.float32)
    with tf.control_dependencies([guard.assert_encodable(symbols)]):
      return self.coder.compress(latent)

  def compress_with_reconstruction(self, latent):
    """Encoder side of a hyperprior: (strings, latent as the decoder gets it).

    The reconstruction is decoded from the strings themselves, so whatever
    the encoder conditions y on is bit for bit what the decoder will have.
    """
    strings = self.compress(latent)
    return strings, self.decompress(strings, tf.shape(latent)[1:3])

  def round_for_coding(self, latent):
    """The latent as the coder will reconstruct it (rounded around the
    frozen quantization offset), with a straight-through gradient."""
    latent = tf.cast(latent, tf.float32)
    return latent + tf.stop_gradient(self._round(latent) - latent)

  def _round(self, latent):
    # Exactly the coder's values; the straight-through sum above can be an
    # ulp away from them.
    return tf.round(latent - self._offset()) + self._offset()

  def bits(self, values):
    """Total -log2 probability of `values` (a quantized latent: its bins'
    mass; a noisy one: the density the training loss uses)."""
    return self._bits(tf.cast(values, tf.float32))

  def _bits(self, values, axis=None):
    return -tf.reduce_sum(self.prior.log_prob(values), axis=axis) / math.log(2.)

  def _offset(self):
    offset = self.coder.quantization_offset
    return 0. if offset is None else offset

  def decompress(self, strings, spatial_shape):
    """tfc's decompress, in bounded time and verified (tfcodec.entropy.guard)."""
    coder = self.coder
    strings = tf.convert_to_tensor(strings, tf.string)
    spatial_shape = tf.convert_to_tensor(spatial_shape, tf.int32)
    decode_shape = tf.concat([spatial_shape, [self.channels]], 0)
    symbols = guard.decode_channel(strings, decode_shape, coder.cdf)
    symbols = tf.reshape(symbols + coder.cdf_offset,
                         tf.concat([tf.shape(strings), decode_shape], 0))
    return tf.cast(symbols, tf.float32) + self._offset()


class GaussianConditional(tf.Module):
  """Mean-scale Gaussian conditional with a fixed, data-independent table."""

  def __init__(self, name="gaussian_conditional"):
    super().__init__(name=name)
    self._estimator = self._model(compression=False)
    self._coder = None

  @staticmethod
  def _model(compression):
    return tfc.LocationScaleIndexedEntropyModel(
        tfc.NoisyNormal, NUM_SCALES, scale_from_index, coding_rank=3,
        compression=compression, tail_mass=TAIL_MASS,
        range_coder_precision=RANGE_CODER_PRECISION,
        bottleneck_dtype=tf.float32)

  def __call__(self, latent, scale_indexes, means=None, training=True):
    latent = tf.cast(latent, tf.float32)
    scale_indexes = tf.cast(scale_indexes, tf.float32)
    if not training:
      # Estimate with the table entry the range coder will use, so estimated
      # bits track file bits.
      scale_indexes = coding_scale_indexes(scale_indexes)
    if means is not None:
      means = tf.cast(means, tf.float32)
    return self._estimator(latent, scale_indexes, loc=means, training=training)

  def quantize(self, latent, means=None):
    latent = tf.cast(latent, tf.float32)
    if means is None:
      return self._estimator.quantize(latent)
    return self._estimator.quantize(latent, loc=tf.cast(means, tf.float32))

  def bits(self, values, scale_indexes, means=None):
    """Total -log2 density of noisy `values` under the Gaussians of these
    scale indexes and means, as the training loss counts them."""
    scales = scale_from_index(
        tf.clip_by_value(tf.cast(scale_indexes, tf.float32), 0.,
                         NUM_SCALES - 1.))
    means = 0. if means is None else tf.cast(means, tf.float32)
    log_probs = tfc.NoisyNormal(loc=means, scale=scales).log_prob(
        tf.cast(values, tf.float32))
    return -tf.reduce_sum(log_probs) / math.log(2.)

  def freeze(self, tables=None):
    # The tables depend only on the scale table, never on trained weights,
    # and are computed in closed form (fast), so `tables` is not needed.
    del tables
    self._coder = self._model(compression=True)

  def coding_tables(self):
    return {}

  @property
  def coder(self):
    if self._coder is None:
      raise RuntimeError("Entropy model not frozen: call freeze() before coding.")
    return self._coder

  def compress(self, latent, scale_indexes, means=None):
    latent = tf.cast(latent, tf.float32)
    centred = latent if means is None else latent - means
    with tf.control_dependencies([guard.assert_encodable(tf.round(centred))]):
      return self.coder.compress(
          latent, coding_scale_indexes(tf.cast(scale_indexes, tf.float32)),
          loc=means)

  def decompress(self, strings, scale_indexes, means=None):
    """tfc's decompress, in bounded time and verified (tfcodec.entropy.guard)."""
    coder = self.coder
    # The table lookup tfc's own decompress does (clip, then integer index),
    # on the entries compress coded with.
    flat_indexes = coder._flatten_indexes(  # pylint: disable=protected-access
        coder._normalize_indexes(  # pylint: disable=protected-access
            coding_scale_indexes(tf.cast(scale_indexes, tf.float32))))
    decode_shape = tf.shape(flat_indexes)[-3:]
    symbols = guard.decode_index(strings, flat_indexes, decode_shape, coder.cdf)
    values = tf.cast(symbols + tf.gather(coder.cdf_offset, flat_indexes),
                     tf.float32)
    return values if means is None else values + means
