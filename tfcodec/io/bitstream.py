"""The .tfci container (format versions 7 and 8). See docs/FORMAT.md.

Version 7 layout (one untiled image), all integers big-endian:

  magic        4 bytes  b"TFCI"
  version      u8       7
  model id     u8       MODEL_IDS[name]; 0: a u8 length and the ASCII
                        registry name follow (a model tfcodec does not number)
  quality      u8       0..8 (0: a variable-rate model's low rung)
  metric       u8       0 = mse, 1 = ms-ssim
  weights id   u32      CRC32 of the coding model's float16 weights
  height - 1   u16      original image height (before padding), 1..65536
  width - 1    u16      original image width
  n_strings    u8       entropy-coded strings, each u32 length + bytes
  crc32        u32      zlib.crc32 of every preceding byte

Version 8 (a tiled image) is the same up to width, then

  tile size    u16      side of the square tiles, a multiple of the model stride
  then, for each tile in row-major order, n_strings + strings exactly as
  above (the tile count follows from the size).

Latent shapes are not stored: they follow from the image (or tile) size and
the model's stride and downsampling factors (`codec.expected_latent_shapes`).
For a 768x512 Kodak image the header and CRC of mbt2018-mean-vr take 29
bytes; version 3's took 67 (0.7% of a 0.2 bpp file, of which 0.4% is saved).

Versions 1 to 6 are refused by name with a re-encode hint: 1 and 2 coded
each Gaussian with its truncated scale index (later versions round it:
`entropy.coding_scale_indexes`), 3 and 4 had the longer header, 5 and 6
(the layouts of 7 and 8) computed the context models' per-step networks at
20 bits in float64 instead of 14-bit int8 digits
(`tfcodec.layers.digits.DigitRowDense`), so their y strings decode to
garbage under today's arithmetic.

The decoder needs nothing but this file: the model, its quality and metric,
and the image size travel inside; the weights id lets a decoder whose
weights differ from the encoder's (a newer tfcodec retrained the model)
refuse the file instead of decoding a wrong image.

Every header value is checked against a fixed bound before anything is
allocated from it, so a hostile file can at worst make the decoder work on an
image of MAX_PIXELS pixels (in tiles of at most MAX_TILE_SIDE^2).
"""

import dataclasses
import struct
import zlib

MAGIC = b"TFCI"
VERSION = 7  # untiled; the only version the in-graph container speaks
VERSION_TILED = 8
SUPPORTED_VERSIONS = (VERSION, VERSION_TILED)
# Versions an older tfcodec wrote, refused with a re-encode hint: which
# tfcodec wrote them and what changed since.
LEGACY_VERSIONS = {
    1: ("0.1.x", "coded scale indexes truncated"),
    2: ("0.1.x", "coded scale indexes truncated"),
    3: ("0.2.x", "had a longer header"),
    4: ("0.2.x", "had a longer header"),
    5: ("0.3.x", "computed context models' entropy parameters differently"),
    6: ("0.3.x", "computed context models' entropy parameters differently"),
}
METRICS = ("mse", "ms-ssim")
# The one-byte model ids of the registered models. Fixed forever: a number
# is never reused or reassigned (docs/FORMAT.md). A model without an id (one
# registered outside tfcodec) is written as id 0 followed by its name.
MODEL_IDS = {
    "bmshj2018-factorized": 1,
    "bmshj2018-hyperprior": 2,
    "mbt2018-mean": 3,
    "mbt2018-mean-vr": 4,
    "mbt2018": 5,
    "cheng2020-anchor": 6,
    "cheng2020-attn": 7,
    "cheng2020-gmm": 8,
    "informer": 9,
    "tcm-s": 10,
    "tcm-m": 11,
    "tcm-l": 12,
}
MODEL_NAMES = {number: name for name, number in MODEL_IDS.items()}
# Bounds checked before anything is allocated from header values.
MAX_DIMENSION = 1 << 16
MAX_ITEMS = 16
# At most 2^27 pixels (e.g. 16384 x 8192, 134 MP): the decoded image alone is
# then 384 MiB of uint8, and everything else is bounded per tile.
MAX_PIXELS = 1 << 27
# An untiled (version 7) image is decoded in one piece; its peak memory grows
# with its area, so above this many pixels the encoder tiles and the decoder
# refuses untiled files (2048 x 2048 decodes in well under 4 GiB).
MAX_UNTILED_PIXELS = 2048 * 2048
# Tile sides a version 8 file may declare; the upper end bounds per-tile memory.
MIN_TILE_SIDE = 64
MAX_TILE_SIDE = 2048
# Each tile costs a model call, so the count is bounded too (the encoder's
# 1024-pixel tiles need at most 128 for MAX_PIXELS).
MAX_TILES = 2048


class FormatError(ValueError):
  """The bytes are not a valid .tfci file (the message says why)."""


@dataclasses.dataclass
class Bitstream:
  model: str
  quality: int
  metric: str
  height: int
  width: int
  strings: list  # [bytes, ...] entropy-coded payloads (untiled files)
  tile_size: int = 0  # 0: untiled (version 7); else the tile side (version 8)
  tiles: list = dataclasses.field(default_factory=list)  # [[bytes, ...]]
  weights_id: int = 0  # models.base.weights_fingerprint of the coding model

  @property
  def tiled(self):
    return self.tile_size > 0

  @property
  def version(self):
    return VERSION_TILED if self.tiled else VERSION

  def tile_grid(self):
    """(rows, cols) of tiles; (1, 1) for an untiled file."""
    if not self.tiled:
      return 1, 1
    return (-(-self.height // self.tile_size), -(-self.width // self.tile_size))

  def tile_boxes(self):
    """[(top, left, height, width)] of every tile, row-major."""
    if not self.tiled:
      return [(0, 0, self.height, self.width)]
    side, (rows, cols) = self.tile_size, self.tile_grid()
    return [(r * side, c * side, min(side, self.height - r * side),
             min(side, self.width - c * side))
            for r in range(rows) for c in range(cols)]

  def payloads(self):
    """[strings] per tile (a single list for an untiled file)."""
    return list(self.tiles) if self.tiled else [self.strings]

  def to_bytes(self):
    body = b"".join(self._header_fields() + self._payload_fields())
    return body + struct.pack(">I", zlib.crc32(body))

  def _header_fields(self):
    """The validated header as a list of byte strings, up to the payload."""
    if self.metric not in METRICS:
      raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")
    if not (0 < self.height <= MAX_DIMENSION and 0 < self.width <= MAX_DIMENSION):
      raise ValueError(f"image size {self.height}x{self.width} outside "
                       f"1..{MAX_DIMENSION}")
    if not 0 <= self.quality < 256:
      raise ValueError(f"quality {self.quality} is not a u8")
    if not 0 <= self.weights_id < 1 << 32:
      raise ValueError(f"weights id {self.weights_id} is not a u32")
    if self.tiled:
      if not MIN_TILE_SIDE <= self.tile_size <= MAX_TILE_SIDE:
        raise ValueError(f"tile size {self.tile_size} outside "
                         f"{MIN_TILE_SIDE}..{MAX_TILE_SIDE}")
      rows, cols = self.tile_grid()
      if len(self.tiles) != rows * cols:
        raise ValueError(f"{len(self.tiles)} tiles given, a {self.height}x"
                         f"{self.width} image in {self.tile_size}-pixel tiles "
                         f"has {rows * cols}")
    fields = [MAGIC, struct.pack(">B", self.version), model_field(self.model),
              struct.pack(">BBIHH", self.quality, METRICS.index(self.metric),
                          self.weights_id, self.height - 1, self.width - 1)]
    if self.tiled:
      fields.append(struct.pack(">H", self.tile_size))
    return fields

  def _payload_fields(self):
    out = []
    for strings in self.payloads():
      if len(strings) > MAX_ITEMS:
        raise ValueError(f"{len(strings)} strings, at most {MAX_ITEMS}")
      out.append(struct.pack(">B", len(strings)))
      for string in strings:
        out.append(struct.pack(">I", len(string)))
        out.append(bytes(string))
    return out

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
    if version in LEGACY_VERSIONS:
      writer, change = LEGACY_VERSIONS[version]
      raise FormatError(f"format version {version} was written by tfcodec "
                        f"{writer}, which {change}; this tfcodec reads "
                        f"versions {VERSION} and {VERSION_TILED}: re-encode "
                        "the image")
    if version not in SUPPORTED_VERSIONS:
      known = ", ".join(map(str, SUPPORTED_VERSIONS))
      raise FormatError(f"format version {version} is not supported (this "
                        f"tfcodec reads versions {known}; a newer tfcodec "
                        "wrote this file?)")
    if zlib.crc32(body) != crc:
      raise FormatError("CRC32 mismatch: the file is corrupted or truncated")
    model_id = reader.u8()
    if model_id:
      if model_id not in MODEL_NAMES:
        raise FormatError(f"model id {model_id} is not known to this tfcodec "
                          "(a newer tfcodec wrote this file?)")
      name = MODEL_NAMES[model_id]
    else:
      try:
        name = reader.take(reader.u8()).decode("ascii")
      except UnicodeDecodeError as e:
        raise FormatError("model name is not ASCII") from e
      if not name:
        raise FormatError("empty model name")
    quality, metric_id = reader.u8(), reader.u8()
    weights_id = reader.u32()
    height, width = reader.u16() + 1, reader.u16() + 1
    if metric_id >= len(METRICS):
      raise FormatError(f"unknown metric id {metric_id}")
    if height * width > MAX_PIXELS:
      raise FormatError(f"image size {height}x{width} exceeds the maximum of "
                        f"{MAX_PIXELS} pixels")
    tile_size = 0
    if version == VERSION_TILED:
      tile_size = reader.u16()
      if not MIN_TILE_SIDE <= tile_size <= MAX_TILE_SIDE:
        raise FormatError(f"tile size {tile_size} outside "
                          f"{MIN_TILE_SIDE}..{MAX_TILE_SIDE}")
    elif height * width > MAX_UNTILED_PIXELS:
      raise FormatError(f"untiled image of {height}x{width} pixels exceeds "
                        f"the {MAX_UNTILED_PIXELS}-pixel limit for untiled "
                        "files (re-encode it: large images are tiled)")
    stream = cls(name, quality, METRICS[metric_id], height, width, [],
                 tile_size=tile_size, weights_id=weights_id)
    rows, cols = stream.tile_grid()
    if rows * cols > MAX_TILES:
      raise FormatError(f"{rows * cols} tiles of {tile_size} pixels exceed "
                        f"the maximum of {MAX_TILES} tiles")
    # Each tile record takes at least 1 byte (its count), so a tile count
    # the file cannot hold is refused before the loop runs.
    if rows * cols > reader.remaining():
      raise FormatError(f"truncated file: {rows * cols} tiles cannot fit in "
                        f"{reader.remaining()} bytes")
    payloads = [_read_strings(reader) for _ in range(rows * cols)]
    if reader.remaining():
      raise FormatError(f"{reader.remaining()} unexpected bytes after the payload")
    if stream.tiled:
      stream.tiles = payloads
    else:
      stream.strings = payloads[0]
    return stream


def model_field(name):
  """The header's model field: its id byte, or 0 + length + ASCII name."""
  if name in MODEL_IDS:
    return bytes([MODEL_IDS[name]])
  try:
    encoded = name.encode("ascii")
  except UnicodeEncodeError as e:
    raise ValueError(f"model name must be ASCII: {name!r}") from e
  if not 0 < len(encoded) < 256:
    raise ValueError(f"model name must be 1..255 ASCII bytes: {name!r}")
  return bytes([0, len(encoded)]) + encoded


def _read_strings(reader):
  """One tile's strings: the count and every length bounds-checked."""
  return [reader.take(reader.u32()) for _ in range(reader.count())]


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

  def u16(self):
    return struct.unpack(">H", self.take(2))[0]

  def u32(self):
    return struct.unpack(">I", self.take(4))[0]

  def count(self):
    n = self.u8()
    if n > MAX_ITEMS:
      raise FormatError(f"{n} items where at most {MAX_ITEMS} are allowed")
    return n

  def remaining(self):
    return len(self.data) - self.pos
