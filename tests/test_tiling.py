"""Tiled coding (format version 8) and the documented size limits."""

import struct
import zlib

import numpy as np
import pytest

from conftest import random_image
from tfcodec import codec
from tfcodec.io import bitstream
from tfcodec.io.bitstream import Bitstream, FormatError


@pytest.mark.parametrize("name", ["bmshj2018-factorized", "mbt2018-mean"])
def test_tiled_round_trip(tiny_models, name):
  model = tiny_models[name]
  image = random_image(150, 100, seed=5)
  data = codec.encode_image(model, image, 1, tile_size=64)
  stream = Bitstream.from_bytes(data)
  assert data[4] == bitstream.VERSION_TILED == 8 and stream.tile_size == 64 and stream.tile_grid() == (3, 2)
  assert len(stream.tiles) == 6
  out = codec.decode_bytes(data, model=model)
  assert out.shape == image.shape
  # Each tile decodes to what the same crop coded alone decodes to.
  crop = image[128:, 64:]
  alone = codec.decode_bytes(codec.encode_image(model, crop, 1, tile_size=0),
                             model=model)
  np.testing.assert_array_equal(out[128:, 64:], alone)


def test_automatic_tiling_threshold(tiny_models, monkeypatch):
  model = tiny_models["bmshj2018-factorized"]
  monkeypatch.setattr(codec, "TILE_THRESHOLD", 64 * 64)
  monkeypatch.setattr(codec, "TILE_SIZE", 64)
  assert codec.encode_image(model, random_image(64, 64), 1)[4] == bitstream.VERSION == 7
  assert codec.encode_image(model, random_image(65, 64), 1)[4] == bitstream.VERSION_TILED


def test_tile_size_must_fit_the_model(tiny_models):
  with pytest.raises(ValueError, match="stride"):
    codec.encode_image(tiny_models["mbt2018-mean"], random_image(70, 70), 1,
                       tile_size=48)


def _header(version, height, width, extra=b""):
  """A header of mbt2018-mean (model id 3) up to the payload, CRC valid."""
  body = (b"TFCI" + struct.pack(">BBBBIHH", version, 3, 1, 0, 0, height - 1,
                                width - 1) + extra)
  return body + struct.pack(">I", zlib.crc32(body))


@pytest.mark.parametrize("data, message", [
    (_header(7, 4096, 4096), "untiled image"),
    (_header(8, 65536, 65536, struct.pack(">H", 1024)), "exceeds the maximum"),
    (_header(8, 100, 100, struct.pack(">H", 8)), "tile size 8"),
    (_header(8, 100, 100, struct.pack(">H", 4096)), "tile size 4096"),
    (_header(8, 8192, 8192, struct.pack(">H", 64)), "exceed the maximum of"),
    (_header(8, 2048, 2048, struct.pack(">H", 64)), "tiles cannot fit"),
], ids=["untiled-too-big", "too-many-pixels", "tile-too-small",
        "tile-too-big", "too-many-tiles", "tiles-missing"])
def test_header_limits_are_checked_before_allocation(data, message):
  with pytest.raises(FormatError, match=message):
    Bitstream.from_bytes(data)


def test_limits_are_consistent():
  assert bitstream.MAX_UNTILED_PIXELS <= bitstream.MAX_PIXELS
  assert codec.TILE_SIZE ** 2 <= bitstream.MAX_UNTILED_PIXELS
  assert codec.TILE_SIZE <= bitstream.MAX_TILE_SIDE
