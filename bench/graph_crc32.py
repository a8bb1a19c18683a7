"""Cost of the in-graph CRC32 that exported SavedModels compute per file.

  python bench/graph_crc32.py [--kilobytes 20] [--repeats 30]

Times `tfcodec.io.graph_bitstream.crc32` (chunked, table-driven, two short
loops) against the straightforward graph version, one `tf.while_loop`
iteration per byte, on random data of the given size; both are checked
against zlib.crc32 first. Prints the median of the repeats, after a warm-up.
"""

import argparse
import os
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfcodec.io import graph_bitstream  # noqa: E402


def bytewise_crc32(data):
  """The reference shape of the computation: one loop iteration per byte."""
  values = tf.cast(tf.io.decode_raw(data, tf.uint8), tf.int64)
  table = tf.constant(graph_bitstream._TABLE)

  def step(i, register):
    return i + 1, graph_bitstream._table_step(table, register, values[i])

  _, register = tf.while_loop(lambda i, _: i < tf.size(values), step,
                              [tf.constant(0), tf.constant(0xFFFFFFFF, tf.int64)])
  return tf.bitwise.bitwise_xor(register, 0xFFFFFFFF)


def median_seconds(fn, data, repeats):
  fn(data)  # warm-up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn(data)
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--kilobytes", type=float, default=20.)
  parser.add_argument("--repeats", type=int, default=30)
  args = parser.parse_args()
  payload = np.random.default_rng(0).integers(
      0, 256, int(args.kilobytes * 1000), dtype=np.uint8).tobytes()
  data = tf.constant(payload)
  spec = [tf.TensorSpec([], tf.string)]
  for name, fn in (("chunked (tfcodec)", graph_bitstream.crc32),
                   ("byte-at-a-time loop", bytewise_crc32)):
    traced = tf.function(fn, input_signature=spec)
    assert int(traced(data)) == zlib.crc32(payload), name
    seconds = median_seconds(traced, data, args.repeats)
    print(f"{name:>20}: {seconds * 1e3:8.2f} ms for {len(payload)} bytes "
          f"({len(payload) / seconds / 1e6:.1f} MB/s)")


if __name__ == "__main__":
  main()
