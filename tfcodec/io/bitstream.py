"""The .tfci container (format version 1). See docs/FORMAT.md.

Layout, all integers big-endian:

  magic        4 bytes  b"TFCI"
  version      u8       1
  model name   u8 length + ASCII bytes (a registry name, e.g. "mbt2018-mean")
  quality      u8       1..8
  metric       u8       0 = mse, 1 = ms-ssim
  height       u32      original image height (before padding)
  width        u32      original image width
  n_shapes     u8       latent shapes, each u8 rank + rank x u32
  n_strings    u8       entropy-coded strings, each u32 length + bytes
  crc32        u32      zlib.crc32 of every preceding byte

The decoder needs nothing but this file: the model, its quality and metric,
the image size and every latent shape travel inside.
"""

import dataclasses
import struct
import zlib

MAGIC = b"TFCI"
VERSION = 1
METRICS = ("mse", "ms-ssim")
# Bounds checked before anything is allocated from header values.
MAX_DIMENSION = 1 << 16
MAX_ITEMS = 16


class FormatError(ValueError):
  """The bytes are not a valid .tfci file (the message says why)."""


@dataclasses.dataclass
class Bitstream:
  model: str
  quality: int
  metric: str
  height: int
  width: int
  shapes: list  # [[h, w], ...] latent shapes
  strings: list  # [bytes, ...] entropy-coded payloads

  def to_bytes(self):
    if self.metric not in METRICS:
      raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")
    name = self.model.encode("ascii")
    if not 0 < len(name) < 256:
      raise ValueError(f"model name must be 1..255 ASCII bytes: {self.model!r}")
    if not (0 < self.height <= MAX_DIMENSION and 0 < self.width <= MAX_DIMENSION):
      raise ValueError(f"image size {self.height}x{self.width} outside "
                       f"1..{MAX_DIMENSION}")
    out = [MAGIC, struct.pack(">BB", VERSION, len(name)), name,
           struct.pack(">BBII", self.quality, METRICS.index(self.metric),
                       self.height, self.width),
           struct.pack(">B", len(self.shapes))]
    for shape in self.shapes:
      out.append(struct.pack(">B", len(shape)))
      out.append(struct.pack(f">{len(shape)}I", *[int(d) for d in shape]))
    out.append(struct.pack(">B", len(self.strings)))
    for string in self.strings:
      out.append(struct.pack(">I", len(string)))
      out.append(bytes(string))
    body = b"".join(out)
    return body + struct.pack(">I", zlib.crc32(body))

  @classmethod
  def from_bytes(cls, data):
    data = bytes(data)
    if len(data) < len(MAGIC) + 4:
      raise FormatError(f"file too short ({len(data)} bytes) to be a .tfci file")
    if data[:4] != MAGIC:
      raise FormatError("not a .tfci file (bad magic bytes)")
    body, (crc,) = data[:-4], struct.unpack(">I", data[-4:])
    reader = _Reader(body)
    reader.skip(4)
    version = reader.u8()
    if version != VERSION:
      raise FormatError(f"format version {version} is not supported "
                        f"(this tfcodec reads version {VERSION})")
    if zlib.crc32(body) != crc:
      raise FormatError("CRC32 mismatch: the file is corrupted or truncated")
    try:
      name = reader.take(reader.u8()).decode("ascii")
    except UnicodeDecodeError as e:
      raise FormatError("model name is not ASCII") from e
    quality, metric_id = reader.u8(), reader.u8()
    height, width = reader.u32(), reader.u32()
    if metric_id >= len(METRICS):
      raise FormatError(f"unknown metric id {metric_id}")
    if not (0 < height <= MAX_DIMENSION and 0 < width <= MAX_DIMENSION):
      raise FormatError(f"image size {height}x{width} outside 1..{MAX_DIMENSION}")
    shapes = []
    for _ in range(reader.count()):
      rank = reader.u8()
      if rank > 4:
        raise FormatError(f"latent rank {rank} is implausible")
      shapes.append([reader.u32() for _ in range(rank)])
    strings = []
    for _ in range(reader.count()):
      strings.append(reader.take(reader.u32()))
    if reader.remaining():
      raise FormatError(f"{reader.remaining()} unexpected bytes after the payload")
    return cls(name, quality, METRICS[metric_id], height, width, shapes, strings)


class _Reader:
  """Bounds-checked reads; running off the end is a FormatError."""

  def __init__(self, data):
    self.data, self.pos = data, 0

  def take(self, n):
    if n > len(self.data) - self.pos:
      raise FormatError(f"truncated file: needs {n} more bytes at offset "
                        f"{self.pos}, has {len(self.data) - self.pos}")
    chunk = self.data[self.pos:self.pos + n]
    self.pos += n
    return chunk

  def skip(self, n):
    self.take(n)

  def u8(self):
    return self.take(1)[0]

  def u32(self):
    return struct.unpack(">I", self.take(4))[0]

  def count(self):
    n = self.u8()
    if n > MAX_ITEMS:
      raise FormatError(f"{n} items where at most {MAX_ITEMS} are allowed")
    return n

  def remaining(self):
    return len(self.data) - self.pos
