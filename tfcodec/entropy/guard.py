"""Bounded-time decoding of untrusted range-coded strings, verified by re-encoding.

Why this exists. tfc's range decoder reads zero bytes once it runs past the end
of a string, and codes an out-of-table (escape) value with an Elias-gamma code
whose unary prefix is decoded bit by bit until a 1 appears. A damaged string can
leave the decoder with `value == base`; from then on zero fill decodes 0 forever
and the native op never returns (`make fuzz` found 3 such hangs in 10,000 cases;
the 120 s per-case timeout was the only thing that stopped them).

The native op cannot be changed here, so the decoder is fed

    string | ZERO_PAD zero bytes | tail of 0xFF bytes

* For a string this encoder wrote, the padding is never reached: the decoder
  consumes at most the string, the zero bytes the encoder leaves implicit (one
  pair per range expansion pending at the end, each with probability ~2^-16)
  and a 4-byte look-ahead, far below ZERO_PAD. Its symbols are unchanged.
* For a damaged string, the unary prefix ends at the latest inside the 0xFF
  tail (there `value - base` is never 0), and every further symbol decodes
  to the escape bin (mass >= 2^-16) followed by one prefix bit, no gamma
  bits, and one sign bit: at most TAIL_BITS_PER_SYMBOL bits. The tail is long
  enough for every symbol plus the gamma digits of the one symbol whose prefix
  may have run through the whole string and the zero pad, so decoding always
  ends within the tail: time is linear in string length plus symbol count.

Because the padding defeats tfc's own end-of-string sanity check, the decoded
symbols are re-encoded with the same tables and must reproduce the file's
string byte for byte (a check tfc's weak `entropy_decode_finalize` cannot
give). Re-encoding is only attempted on symbols within SYMBOL_LIMIT: tfc's
encoder loops forever on escape values of 2^30 or more, which damaged input can
decode to. The encoder side asserts the same limit (no real latent gets near).
"""

import tensorflow as tf
from tensorflow_compression.python.ops import gen_ops

ZERO_PAD = 64
# Escape bin at 16-bit precision + one unary bit + one sign bit.
TAIL_BITS_PER_SYMBOL = 18
# |symbol - table offset| must stay below this on both sides.
SYMBOL_LIMIT = 2 ** 20
_ONES_BLOCK = b"\xff" * 4096
DAMAGED = "entropy-coded string is damaged"


def padded_strings(strings, num_symbols):
  """`strings` with the zero pad and a 0xFF tail long enough for `num_symbols`.

  num_symbols: symbols decoded from each string (int scalar tensor).
  """
  strings = tf.convert_to_tensor(strings, tf.string)
  longest = tf.cast(tf.reduce_max(tf.strings.length(strings)), tf.int64)
  num_symbols = tf.cast(num_symbols, tf.int64)
  tail_bytes = (num_symbols * TAIL_BITS_PER_SYMBOL + 7) // 8 + longest + ZERO_PAD + 16
  blocks = (tail_bytes + len(_ONES_BLOCK) - 1) // len(_ONES_BLOCK)
  tail = tf.strings.reduce_join(tf.fill(tf.reshape(blocks, [1]), _ONES_BLOCK))
  return tf.strings.join([strings, b"\x00" * ZERO_PAD, tail])


def _largest(symbols):
  """max |symbol|, 0 for an empty tensor."""
  flat = tf.reshape(tf.abs(tf.cast(symbols, tf.int32)), [-1])
  return tf.reduce_max(tf.concat([[0], flat], 0))


def _check_and_reencode(strings, symbols, encode):
  """Asserts |symbols| < SYMBOL_LIMIT and that encode(symbols) == strings."""
  in_range = tf.debugging.assert_less(
      _largest(symbols), SYMBOL_LIMIT, message=DAMAGED + " (decoded value out of range)")
  with tf.control_dependencies([in_range]):
    reencoded = encode(tf.identity(symbols))
  # Compared to a bool first: an assert on the strings themselves would put
  # binary bytes into the error message, which TF then fails to decode.
  same = tf.debugging.assert_equal(
      tf.reduce_all(tf.equal(reencoded, strings)), True,
      message=DAMAGED + " (it does not re-encode to itself)")
  with tf.control_dependencies([same]):
    return tf.identity(symbols)


def assert_encodable(symbols):
  """Encoder-side guard: tfc's encoder never returns on |escape| >= 2^30."""
  return tf.debugging.assert_less(
      _largest(symbols), SYMBOL_LIMIT,
      message="latent value too large to entropy-code")


def _decode(strings, decode_shape, cdf, flat_indexes=None):
  """Guarded decode: `entropy_decode_index` when `flat_indexes` is given (one
  table per symbol), else `entropy_decode_channel` (one table per channel).
  Returns the symbols relative to the table offsets."""
  strings = tf.convert_to_tensor(strings, tf.string)
  handle = gen_ops.create_range_decoder(
      padded_strings(strings, tf.reduce_prod(decode_shape)), cdf)
  encoder = gen_ops.create_range_encoder(tf.shape(strings), cdf)
  if flat_indexes is None:
    _, symbols = gen_ops.entropy_decode_channel(handle, decode_shape, tf.int32)
    encode = lambda values: gen_ops.entropy_encode_channel(encoder, values)  # noqa: E731
  else:
    _, symbols = gen_ops.entropy_decode_index(
        handle, flat_indexes, decode_shape, tf.int32)
    encode = lambda values: gen_ops.entropy_encode_index(  # noqa: E731
        encoder, flat_indexes, values)
  return _check_and_reencode(
      strings, symbols,
      lambda values: gen_ops.entropy_encode_finalize(encode(values)))


def decode_index(strings, flat_indexes, decode_shape, cdf):
  """Guarded `entropy_decode_index` (indexed tables: Gaussian conditionals)."""
  return _decode(strings, decode_shape, cdf, flat_indexes)


def decode_channel(strings, decode_shape, cdf):
  """Guarded `entropy_decode_channel` (factorized priors)."""
  return _decode(strings, decode_shape, cdf)
