"""Autoregressive (context-model) coding of y: wavefront schedule and coders.

A 5x5 type-A context model makes position (h, w) of y depend on
(h, w-1), (h, w-2) and rows h-1, h-2 at columns w-2..w+2. With the step number
t = 3h + w every one of those has a strictly smaller t (the binding case is
(h-1, w+2): 3(h-1) + w + 2 = t - 1), so all positions of one wavefront t are
independent of each other and can be processed together:

    t:  0  1  2  3  4  5 ...
        3  4  5  6  7  8 ...
        6  7  8  9 10 11 ...

An H x W latent takes 3(H-1) + W steps instead of H * W (141 instead of 1,536
for a 512 x 768 Kodak image). Each step gathers the 12 causal neighbours of its
positions from a zero-padded buffer of already coded y_hat, multiplies them by
the live taps of the masked kernel, runs the 1x1 entropy-parameter network on
[psi, context] and codes all symbols of the step at once.

The encoder runs exactly this loop too (same ops, same batch shapes, same
order), so the entropy parameters it codes with are the decoder's, bit for bit.
The per-step networks use per-row exact arithmetic (each row quantized on
its own and every sum an exact integer: int8 digit products,
tfcodec.layers.digits.DigitRowDense, for the masked convolution and the
entropy-parameter network; tfcodec.layers.exact for Informer's attention), so
a position's outputs do not depend on the other positions of its step, the
thread count or the kernel library;
their outputs are taken to float64 and snapped to grids (integer scale
indexes, means on a 1/64 grid, mixture weights and log-scales likewise)
before any table is built, and tables are computed in float64.

Two coders plug into the loop:
* `GaussianStepCoder`: mean-scale Gaussian with the 64-entry scale table of
  `GaussianConditional`, one tfc range-coder stream (`entropy_encode_index`,
  handle carried through the loop), so there is no per-step overhead.
* `MixtureStepCoder` (tfcodec.entropy.mixture): a Gaussian mixture per
  symbol, coded as binary decisions with tfc's index coder, likewise one
  stream for all steps.
"""

import tensorflow as tf
import tensorflow_compression as tfc
from tensorflow_compression.python.ops import gen_ops

from tfcodec.entropy import guard
from tfcodec.entropy import models as entropy_models
from tfcodec.layers.masked import causal_taps

# Means (and mixture means) used for coding are snapped to this grid.
MEAN_GRID = 64.
# Keeps snapped means exactly representable in float32 (|m| * 64 < 2^24).
MEAN_LIMIT = 2. ** 15
LIKELIHOOD_BOUND = 1e-9
# What the loop hands to the per-step networks (which compute exactly, per
# row, whatever the input dtype; tfcodec.layers.exact).
NETWORK_DTYPE = tf.float32


def lower_bound(x, bound):
  """max(x, bound) with the gradient let through when it pushes x up (0.4)."""
  return tfc.lower_bound(x, bound, gradient="identity_if_towards")


def standard_normal_cdf(x):
  return .5 * tf.math.erfc(-x * (2 ** -.5))


def gaussian_likelihood(values, means, scales):
  """P(values) of a unit-width bin under N(means, scales), symmetric form.

  Using |v - mean| puts both CDF terms in the lower tail, where erfc keeps
  relative precision.
  """
  distance = tf.abs(values - means)
  upper = standard_normal_cdf((.5 - distance) / scales)
  lower = standard_normal_cdf((-.5 - distance) / scales)
  return upper - lower


def snap_means(means):
  means = tf.clip_by_value(means, -MEAN_LIMIT, MEAN_LIMIT)
  return tf.round(means * MEAN_GRID) / MEAN_GRID


class WavefrontSchedule:
  """Which latent positions each wavefront step codes, as graph tensors."""

  def __init__(self, height, width):
    self.height = tf.convert_to_tensor(height, tf.int32)
    self.width = tf.convert_to_tensor(width, tf.int32)
    self.num_steps = 3 * (self.height - 1) + self.width
    rows = tf.repeat(tf.range(self.height), self.width)
    cols = tf.tile(tf.range(self.width), [self.height])
    step_of = 3 * rows + cols
    # Positions sorted by step; within a step by row (argsort is stable).
    self.order = tf.argsort(step_of, stable=True)
    self.counts = tf.math.bincount(step_of, minlength=self.num_steps,
                                   maxlength=self.num_steps)
    self.starts = tf.cumsum(self.counts, exclusive=True)
    # The y_hat buffer is padded 2 above, 2 left and 2 right with zeros, the
    # same zeros the masked convolution's "same" padding sees in training.
    self.padded_width = self.width + 4
    self.buffer_size = (self.height + 2) * self.padded_width
    taps = causal_taps(5)
    self._tap_rows = tf.constant([i for i, _ in taps], tf.int32)
    self._tap_cols = tf.constant([j for _, j in taps], tf.int32)

  def positions(self, step):
    """Flat positions h * W + w coded at `step`, int32 [P]."""
    return self.order[self.starts[step]:self.starts[step] + self.counts[step]]

  def buffer_index(self, positions):
    """Index of each position in the flat padded buffer, int32 [P]."""
    rows, cols = positions // self.width, positions % self.width
    return (rows + 2) * self.padded_width + cols + 2

  def neighbour_index(self, positions):
    """Buffer indexes of the 12 causal neighbours, int32 [P, 12]."""
    rows, cols = positions // self.width, positions % self.width
    # Tap (i, j) of the 5x5 kernel reads (h + i - 2, w + j - 2), i.e. padded
    # buffer row h + i and column w + j.
    return ((rows[:, None] + self._tap_rows) * self.padded_width
            + cols[:, None] + self._tap_cols)

  def interior(self, buffer, channels):
    """The flat padded buffer back to a [1, H, W, C] latent."""
    grid = tf.reshape(buffer, (self.height + 2, self.padded_width, channels))
    return grid[None, 2:, 2:self.width + 2, :]


def run_wavefront(schedule, channels, step_parameters, code_step, state):
  """Runs the wavefront loop; returns (y_hat [1, H, W, C], final coder state).

  step_parameters(positions, neighbours [P, 12 * C] NETWORK_DTYPE) -> raw
      entropy parameters [P, K] (taken to float64 for the coder).
  code_step(state, positions, raw) -> (state, y_hat of the step [P, C] float32).
  """
  buffer = tf.zeros((schedule.buffer_size, channels), tf.float32)

  def body(step, buffer, state):
    positions = schedule.positions(step)
    neighbours = tf.gather(buffer, schedule.neighbour_index(positions))
    neighbours = tf.reshape(tf.cast(neighbours, NETWORK_DTYPE),
                            (-1, 12 * channels))
    raw = tf.cast(step_parameters(positions, neighbours), tf.float64)
    state, y_hat = code_step(state, positions, raw)
    buffer = tf.tensor_scatter_nd_update(
        buffer, schedule.buffer_index(positions)[:, None], y_hat)
    return step + 1, buffer, state

  _, buffer, state = tf.while_loop(
      lambda step, *_: step < schedule.num_steps, body,
      (tf.constant(0), buffer, state),
      shape_invariants=(tf.TensorShape([]), tf.TensorShape([None, channels]),
                        tf.nest.map_structure(_invariant, state)))
  return schedule.interior(buffer, channels), state


def _invariant(tensor):
  if isinstance(tensor, tf.TensorArray):
    return tf.TensorShape(None)
  return tf.TensorShape(None) if tensor.dtype == tf.variant else tensor.shape


class GaussianStepCoder:
  """Mean-scale Gaussian coding of one wavefront step at a time.

  Raw parameters are [scale indexes | means] (2C channels, the convention of
  `GaussianConditional`). The tables are the frozen `GaussianConditional`'s,
  so a symbol costs exactly what it costs in mbt2018-mean.
  """

  def __init__(self, conditional):
    self.conditional = conditional

  @property
  def _coder(self):
    return self.conditional.coder

  @staticmethod
  def coding_parameters(raw):
    """float64 raw [P, 2C] -> (int32 table indexes, float32 snapped means)."""
    scale_indexes, means = tf.split(raw, 2, axis=-1)
    indexes = tf.cast(entropy_models.coding_scale_indexes(scale_indexes),
                      tf.int32)
    return indexes, tf.cast(snap_means(means), tf.float32)

  # -- encoder -----------------------------------------------------------
  def encoder_state(self):
    return gen_ops.create_range_encoder([], self._coder.cdf)

  def encode_step(self, handle, raw, y):
    indexes, means = self.coding_parameters(raw)
    symbols = tf.cast(tf.round(y - means), tf.int32)
    offsets = tf.gather(self._coder.cdf_offset, indexes)
    handle = gen_ops.entropy_encode_index(handle, indexes, symbols - offsets)
    return handle, tf.cast(symbols, tf.float32) + means

  def encoder_finish(self, handle):
    return gen_ops.entropy_encode_finalize(handle)

  # -- decoder -----------------------------------------------------------
  def decoder_state(self, string, schedule, channels):
    # Padded so a damaged string cannot hang the decoder (entropy.guard); the
    # symbols are not re-encoded here, so a damaged string decodes to garbage.
    num_symbols = schedule.height * schedule.width * channels
    return gen_ops.create_range_decoder(
        guard.padded_strings(string, num_symbols), self._coder.cdf)

  def decode_step(self, handle, raw):
    indexes, means = self.coding_parameters(raw)
    handle, symbols = gen_ops.entropy_decode_index(
        handle, indexes, tf.shape(indexes), tf.int32)
    symbols += tf.gather(self._coder.cdf_offset, indexes)
    return handle, tf.cast(symbols, tf.float32) + means

  def decoder_finish(self, handle):
    return gen_ops.entropy_decode_finalize(handle)
