"""The .tfci container (docs/FORMAT.md) built and parsed with TensorFlow ops.

`tfcodec.io.bitstream` is the reference implementation in Python. This module
produces the same bytes inside a graph, so that an exported SavedModel can
emit and read whole `.tfci` files with nothing but TensorFlow and
tensorflow-compression: the header, the u32-prefixed strings and the CRC32 are
all ops (version 7 only: an exported model codes one untiled image at a
time). tests/test_export.py checks byte equality against `Bitstream`.

CRC32 is zlib's (reflected polynomial 0xEDB88320, initial value and final XOR
0xFFFFFFFF). A byte-at-a-time `tf.while_loop` costs one loop iteration per byte
(about 0.2 s for a 20 KB file on this project's CPUs), so `crc32` instead
splits the data into fixed-size chunks, runs the table-driven update over all
chunks at once, and combines the chunk results using the linearity of CRC
over GF(2): with a zero initial register,

  reg(A + B) = shift(reg(A), len(B)) XOR reg(B),

where shift(r, k) means "feed k zero bytes", a fixed linear map of the 32
register bits for each k. Chunk i is shifted past the chunks after it, one
precomputed 4 x 256 lookup table per set bit of that count, and all chunks
are XORed. Leading zero bytes do not change a zero-initialised register, which
lets the data be left-padded to whole chunks; zlib's 0xFFFFFFFF initial value
comes from a 4-byte prefix whose zero-initialised register is 0xFFFFFFFF.

Both loops keep their loop variables' shapes fixed. (A first version merged
chunks pairwise in a tree, halving a loop variable each iteration; with
grappler's constant folding on, TF 2.14 ran it into a reshape error.)
"""

import numpy as np
import tensorflow as tf

from tfcodec.io.bitstream import (MAGIC, MAX_DIMENSION, MAX_ITEMS, METRICS,
                                  VERSION, model_field)

POLYNOMIAL = 0xEDB88320
MASK32 = 0xFFFFFFFF
# Bytes per chunk: CHUNK table steps run over all chunks at once.
CHUNK = 16
# Shift tables for up to 2**MAX_LEVELS chunks (4 GiB): beyond any real file.
MAX_LEVELS = 28


# -- CRC32 tables, built once with numpy ---------------------------------------

def _byte_table():
  """The classic 256-entry table: register update for one byte, zero register."""
  table = np.arange(256, dtype=np.int64)
  for _ in range(8):
    table = np.where(table & 1, POLYNOMIAL ^ (table >> 1), table >> 1)
  return table


_TABLE = _byte_table()


def _feed_zero_byte(register):
  return int(_TABLE[register & 0xFF]) ^ (register >> 8)


def _apply(columns, register):
  """A linear map (its images of the 32 unit registers) applied to a register."""
  out = 0
  for bit in range(32):
    if register >> bit & 1:
      out ^= columns[bit]
  return out


def _shift_columns_per_level():
  """Per level l: images of the 32 unit registers after CHUNK*2**l zero bytes."""
  columns = []
  for bit in range(32):
    register = 1 << bit
    for _ in range(CHUNK):
      register = _feed_zero_byte(register)
    columns.append(register)
  levels = [columns]
  for _ in range(MAX_LEVELS - 1):
    previous = levels[-1]
    levels.append([_apply(previous, _apply(previous, 1 << bit))
                   for bit in range(32)])
  return levels


def _byte_tables(columns):
  """The map as 4 x 256 tables: one lookup per register byte, XORed."""
  values = np.arange(256, dtype=np.int64)
  bits = (values[:, None] >> np.arange(8)) & 1
  tables = []
  for byte in range(4):
    cols = np.asarray(columns[8 * byte:8 * byte + 8], np.int64)
    tables.append(np.bitwise_xor.reduce(bits * cols, axis=1))
  return np.stack(tables)


_SHIFT_TABLES = np.stack([_byte_tables(c) for c in _shift_columns_per_level()])


def _register_of(data):
  """Zero-initialised register after feeding `data` (Python ints, no final XOR)."""
  register = 0
  for byte in data:
    register = int(_TABLE[(register ^ byte) & 0xFF]) ^ (register >> 8)
  return register


def _init_prefix():
  """4 bytes whose zero-initialised register is 0xFFFFFFFF (zlib's start).

  Feeding 4 bytes into a zero register is a bijective linear map of their 32
  bits, so the prefix is found by Gaussian elimination over GF(2).
  """
  images = [_register_of((1 << bit).to_bytes(4, "little")) for bit in range(32)]
  # Rows: [image | unit vector marking which inputs were combined].
  rows = [(images[bit], 1 << bit) for bit in range(32)]
  solved = []
  for pivot in range(32):
    index = next(i for i, (image, _) in enumerate(rows) if image >> pivot & 1)
    row = rows.pop(index)
    rows = [(image ^ row[0], combo ^ row[1]) if image >> pivot & 1
            else (image, combo) for image, combo in rows]
    solved = [(image ^ row[0], combo ^ row[1]) if image >> pivot & 1
              else (image, combo) for image, combo in solved]
    solved.append(row)
  # Each solved row's image is now the single bit of its pivot, so the
  # all-ones register is the XOR of every row's combination of inputs.
  combo = 0
  for _, row_combo in solved:
    combo ^= row_combo
  prefix = combo.to_bytes(4, "little")
  assert _register_of(prefix) == MASK32
  return prefix


_PREFIX = np.frombuffer(_init_prefix(), np.uint8).astype(np.int64)


# -- CRC32 in the graph -----------------------------------------------------------

def _table_step(table, register, byte):
  index = tf.bitwise.bitwise_and(tf.bitwise.bitwise_xor(register, byte), 0xFF)
  return tf.bitwise.bitwise_xor(tf.gather(table, index),
                                tf.bitwise.right_shift(register, 8))


def _shift(tables, register):
  """Feeds a level's worth of zero bytes to each register (4 lookups)."""
  out = tf.zeros_like(register)
  for byte in range(4):
    index = tf.bitwise.bitwise_and(
        tf.bitwise.right_shift(register, 8 * byte), 0xFF)
    out = tf.bitwise.bitwise_xor(out, tf.gather(tables[byte], index))
  return out


def _xor_reduce(registers):
  """XOR of all registers (TF has no XOR reduction: sum each bit mod 2)."""
  positions = tf.range(32, dtype=tf.int64)
  bits = tf.bitwise.bitwise_and(
      tf.bitwise.right_shift(registers[:, None], positions), 1)
  parity = tf.bitwise.bitwise_and(tf.reduce_sum(bits, axis=0), 1)
  return tf.reduce_sum(tf.bitwise.left_shift(parity, positions))


def crc32_of_bytes(values):
  """zlib.crc32 of a 1-D tensor of byte values (any integer dtype), as int64.

  Two short loops: CHUNK table steps, each applied to all chunks at once,
  then one pass per bit of the chunk count (11 passes for 20 KB) that
  shifts each chunk's register past the chunks after it. Finally all
  registers are XORed together.
  """
  values = tf.cast(tf.reshape(values, [-1]), tf.int64)
  values = tf.concat([tf.constant(_PREFIX), values], 0)
  size = tf.size(values, out_type=tf.int64)
  padding = (CHUNK - size % CHUNK) % CHUNK
  values = tf.concat([tf.zeros([padding], tf.int64), values], 0)
  rows = tf.reshape(values, [-1, CHUNK])

  table = tf.constant(_TABLE)

  def feed_column(column, registers):
    return column + 1, _table_step(table, registers,
                                   tf.gather(rows, column, axis=1))

  _, registers = tf.while_loop(
      lambda column, _: column < CHUNK, feed_column,
      [tf.constant(0), tf.zeros([tf.shape(rows)[0]], tf.int64)])

  # Chunk k is followed by (chunks - 1 - k) chunks: shift it that far, one
  # level per bit of that count. The tables are stored as uint32 (half the
  # graph size of int64); more than 2**MAX_LEVELS chunks would make the
  # gather fail rather than give a wrong CRC.
  shift_tables = tf.cast(tf.constant(_SHIFT_TABLES.astype(np.uint32)), tf.int64)
  chunks = tf.size(registers, out_type=tf.int64)
  following = chunks - 1 - tf.range(chunks, dtype=tf.int64)
  levels = tf.reduce_sum(tf.cast(tf.bitwise.right_shift(
      chunks - 1, tf.range(63, dtype=tf.int64)) > 0, tf.int64))

  def shift_level(level, registers):
    selected = tf.bitwise.bitwise_and(
        tf.bitwise.right_shift(following, level), 1) > 0
    shifted = _shift(tf.gather(shift_tables, level), registers)
    return level + 1, tf.where(selected, shifted, registers)

  _, registers = tf.while_loop(lambda level, _: level < levels, shift_level,
                               [tf.constant(0, tf.int64), registers])
  return tf.bitwise.bitwise_xor(_xor_reduce(registers), MASK32)


def crc32(data):
  """zlib.crc32 of a scalar string tensor, as an int64 scalar."""
  return crc32_of_bytes(tf.io.decode_raw(data, tf.uint8))


# -- bytes <-> strings --------------------------------------------------------

def bytes_to_string(values):
  """A scalar string holding the given byte values (0..255) in order."""
  alphabet = tf.constant([bytes([i]) for i in range(256)])
  return tf.strings.reduce_join(tf.gather(alphabet, tf.cast(values, tf.int32)))


def u32_bytes(value):
  """Big-endian bytes of an unsigned 32-bit value, as an int64 [4] tensor."""
  return _big_endian(value, 4)


def u16_bytes(value):
  """Big-endian bytes of an unsigned 16-bit value, as an int64 [2] tensor."""
  return _big_endian(value, 2)


def _big_endian(value, size):
  value = tf.cast(value, tf.int64)
  return tf.stack([tf.bitwise.bitwise_and(tf.bitwise.right_shift(value, s), 0xFF)
                   for s in range(8 * (size - 1), -1, -8)])


def _u8(value):
  return tf.constant([value], tf.int64)


# -- encoding -------------------------------------------------------------------

def encode(model, quality, metric, height, width, strings, weights_id=0):
  """A whole version 7 .tfci file as a scalar string tensor, byte-identical
  to `Bitstream(model, quality, metric, height, width, strings,
  weights_id=weights_id).to_bytes()`.

  model, quality, metric and weights_id are Python values fixed when the
  graph is built (an exported SavedModel holds one model); height, width
  and strings (scalar strings) are tensors.
  """
  if metric not in METRICS:
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
  if len(strings) > MAX_ITEMS:
    raise ValueError(f"at most {MAX_ITEMS} strings")
  height = tf.cast(height, tf.int64)
  width = tf.cast(width, tf.int64)
  size_ok = tf.reduce_all([height > 0, height <= MAX_DIMENSION,
                           width > 0, width <= MAX_DIMENSION])
  check = tf.debugging.Assert(
      size_ok, [f"image size outside 1..{MAX_DIMENSION}:", height, width])
  fixed = list(MAGIC) + [VERSION] + list(model_field(model)) + [
      int(quality), METRICS.index(metric)] + list(
          int(weights_id).to_bytes(4, "big"))
  header = [tf.constant(fixed, tf.int64), u16_bytes(height - 1),
            u16_bytes(width - 1), _u8(len(strings))]
  pieces = [bytes_to_string(tf.concat(header, 0))]
  for string in strings:
    pieces.append(bytes_to_string(u32_bytes(tf.strings.length(string))))
    pieces.append(string)
  with tf.control_dependencies([check]):
    body = tf.strings.join(pieces)
  return tf.strings.join([body, bytes_to_string(u32_bytes(crc32(body)))])


# -- decoding -------------------------------------------------------------------

class Checks:
  """A chain of assertions that run in order, and tensors guarded by them.

  Each check depends on the previous one, so the first problem in file order
  is the one reported (a bad magic is not reported as a CRC mismatch), and
  `guard` makes results depend on every check, so nothing downstream (range
  decoding, synthesis) runs on a file that failed one.
  """

  def __init__(self):
    self._last = None

  def require(self, condition, message, *values):
    deps = [] if self._last is None else [self._last]
    with tf.control_dependencies(deps):
      self._last = tf.debugging.Assert(condition, [message, *values],
                                       summarize=8)

  def guard(self, tensors):
    deps = [] if self._last is None else [self._last]
    with tf.control_dependencies(deps):
      return tf.nest.map_structure(tf.identity, tensors)


class _Reader:
  """Reads big-endian fields from a byte tensor without ever failing.

  Out-of-range reads are clamped (and yield garbage): whether a read was in
  range is for the caller's checks, which run before any result is used.
  """

  def __init__(self, values):
    self.size = tf.size(values, out_type=tf.int64)
    # One extra byte so that a clamped index is valid even for empty input.
    self._values = tf.concat([values, tf.zeros([1], tf.int64)], 0)
    self.pos = tf.constant(0, tf.int64)

  def remaining(self, end=None):
    return (self.size if end is None else end) - self.pos

  def byte_at(self, index):
    """The byte at `index` (clamped into range)."""
    return tf.gather(self._values, tf.clip_by_value(index, 0, self.size))

  def u8(self):
    value = self.byte_at(self.pos)
    self.pos += 1
    return value

  def u16(self):
    return self._big_endian(2)

  def u32(self):
    return self._big_endian(4)

  def _big_endian(self, size):
    value = tf.constant(0, tf.int64)
    for _ in range(size):
      value = tf.bitwise.bitwise_or(tf.bitwise.left_shift(value, 8), self.u8())
    return value

  def bytes_equal(self, expected):
    """Whether the next len(expected) bytes are `expected`; advances past them."""
    indices = tf.minimum(self.pos + tf.range(len(expected), dtype=tf.int64),
                         self.size)
    equal = tf.reduce_all(tf.equal(tf.gather(self._values, indices),
                                   tf.constant(list(expected), tf.int64)))
    self.pos += len(expected)
    return equal


def _substr(data, pos, length, size):
  """tf.strings.substr with position and length clamped into the string."""
  pos = tf.clip_by_value(pos, 0, size)
  length = tf.clip_by_value(length, 0, size - pos)
  return tf.strings.substr(data, pos, length)


def decode(data, model, quality, metric, num_strings, checks=None,
           weights_id=0):
  """Parses and validates a version 7 .tfci file (scalar string) in the graph.

  The file must come from `model` at `quality` / `metric` with `weights_id`
  (an exported SavedModel decodes only its own model) and hold
  `num_strings` strings. Validation follows `Bitstream.from_bytes`: size,
  magic, version, CRC, then every field in order, then no trailing bytes; a
  failure raises InvalidArgumentError whose message names the problem.

  Returns (height, width, strings, checks): int32 scalars and a list of
  scalar strings, all guarded by the checks; `checks` can take further
  model-specific checks.
  """
  checks = checks or Checks()
  values = tf.cast(tf.io.decode_raw(data, tf.uint8), tf.int64)
  reader = _Reader(values)
  size = reader.size
  checks.require(size >= len(MAGIC) + 4,
                 "not a .tfci file: too short, bytes:", size)
  checks.require(reader.bytes_equal(MAGIC),
                 "not a .tfci file (bad magic bytes)")
  version = reader.u8()
  checks.require(tf.equal(version, VERSION),
                 f"format version not supported (this decoder reads version "
                 f"{VERSION}); file version:", version)
  body_size = size - 4
  stored_crc = tf.constant(0, tf.int64)
  for i in range(4):
    stored_crc = tf.bitwise.bitwise_or(tf.bitwise.left_shift(stored_crc, 8),
                                       reader.byte_at(body_size + i))
  computed_crc = crc32_of_bytes(values[:tf.maximum(body_size, 0)])
  checks.require(tf.equal(stored_crc, computed_crc),
                 "CRC32 mismatch: the file is corrupted or truncated "
                 "(stored, computed):", stored_crc, computed_crc)

  # The model field: an id byte, or 0 + length + name (io.bitstream).
  expected_model = model_field(model)
  file_model = tf.stack([reader.byte_at(reader.pos + i)
                         for i in range(len(expected_model))])
  checks.require(reader.bytes_equal(expected_model),
                 f"the file was made by another model; this decoder holds "
                 f"{model} (model field bytes {list(expected_model)}); file "
                 "model field bytes:", file_model)
  file_quality, metric_id = reader.u8(), reader.u8()
  checks.require(tf.equal(file_quality, int(quality)),
                 f"the file was made at another quality; this decoder holds "
                 f"quality {int(quality)}; file quality:", file_quality)
  checks.require(tf.equal(metric_id, METRICS.index(metric)),
                 f"the file was made with weights for another metric; this "
                 f"decoder holds {metric} (id {METRICS.index(metric)}); file "
                 f"metric id:", metric_id)
  file_weights_id = reader.u32()
  checks.require(tf.equal(file_weights_id, int(weights_id)),
                 f"the file was coded with other {model} weights; this "
                 f"decoder holds weights id {int(weights_id)}; file weights "
                 "id:", file_weights_id)
  # Stored minus one: 1..65536 by construction.
  height, width = reader.u16() + 1, reader.u16() + 1

  count = reader.u8()
  checks.require(tf.equal(count, num_strings),
                 f"expected {num_strings} strings, file has:", count)
  strings = []
  for i in range(num_strings):
    length = reader.u32()
    checks.require(length <= reader.remaining(body_size),
                   f"truncated file: string {i} needs more bytes than remain "
                   "(needed, remaining):", length, reader.remaining(body_size))
    strings.append(_substr(data, reader.pos, length, size))
    reader.pos += length
  checks.require(tf.equal(reader.pos, body_size),
                 "unexpected bytes after the payload (payload end, CRC offset):",
                 reader.pos, body_size)
  height = tf.cast(height, tf.int32)
  width = tf.cast(width, tf.int32)
  height, width, strings = checks.guard((height, width, strings))
  return height, width, strings, checks
