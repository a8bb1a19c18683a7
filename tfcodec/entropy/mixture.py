"""Discretized Gaussian mixture (Cheng et al. 2020), likelihood and coding.

    P(y_hat) = sum_k w_k [Phi((y_hat + 1/2 - mu_k) / sigma_k)
                          - Phi((y_hat - 1/2 - mu_k) / sigma_k)]

with K = 3 components per element, weights by a softmax over k, and scales
sigma_k = max(|raw|, 0.11) (the floor uses the LowerBound gradient trick; the
official code had only |.|, which produces NaNs, ARCHITECTURES.md 5.1). There
is no mean offset: y_hat = round(y), since there are three means.

The network emits 9C channels as 9 groups of C in the order
(w_1, mu_1, sigma_1, w_2, mu_2, sigma_2, w_3, mu_3, sigma_3).

Coding (`MixtureStepCoder`, one wavefront step at a time):
* the parameters are snapped to grids in float64 (weights to 2^-12 and
  renormalised, means to 1/64, log-scales to 1/64), so both sides build their
  tables from identical numbers;
* each symbol gets its own 16-bit CDF over the 2S + 1 values centred on the
  rounded mixture mean c, plus one escape bin holding the mass outside;
  every bin gets at least 1/65536 and the counts sum to exactly 2^16;
* values outside [c - S, c + S] code the escape bin and are appended, as
  big-endian int16, after the range-coded payload;
* each step is one `range_encode` string (tfc's per-symbol-CDF coder); the y
  string is: LEB128 varint length of every step's string, the strings, then
  the escaped values.
"""

import tensorflow as tf
from tensorflow_compression.python.ops import gen_ops

from tfcodec.entropy.context import (
    LIKELIHOOD_BOUND, gaussian_likelihood, lower_bound, snap_means,
    standard_normal_cdf)
from tfcodec.io.graph_bitstream import bytes_to_string

NUM_COMPONENTS = 3
SCALE_MIN = 0.11
SCALE_MAX = 256.
PRECISION = 16
# Half-width of the per-symbol support around the mixture's rounded mean.
SUPPORT = 16
WEIGHT_GRID = 2. ** 12
LOG_SCALE_GRID = 64.
ESCAPE_LIMIT = 2 ** 15 - 1


def split_parameters(raw, channels):
  """[..., 9C] -> (logits, means, raw scales), each [..., C, K]."""
  shape = tf.concat([tf.shape(raw)[:-1], [NUM_COMPONENTS, 3, channels]], 0)
  groups = tf.reshape(raw, shape)  # [..., k, (w, mu, sigma), c]
  rank = len(raw.shape)
  perm = list(range(rank - 1)) + [rank + 1, rank, rank - 1]
  groups = tf.transpose(groups, perm)  # [..., c, (w, mu, sigma), k]
  return groups[..., 0, :], groups[..., 1, :], groups[..., 2, :]


def mixture_likelihood(values, raw, channels):
  """Per-element likelihood of `values` [..., C] (float32, training/eval)."""
  logits, means, scales = split_parameters(tf.cast(raw, tf.float32), channels)
  weights = tf.nn.softmax(logits, axis=-1)
  scales = lower_bound(tf.abs(scales), SCALE_MIN)
  components = gaussian_likelihood(values[..., None], means, scales)
  likelihood = tf.reduce_sum(weights * components, axis=-1)
  return lower_bound(likelihood, LIKELIHOOD_BOUND)


def coding_parameters(raw, channels):
  """float64 raw [P, 9C] -> snapped (weights, means, scales) [P, C, K]."""
  logits, means, scales = split_parameters(raw, channels)
  weights = tf.round(tf.nn.softmax(logits, axis=-1) * WEIGHT_GRID)
  weights /= tf.reduce_sum(weights, axis=-1, keepdims=True)
  means = snap_means(means)
  scales = tf.clip_by_value(tf.abs(scales), SCALE_MIN, SCALE_MAX)
  scales = tf.exp(tf.round(tf.math.log(scales) * LOG_SCALE_GRID) /
                  LOG_SCALE_GRID)
  return weights, means, scales


def centres(weights, means, support=SUPPORT):
  """Rounded mixture mean of each element, int32 [P, C]."""
  centre = tf.round(tf.reduce_sum(weights * means, axis=-1))
  limit = ESCAPE_LIMIT - support
  return tf.cast(tf.clip_by_value(centre, -limit, limit), tf.int32)


def mixture_cdf(weights, means, scales, centre, support=SUPPORT):
  """Quantized CDFs, int32 [P, C, 2S + 3]: 2S + 1 values, then the escape.

  Computed in float64; every bin gets at least one count and the remainder
  goes to the most probable bin, so each CDF ends at exactly 2^16.
  """
  num_bins = 2 * support + 2
  offsets = tf.range(num_bins, dtype=tf.float64) - support - .5
  bounds = tf.cast(centre, tf.float64)[..., None] + offsets  # [P, C, 2S+2]
  z = (bounds[..., None] - means[..., None, :]) / scales[..., None, :]
  cumulative = tf.reduce_sum(weights[..., None, :] * standard_normal_cdf(z),
                             axis=-1)  # [P, C, 2S+2]
  inside = cumulative[..., 1:] - cumulative[..., :-1]
  escape = cumulative[..., :1] + (1. - cumulative[..., -1:])
  pmf = tf.maximum(tf.concat([inside, escape], -1), 0.)
  total = 2 ** PRECISION
  counts = 1 + tf.cast(tf.floor(pmf * (total - num_bins)), tf.int32)
  remainder = total - tf.reduce_sum(counts, axis=-1)
  counts += tf.one_hot(tf.argmax(pmf, axis=-1, output_type=tf.int32),
                       num_bins, dtype=tf.int32) * remainder[..., None]
  cdf = tf.cumsum(counts, axis=-1)
  return tf.pad(cdf, [[0, 0]] * (len(cdf.shape) - 1) + [[1, 0]])


def varint_bytes(values):
  """LEB128 bytes of non-negative int32 values (< 2^28), int32 [n]."""
  values = tf.cast(values, tf.int32)
  groups = tf.stack([tf.bitwise.right_shift(values, 7 * i) % 128
                    for i in range(4)], axis=1)
  nbytes = tf.maximum(1, 4 - tf.reduce_sum(tf.cast(
      tf.cumsum(groups[:, ::-1], axis=1) == 0, tf.int32), axis=1))
  index = tf.range(4)[None, :]
  groups += tf.where(index < nbytes[:, None] - 1, 128, 0)
  return tf.boolean_mask(groups, index < nbytes[:, None])


def parse_varints(values, count):
  """(count LEB128 values, bytes used) from uint8-valued int32 `values`."""
  is_last = values < 128
  ends = tf.cast(tf.where(is_last)[:, 0], tf.int32)
  ends = tf.gather(ends, tf.range(count))  # fails cleanly if too few
  used = tf.cond(count > 0, lambda: ends[-1] + 1, lambda: 0)
  head = values[:used]
  group = tf.cumsum(tf.cast(is_last[:used], tf.int32), exclusive=True)
  starts = tf.concat([[0], ends[:-1] + 1], 0)
  shift = 7 * (tf.range(used) - tf.gather(starts, group))
  parsed = tf.math.unsorted_segment_sum(
      tf.bitwise.left_shift(head % 128, shift), group, count)
  return parsed, used


class MixtureStepCoder:
  """Codes one wavefront step's symbols with per-symbol mixture CDFs."""

  def __init__(self, channels, support=SUPPORT):
    self.channels = channels
    self.support = support

  def _tables(self, raw):
    weights, means, scales = coding_parameters(raw, self.channels)
    centre = centres(weights, means, self.support)
    cdf = mixture_cdf(weights, means, scales, centre, self.support)
    return tf.reshape(centre, [-1]), tf.reshape(cdf, (-1, 2 * self.support + 3))

  # -- encoder -----------------------------------------------------------
  def encoder_state(self):
    return (tf.TensorArray(tf.string, size=0, dynamic_size=True),
            tf.TensorArray(tf.int32, size=0, dynamic_size=True,
                           infer_shape=False, element_shape=[None]))

  def encode_step(self, state, raw, y):
    strings, escapes = state
    centre, cdf = self._tables(raw)
    values = tf.clip_by_value(tf.round(tf.reshape(y, [-1])), -ESCAPE_LIMIT,
                              ESCAPE_LIMIT)
    values = tf.cast(values, tf.int32)
    relative = values - centre + self.support
    inside = tf.logical_and(relative >= 0, relative <= 2 * self.support)
    symbols = tf.where(inside, relative, 2 * self.support + 1)
    string = gen_ops.range_encode(tf.cast(symbols, tf.int16), cdf,
                                  precision=PRECISION)
    index = strings.size()
    strings = strings.write(index, string)
    escapes = escapes.write(index, tf.boolean_mask(values, ~inside))
    y_hat = tf.reshape(tf.cast(values, tf.float32), tf.shape(y))
    return (strings, escapes), y_hat

  def encoder_finish(self, state):
    strings, escapes = state
    strings = strings.stack()
    escaped = tf.bitwise.bitwise_and(escapes.concat(), 0xFFFF)
    escape_bytes = tf.reshape(tf.stack(
        [tf.bitwise.right_shift(escaped, 8), escaped % 256], 1), [-1])
    return tf.strings.join([
        bytes_to_string(varint_bytes(tf.strings.length(strings))),
        tf.strings.reduce_join(strings),
        bytes_to_string(escape_bytes)])

  # -- decoder -----------------------------------------------------------
  def decoder_state(self, string, schedule, channels):
    del channels
    values = tf.cast(tf.io.decode_raw(string, tf.uint8), tf.int32)
    lengths, used = parse_varints(values, schedule.num_steps)
    offsets = used + tf.cumsum(lengths, exclusive=True)
    end = used + tf.reduce_sum(lengths)
    tail = values[end:]
    tail = tf.reshape(tail[:tf.size(tail) // 2 * 2], (-1, 2))
    escaped = tail[:, 0] * 256 + tail[:, 1]
    escaped = tf.where(escaped >= 2 ** 15, escaped - 2 ** 16, escaped)
    # A spare zero so that the gather below is valid when nothing escaped.
    escaped = tf.concat([escaped, [0]], 0)
    return (string, offsets, lengths, escaped, tf.constant(0), tf.constant(0))

  def decode_step(self, state, raw):
    string, offsets, lengths, escaped, step, pointer = state
    centre, cdf = self._tables(raw)
    piece = tf.strings.substr(string, offsets[step], lengths[step])
    symbols = tf.cast(gen_ops.range_decode(
        piece, tf.shape(centre), cdf, precision=PRECISION), tf.int32)
    is_escape = symbols >= 2 * self.support + 1
    rank = tf.cumsum(tf.cast(is_escape, tf.int32), exclusive=True)
    from_escape = tf.gather(escaped, tf.where(is_escape, pointer + rank, 0))
    values = tf.where(is_escape, from_escape, centre - self.support + symbols)
    pointer += tf.reduce_sum(tf.cast(is_escape, tf.int32))
    y_hat = tf.reshape(tf.cast(values, tf.float32), (-1, self.channels))
    return (string, offsets, lengths, escaped, step + 1, pointer), y_hat

  def decoder_finish(self, state):
    del state
    return tf.constant(True)
