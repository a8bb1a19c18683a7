"""Discretized Gaussian mixture (Cheng et al. 2020), likelihood and coding.

    P(y_hat) = sum_k w_k [Phi((y_hat + 1/2 - mu_k) / sigma_k)
                          - Phi((y_hat - 1/2 - mu_k) / sigma_k)]

with K = 3 components per element, weights by a softmax over k, and scales
sigma_k = max(|raw|, 0.11) (the floor uses the LowerBound gradient trick; the
official code had only |.|, which produces NaNs, ARCHITECTURES.md 5.1). There
is no mean offset: y_hat = round(y), since there are three means.

The network emits 9C channels as 9 groups of C in the order
(w_1, mu_1, sigma_1, w_2, mu_2, sigma_2, w_3, mu_3, sigma_3).

Coding (`MixtureStepCoder`, one wavefront step at a time, all steps in one
range-coded stream):
* the parameters are snapped to grids in float64 (weights to 2^-12 and
  renormalised, means to 1/64, log-scales to 1/64), so both sides build their
  probabilities from identical numbers;
* each symbol has 2S + 2 = 32 bins: the 2S + 1 values centred on the rounded
  mixture mean c, and an escape bin holding the mass outside. Each bin's mass
  times 2^30 is floored and raised by one (int64), so no bin is impossible;
* a symbol is coded as the 5 decisions of a binary search over its bins, each
  a two-symbol 16-bit CDF [0, q, 2^16] with q = round(2^16 P(lower half)) in
  [1, 2^16 - 1], computed from the integer counts (exact on both sides). tfc's
  stateful index coder holds one table per q, so every step codes into the
  same stream: a 32-bin per-symbol CDF cannot be a fixed table, and coding
  each step into its own `range_encode` string cost 2 bits of flush and a
  varint length per step, 1,430 bits on a 768x512 image (2.6% of a 0.07 bpp
  y string, cheng2020-gmm on kodim23), against about 60 bits here;
* values outside [c - S, c + S] code the escape bin and are stored as
  big-endian int16. The y string is: LEB128 varint count of escaped values,
  the escaped values in coding order, then the range-coded stream.
"""

import tensorflow as tf
from tensorflow_compression.python.ops import gen_ops

from tfcodec.entropy.context import (
    LIKELIHOOD_BOUND, gaussian_likelihood, lower_bound, snap_means,
    standard_normal_cdf)
from tfcodec.entropy.guard import DAMAGED
from tfcodec.io.graph_bitstream import bytes_to_string

NUM_COMPONENTS = 3
SCALE_MIN = 0.11
SCALE_MAX = 256.
PRECISION = 16
# Half-width of the per-symbol support around the mixture's rounded mean:
# 2S + 1 values and the escape make 32 bins, five binary decisions each.
SUPPORT = 15
WEIGHT_GRID = 2. ** 12
LOG_SCALE_GRID = 64.
ESCAPE_LIMIT = 2 ** 15 - 1
# Bin masses are integers: floor(2^30 P(bin)) + 1.
COUNT_BITS = 30


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


def bin_counts(weights, means, scales, centre, support=SUPPORT):
  """Integer bin masses, int64 [P, C, 2S + 2]: 2S + 1 values, then the escape.

  Each is floor(2^30 P(bin)) + 1 from the mixture in float64: proportional to
  the mixture to 2^-30 and never zero. Only ratios of sums of counts are
  coded, so they need not add up to a power of two.
  """
  num_bins = 2 * support + 2
  offsets = tf.range(num_bins, dtype=tf.float64) - support - .5
  bounds = tf.cast(centre, tf.float64)[..., None] + offsets  # [P, C, 2S+2]
  z = (bounds[..., None] - means[..., None, :]) / scales[..., None, :]
  cumulative = tf.reduce_sum(weights[..., None, :] * standard_normal_cdf(z),
                             axis=-1)  # [P, C, 2S+2]
  inside = cumulative[..., 1:] - cumulative[..., :-1]
  escape = cumulative[..., :1] + (1. - cumulative[..., -1:])
  pmf = tf.clip_by_value(tf.concat([inside, escape], -1), 0., 1.)
  return 1 + tf.cast(tf.floor(pmf * 2. ** COUNT_BITS), tf.int64)


def _binary_lookup():
  """tfc lookup rows [precision, 0, q, 2^16] for q = 1 ... 2^16 - 1: row q - 1
  codes 0 with probability q / 2^16 and 1 with the rest."""
  q = tf.range(1, 2 ** PRECISION, dtype=tf.int32)
  return tf.stack([tf.fill(tf.shape(q), PRECISION), tf.zeros_like(q), q,
                   tf.fill(tf.shape(q), 2 ** PRECISION)], axis=1)


def binary_search_levels(num_bins):
  return max(1, (num_bins - 1).bit_length())


def search_decision(cumulative, low, high):
  """Lookup row of the decision 'bin >= mid' for bins [low, high): (active,
  mid, row). `cumulative` int64 [n, bins + 1]; low, high int32 [n]."""
  active = high - low > 1
  mid = (low + high) // 2
  at = lambda index: tf.gather(cumulative, index[:, None], batch_dims=1)[:, 0]  # noqa: E731
  lower = at(mid) - at(low)
  total = at(high) - at(low)
  q = (lower * 2 ** PRECISION + total // 2) // total
  q = tf.clip_by_value(q, 1, 2 ** PRECISION - 1)
  return active, mid, tf.cast(q, tf.int32) - 1


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
  """Codes one wavefront step's symbols as binary searches over their bins,
  every step into one range coder (the module docstring)."""

  def __init__(self, channels, support=SUPPORT):
    self.channels = channels
    self.support = support
    self.num_bins = 2 * support + 2
    self.escape_bin = 2 * support + 1
    self.levels = binary_search_levels(self.num_bins)

  def _tables(self, raw):
    """-> (centre int32 [n], cumulative bin counts int64 [n, bins + 1])."""
    weights, means, scales = coding_parameters(raw, self.channels)
    centre = centres(weights, means, self.support)
    counts = tf.reshape(bin_counts(weights, means, scales, centre,
                                   self.support), (-1, self.num_bins))
    cumulative = tf.pad(tf.cumsum(counts, axis=-1), [[0, 0], [1, 0]])
    return tf.reshape(centre, [-1]), cumulative

  # -- encoder -----------------------------------------------------------
  def encoder_state(self):
    return (gen_ops.create_range_encoder([], _binary_lookup()),
            tf.TensorArray(tf.int32, size=0, dynamic_size=True,
                           infer_shape=False, element_shape=[None]))

  def encode_step(self, state, raw, y):
    handle, escapes = state
    centre, cumulative = self._tables(raw)
    values = tf.clip_by_value(tf.round(tf.reshape(y, [-1])), -ESCAPE_LIMIT,
                              ESCAPE_LIMIT)
    values = tf.cast(values, tf.int32)
    relative = values - centre + self.support
    inside = tf.logical_and(relative >= 0, relative <= 2 * self.support)
    symbols = tf.where(inside, relative, self.escape_bin)
    low = tf.zeros_like(symbols)
    high = tf.fill(tf.shape(symbols), self.num_bins)
    for _ in range(self.levels):
      active, mid, row = search_decision(cumulative, low, high)
      upper = symbols >= mid
      handle = gen_ops.entropy_encode_index(
          handle, tf.boolean_mask(row, active),
          tf.cast(tf.boolean_mask(upper, active), tf.int32))
      low = tf.where(active & upper, mid, low)
      high = tf.where(active & ~upper, mid, high)
    escapes = escapes.write(escapes.size(), tf.boolean_mask(values, ~inside))
    y_hat = tf.reshape(tf.cast(values, tf.float32), tf.shape(y))
    return (handle, escapes), y_hat

  def encoder_finish(self, state):
    handle, escapes = state
    escaped = escapes.concat()
    count = varint_bytes(tf.size(escaped)[None])
    escaped = tf.bitwise.bitwise_and(escaped, 0xFFFF)
    escape_bytes = tf.reshape(tf.stack(
        [tf.bitwise.right_shift(escaped, 8), escaped % 256], 1), [-1])
    return tf.strings.join([
        bytes_to_string(tf.concat([count, escape_bytes], 0)),
        gen_ops.entropy_encode_finalize(handle)])

  # -- decoder -----------------------------------------------------------
  def decoder_state(self, string, schedule, channels):
    del schedule, channels
    values = tf.cast(tf.io.decode_raw(string, tf.uint8), tf.int32)
    count, used = parse_varints(values, tf.constant(1))
    count = count[0]
    end = used + 2 * count
    fits = tf.debugging.assert_less_equal(
        end, tf.size(values), message=DAMAGED + " (escape values missing)")
    with tf.control_dependencies([fits]):
      pairs = tf.reshape(values[used:end], (-1, 2))
    escaped = pairs[:, 0] * 256 + pairs[:, 1]
    escaped = tf.where(escaped >= 2 ** 15, escaped - 2 ** 16, escaped)
    # A spare zero: the index every non-escape (and any excess escape of a
    # damaged string) gathers from.
    escaped = tf.concat([escaped, [0]], 0)
    # Past its end tfc's decoder reads zeros; with no escape code in the
    # binary tables each decision costs bounded time, so no guard padding.
    handle = gen_ops.create_range_decoder(
        tf.strings.substr(string, end, -1), _binary_lookup())
    return (handle, escaped, count, tf.constant(0))

  def decode_step(self, state, raw):
    handle, escaped, count, pointer = state
    centre, cumulative = self._tables(raw)
    low = tf.zeros_like(centre)
    high = tf.fill(tf.shape(centre), self.num_bins)
    for _ in range(self.levels):
      active, mid, row = search_decision(cumulative, low, high)
      rows = tf.boolean_mask(row, active)
      handle, bits = gen_ops.entropy_decode_index(handle, rows, tf.shape(rows),
                                                  tf.int32)
      upper = tf.scatter_nd(tf.where(active), bits,
                            tf.shape(centre, out_type=tf.int64)) > 0
      low = tf.where(active & upper, mid, low)
      high = tf.where(active & ~upper, mid, high)
    is_escape = low >= self.escape_bin
    rank = tf.cumsum(tf.cast(is_escape, tf.int32), exclusive=True)
    index = tf.where(is_escape, tf.minimum(pointer + rank, count), count)
    values = tf.where(is_escape, tf.gather(escaped, index),
                      centre - self.support + low)
    pointer += tf.reduce_sum(tf.cast(is_escape, tf.int32))
    y_hat = tf.reshape(tf.cast(values, tf.float32), (-1, self.channels))
    return (handle, escaped, count, pointer), y_hat

  def decoder_finish(self, state):
    handle, _, count, pointer = state
    used_all = tf.debugging.assert_equal(
        pointer, count, message=DAMAGED + " (escape count does not match)")
    with tf.control_dependencies([used_all]):
      return gen_ops.entropy_decode_finalize(handle)
