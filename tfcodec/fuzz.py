"""Mutation fuzzer for the .tfci decoder (`tfcodec.codec.decode_bytes`).

  python -m tfcodec.fuzz --cases 10000 [--seed 0] [--timeout 30]

Seed files are real bitstreams of every registered model (tiny random models
from `tfcodec.testing`, fixed seed), untiled and tiled. Each case is a seed
after one or more mutations: bit flips, byte edits, truncation, extension,
insertions and deletions, random bytes, splices of two files, header field
edits, string-count and string-length edits, payload damage, and consistent
resizes (new image size, strings kept). Most mutations are applied both as is
(the CRC catches them) and with the CRC recomputed, so they reach the
header checks and the range decoder.

Cases run in a long-lived worker subprocess fed over a pipe, so a segfault or
an abort in native code, or a hang, is counted instead of killing the
harness; a dead or stuck worker is replaced. Outcomes:

  error     a clean FormatError (the expected answer to a damaged file)
  decoded   a successful decode (the damage was invisible to the format)
  uncaught  any other Python exception (would be a traceback at the CLI)
  crash     the worker died (signal or exit)
  hang      no answer within the per-case timeout

Inputs that crash, hang or raise uncaught exceptions are saved with
`--save_dir` for replay (`python -m tfcodec.fuzz --replay FILE`).
"""

import argparse
import collections
import os
import random
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib

from tfcodec.io import bitstream

OUTCOMES = ("error", "decoded", "uncaught", "crash", "hang")
FAILURES = ("uncaught", "crash", "hang")
DEFAULT_SNAPSHOTS = os.path.join(tempfile.gettempdir(), "tfcodec-tiny-models")


# -- the container, as seen by the mutators -------------------------------------

def with_crc(body):
  return bytes(body) + struct.pack(">I", zlib.crc32(bytes(body)))


def fix_crc(data):
  """Recomputes the trailing CRC so the mutation gets past the CRC check."""
  if len(data) < 8:
    return data
  return with_crc(data[:-4])


def field_offsets(data):
  """(fields, lengths, counts) of a valid file: {field: (offset, size)} of
  the header fields, the (offset, 4) of every string length, and the offset
  of every tile's string count (for targeted edits)."""
  fields = {"version": (4, 1), "model_id": (5, 1)}
  pos = 6
  if data[5] == 0:
    fields["name_length"] = (6, 1)
    pos = 7 + data[6]
  fields["quality"], fields["metric"] = (pos, 1), (pos + 1, 1)
  fields["weights_id"] = (pos + 2, 4)
  fields["height"], fields["width"] = (pos + 6, 2), (pos + 8, 2)
  height = struct.unpack(">H", data[pos + 6:pos + 8])[0] + 1
  width = struct.unpack(">H", data[pos + 8:pos + 10])[0] + 1
  pos += 10
  tiles = 1
  if data[4] == bitstream.VERSION_TILED:
    fields["tile_size"] = (pos, 2)
    tile = struct.unpack(">H", data[pos:pos + 2])[0]
    tiles = -(-height // tile) * -(-width // tile)
    pos += 2
  lengths, counts = [], []
  for _ in range(tiles):
    counts.append(pos)
    for _ in range(data[pos]):
      # pos is the byte before each entry: u32 length, then the string.
      lengths.append((pos + 1, 4))
      pos += 4 + struct.unpack(">I", data[pos + 1:pos + 5])[0]
    pos += 1
  return fields, lengths, counts


def _put(data, offset, size, value):
  data = bytearray(data)
  data[offset:offset + size] = (value % (1 << (8 * size))).to_bytes(size, "big")
  return bytes(data)


_INTERESTING = (0, 1, 2, 3, 7, 8, 15, 16, 17, 63, 64, 65, 127, 128, 255, 256,
                1023, 1024, 2047, 2048, 2049, 4096, 65535, 65536, 65537,
                1 << 24, (1 << 31) - 1, 1 << 31, (1 << 32) - 1)


# -- mutators: (rng, data, seeds) -> bytes ----------------------------------------

def bit_flips(rng, data, seeds):
  data = bytearray(data)
  for _ in range(rng.choice((1, 1, 2, 4, 8, 32))):
    if data:
      i = rng.randrange(len(data))
      data[i] ^= 1 << rng.randrange(8)
  return bytes(data)


def byte_edits(rng, data, seeds):
  data = bytearray(data)
  for _ in range(rng.choice((1, 2, 4))):
    if data:
      data[rng.randrange(len(data))] = rng.choice((0, 0xFF, 0x7F, 0x80,
                                                   rng.randrange(256)))
  return bytes(data)


def truncate(rng, data, seeds):
  return data[:rng.randrange(len(data) + 1)]


def extend(rng, data, seeds):
  tail = bytes(rng.randrange(256) for _ in range(rng.choice((1, 4, 64, 4096))))
  return data + tail if rng.random() < .5 else data[:-4] + tail + data[-4:]


def insert_delete(rng, data, seeds):
  i = rng.randrange(len(data) + 1)
  if rng.random() < .5:
    return data[:i] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))) + data[i:]
  return data[:i] + data[i + rng.randint(1, 16):]


def random_bytes(rng, data, seeds):
  size = rng.choice((0, 1, 7, 8, 20, 64, 300, 5000))
  junk = bytes(rng.randrange(256) for _ in range(size))
  version = rng.choice(bitstream.SUPPORTED_VERSIONS)
  return (b"TFCI" + bytes([version]) + junk) if rng.random() < .5 else junk


def splice(rng, data, seeds):
  other = rng.choice(seeds)
  return data[:rng.randrange(len(data) + 1)] + other[rng.randrange(len(other) + 1):]


def header_field(rng, data, seeds):
  fields, _, _ = field_offsets(data)
  name = rng.choice(sorted(fields))
  offset, size = fields[name]
  old = int.from_bytes(data[offset:offset + size], "big")
  value = rng.choice(_INTERESTING + (old + 1, old - 1, old * 2, old // 2))
  return _put(data, offset, size, value)


def string_count(rng, data, seeds):
  _, _, counts = field_offsets(data)
  offset = rng.choice(counts)
  old = data[offset]
  return _put(data, offset, 1, rng.choice(
      (0, 1, 2, 3, 16, 17, 255, old + 1, old - 1)))


def string_length(rng, data, seeds):
  _, lengths, _ = field_offsets(data)
  offset, size = rng.choice(lengths)
  old = int.from_bytes(data[offset:offset + size], "big")
  return _put(data, offset, size, rng.choice(
      (0, 1, old - 1, old + 1, old * 2, len(data), (1 << 32) - 1)))


def payload_damage(rng, data, seeds):
  """Damages bytes inside the entropy-coded strings only (the header stays
  valid), e.g. a zeroed, flipped or shortened string."""
  _, lengths, _ = field_offsets(data)
  offset, _ = rng.choice(lengths)
  length = struct.unpack(">I", data[offset:offset + 4])[0]
  start = offset + 4
  data = bytearray(data)
  kind = rng.randrange(4)
  if length == 0 or kind == 0:  # empty string
    return bytes(data[:offset]) + struct.pack(">I", 0) + bytes(data[start + length:])
  if kind == 1:  # all zeros or all ones
    data[start:start + length] = bytes([rng.choice((0, 0xFF))]) * length
  elif kind == 2:  # a few random bytes
    for _ in range(rng.randint(1, 8)):
      data[start + rng.randrange(length)] = rng.randrange(256)
  else:  # shortened, length fixed up
    keep = rng.randrange(length)
    return (bytes(data[:offset]) + struct.pack(">I", keep) +
            bytes(data[start:start + keep]) + bytes(data[start + length:]))
  return bytes(data)


def resize(rng, data, seeds, max_side=None):
  """A consistent header for another image size (strings kept, as many as
  the model needs), i.e. a file the header checks must accept: the decoder
  then has to finish in time bounded by the claimed size."""
  from tfcodec.io.bitstream import Bitstream, FormatError
  from tfcodec.models import MODELS
  try:
    stream = Bitstream.from_bytes(data)
  except FormatError:
    return data
  cls = MODELS.get(stream.model)
  if cls is None:
    return data
  max_side = max_side or 512
  tile = 0 if rng.random() < .5 else rng.choice((64, 128))
  if tile:  # at most 8 x 8 tiles: each tile is a model call
    max_side = min(max_side, 8 * tile)
  height = rng.choice((1, 2, 15, 16, 17, 63, 64, 65, rng.randint(1, max_side)))
  width = rng.choice((1, 2, 15, 16, 17, 63, 64, 65, rng.randint(1, max_side)))
  stream = Bitstream(stream.model, stream.quality, stream.metric, height, width,
                     [], tile_size=tile, weights_id=stream.weights_id)
  strings = stream_strings(data)
  payloads = [[rng.choice(strings) for _ in cls.string_names]
              for _ in stream.tile_boxes()]
  if tile:
    stream.tiles = payloads
  else:
    stream.strings = payloads[0]
  return stream.to_bytes()


def stream_strings(data):
  from tfcodec.io.bitstream import Bitstream
  stream = Bitstream.from_bytes(data)
  return [s for strings in stream.payloads() for s in strings] or [b""]


# name -> (mutator, probability that the CRC is recomputed afterwards)
STRATEGIES = {
    "bit_flips": (bit_flips, .5),
    "byte_edits": (byte_edits, .5),
    "truncate": (truncate, .3),
    "extend": (extend, .5),
    "insert_delete": (insert_delete, .5),
    "random_bytes": (random_bytes, .5),
    "splice": (splice, .5),
    "header_field": (header_field, .9),
    "string_count": (string_count, .9),
    "string_length": (string_length, .9),
    "payload_damage": (payload_damage, 1.),
    "resize": (resize, 1.),
}


def make_case(rng, seeds, max_side=None):
  """(strategy name, mutated bytes) from one of `seeds`."""
  name = rng.choice(sorted(STRATEGIES))
  mutator, crc_probability = STRATEGIES[name]
  data = rng.choice(seeds)
  if name == "resize":
    data = resize(rng, data, seeds, max_side)
  else:
    data = mutator(rng, data, seeds)
  if rng.random() < crc_probability:
    data = fix_crc(data)
  return name, data


# -- the worker (a subprocess) ------------------------------------------------------

def _read_exact(stream, size):
  chunks = b""
  while len(chunks) < size:
    chunk = stream.read(size - len(chunks))
    if not chunk:
      return None
    chunks += chunk
  return chunks


def worker_main(snapshot_dir):
  """Decodes length-prefixed cases from stdin; one reply line per case."""
  # Native code (TF, the range coder) may print to fd 1; keep the protocol on
  # a private copy of the pipe and send everything else to stderr.
  reply = os.fdopen(os.dup(1), "w", buffering=1)
  os.dup2(2, 1)
  from tfcodec import codec, testing
  from tfcodec.io.bitstream import FormatError
  from tfcodec.util import quiet_tensorflow
  quiet_tensorflow()
  models = testing.load_tiny_models(snapshot_dir)
  loader = lambda name, quality, metric: models[name]  # noqa: E731
  reply.write("ready\n")
  stdin = sys.stdin.buffer
  while True:
    header = _read_exact(stdin, 4)
    if header is None:
      return
    data = _read_exact(stdin, struct.unpack(">I", header)[0])
    try:
      image = codec.decode_bytes(data, loader=loader)
      line = f"decoded {image.shape[0]}x{image.shape[1]}"
    except FormatError as e:
      line = f"error {str(e).splitlines()[0] if str(e) else ''}"
    except Exception as e:  # noqa: BLE001 (exactly what we are counting)
      line = f"uncaught {type(e).__name__}: {str(e).splitlines()[:1]}"
    reply.write(line.replace("\n", " ") + "\n")


class Worker:
  """A decoder subprocess with a per-case timeout; restarted when it dies."""

  def __init__(self, snapshot_dir, timeout, startup_timeout=900, warmup=()):
    """`warmup`: files every (re)started worker decodes first, untimed by the
    per-case limit, so that tracing each model's graphs never counts as a
    hang of the case that happens to come first."""
    self.snapshot_dir, self.timeout = snapshot_dir, timeout
    self.startup_timeout = startup_timeout
    self.warmup = list(warmup)
    self.process = None
    self.starts = 0

  def _start(self):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    self.process = subprocess.Popen(
        [sys.executable, "-m", "tfcodec.fuzz", "--worker",
         f"--snapshots={self.snapshot_dir}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    self.starts += 1
    line = self._read_line(self.startup_timeout)
    if line != "ready":
      self.stop()
      raise RuntimeError(f"fuzz worker failed to start (said {line!r})")
    for data in self.warmup:
      self.process.stdin.write(struct.pack(">I", len(data)) + data)
      self.process.stdin.flush()
      line = self._read_line(self.startup_timeout)
      if not line or not line.startswith("decoded"):
        self.stop()
        raise RuntimeError(f"fuzz worker failed to decode a seed file "
                           f"(said {line!r})")

  def _read_line(self, timeout):
    """A reply line, None on EOF (the worker died), "" on timeout."""
    fd = self.process.stdout.fileno()
    deadline, buffer = time.monotonic() + timeout, b""
    while not buffer.endswith(b"\n"):
      left = deadline - time.monotonic()
      if left <= 0 or not select.select([fd], [], [], left)[0]:
        return ""
      chunk = os.read(fd, 4096)
      if not chunk:
        return None
      buffer += chunk
    return buffer.decode(errors="replace").strip()

  def stop(self):
    if self.process is not None:
      if self.process.poll() is None:
        self.process.kill()
      self.process.wait()
      self.process = None

  def run(self, data, timeout=None):
    """(outcome, detail) for one case (`timeout` overrides the per-case one)."""
    timeout = self.timeout if timeout is None else timeout
    if self.process is None:
      self._start()
    try:
      self.process.stdin.write(struct.pack(">I", len(data)) + data)
      self.process.stdin.flush()
    except BrokenPipeError:
      line = None
    else:
      line = self._read_line(timeout)
    if line == "":
      self.stop()
      return "hang", f"no answer within {timeout} s"
    if line is None:
      code = self.process.wait()
      self.process = None
      reason = (f"signal {signal.Signals(-code).name}" if code < 0
                else f"exit status {code}")
      return "crash", reason
    outcome, _, detail = line.partition(" ")
    return outcome, detail


# -- the harness ------------------------------------------------------------------

def seed_bitstreams(models):
  """Real files of every model: small, odd-sized, 1x1 and tiled."""
  import numpy as np
  from tfcodec import codec
  rng = np.random.default_rng(0)
  seeds = []
  for name in sorted(models):
    model = models[name]
    for height, width, tile in ((40, 56, 0), (1, 1, 0), (70, 150, 64)):
      base = rng.uniform(0, 255, (height // 8 + 1, width // 8 + 1, 3))
      image = np.kron(base, np.ones((8, 8, 1)))[:height, :width]
      image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255)
      seeds.append(codec.encode_image(model, image.astype(np.uint8), 1,
                                      tile_size=tile))
  return seeds


def run_fuzz(cases, seed=0, timeout=30., snapshot_dir=DEFAULT_SNAPSHOTS,
             save_dir=None, max_side=None, log=None, progress_every=1000,
             models=None):
  """Runs `cases` mutated files; returns (counts, per-strategy counts,
  seconds, worker starts).

  The seed files are made in this process from the same tiny-model snapshots
  the worker decodes with (`models`, if given, must be those models).
  """
  from tfcodec import testing
  start = time.time()
  models = models or testing.load_tiny_models(snapshot_dir)
  seeds = seed_bitstreams(models)
  rng = random.Random(seed)
  counts = collections.Counter({o: 0 for o in OUTCOMES})
  by_strategy = collections.defaultdict(collections.Counter)
  # One seed per model warms every (re)started worker up: a model's first
  # decode traces its graphs (TCM's and the wavefront loops take long on a
  # loaded machine), which must not count against the per-case timeout.
  worker = Worker(snapshot_dir, timeout, warmup=seeds[::3])
  try:
    # Every seed must decode: otherwise the harness tests nothing.
    for data in seeds:
      outcome, detail = worker.run(data)
      if outcome != "decoded":
        raise RuntimeError(f"a seed bitstream did not decode: {outcome} {detail}")
    for index in range(cases):
      strategy, data = make_case(rng, seeds, max_side)
      outcome, detail = worker.run(data)
      counts[outcome] += 1
      by_strategy[strategy][outcome] += 1
      if outcome in FAILURES:
        if log:
          print(f"case {index} ({strategy}): {outcome}: {detail}", file=log)
        if save_dir:
          os.makedirs(save_dir, exist_ok=True)
          with open(os.path.join(save_dir, f"{outcome}-{index}.tfci"), "wb") as f:
            f.write(data)
      if log and progress_every and (index + 1) % progress_every == 0:
        print(f"  {index + 1} cases, {time.time() - start:.0f} s: "
              f"{_format(counts)}", file=log, flush=True)
  finally:
    worker.stop()
  return counts, by_strategy, time.time() - start, worker.starts


def _format(counts):
  names = {"error": "clean errors", "decoded": "decoded", "uncaught":
           "uncaught exceptions", "crash": "crashes", "hang": "hangs"}
  return ", ".join(f"{names[o]} {counts[o]}" for o in OUTCOMES)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--cases", type=int, default=10000)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--timeout", type=float, default=30.,
                      help="Seconds per case before it counts as a hang.")
  parser.add_argument("--max_side", type=int, default=2048,
                      help="Largest image side the resize mutation claims.")
  parser.add_argument("--snapshots", default=DEFAULT_SNAPSHOTS,
                      help="Folder caching the tiny models' weights and tables.")
  parser.add_argument("--save_dir", default=None,
                      help="Where to save inputs that crash, hang or raise.")
  parser.add_argument("--replay", default=None,
                      help="Decode one saved input in a worker and report.")
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker:
    worker_main(args.snapshots)
    return 0
  if args.replay:
    from tfcodec import testing
    testing.load_tiny_models(args.snapshots)
    worker = Worker(args.snapshots, args.timeout)
    with open(args.replay, "rb") as f:
      outcome, detail = worker.run(f.read())
    worker.stop()
    print(f"{args.replay}: {outcome}: {detail}")
    return 1 if outcome in FAILURES else 0
  counts, by_strategy, seconds, starts = run_fuzz(
      args.cases, args.seed, args.timeout, args.snapshots, args.save_dir,
      args.max_side, log=sys.stdout,
      progress_every=max(1, min(1000, args.cases // 10)))
  print(f"fuzz: {args.cases} cases in {seconds:.0f} s ({starts} worker "
        f"start(s)): {_format(counts)}")
  for strategy in sorted(by_strategy):
    print(f"  {strategy:<17} {_format(by_strategy[strategy])}")
  return 1 if any(counts[o] for o in FAILURES) else 0


if __name__ == "__main__":
  sys.exit(main())
