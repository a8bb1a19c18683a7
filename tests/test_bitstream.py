"""The .tfci container: layout, validation, corruption."""

import struct
import zlib

import numpy as np
import pytest

from conftest import random_image
from tfcodec import codec
from tfcodec.io.bitstream import Bitstream, FormatError, MAGIC


def sample():
  return Bitstream("mbt2018-mean", 3, "mse", 512, 768, [[32, 48], [8, 12]],
                   [b"\x01\x02\x03", b"z" * 70], weights_id=0xDEADBEEF)


def test_round_trip_and_layout():
  stream = sample()
  data = stream.to_bytes()
  assert data[:4] == MAGIC and data[4] == 3
  assert Bitstream.from_bytes(data) == stream
  # header: magic 4, version 1 byte, name 1+12, quality 1, metric 1,
  # weights id 4, H 4, W 4, shapes 1 + 2*(1+8), strings 1 + (4+3) + (4+70),
  # crc 4
  assert len(data) == 4 + 1 + 13 + 1 + 1 + 4 + 8 + 1 + 18 + 1 + 7 + 74 + 4
  assert data[20:24] == struct.pack(">I", stream.weights_id)
  assert struct.unpack(">I", data[-4:])[0] == zlib.crc32(data[:-4])


@pytest.mark.parametrize("position", [0, 5, 20, 40, 60, -1])
def test_flipped_byte_is_a_clear_error(position):
  data = bytearray(sample().to_bytes())
  data[position] ^= 0x40
  with pytest.raises(FormatError):
    Bitstream.from_bytes(bytes(data))


@pytest.mark.parametrize("length", [0, 3, 4, 10, 50, -1])
def test_truncated_file_is_a_clear_error(length):
  data = sample().to_bytes()
  with pytest.raises(FormatError):
    Bitstream.from_bytes(data[:length])


def test_newer_version_is_refused():
  data = bytearray(sample().to_bytes())
  data[4] = 5  # versions 3 (untiled) and 4 (tiled) exist
  body = bytes(data[:-4])
  data = body + struct.pack(">I", zlib.crc32(body))
  with pytest.raises(FormatError, match="version 5 is not supported"):
    Bitstream.from_bytes(data)


@pytest.mark.parametrize("version", [1, 2])
def test_legacy_versions_are_refused_with_a_re_encode_hint(version):
  # Same layout, but their Gaussians were coded with truncated scale indexes:
  # decoding them with today's rounded indexes would give a wrong image.
  data = bytearray(sample().to_bytes())
  assert data[4] == 3
  data[4] = version
  body = bytes(data[:-4])
  data = body + struct.pack(">I", zlib.crc32(body))
  with pytest.raises(FormatError, match=f"version {version} was written by "
                     "tfcodec 0.1.x.*re-encode"):
    Bitstream.from_bytes(data)


def test_decoder_rejects_inconsistent_or_damaged_files(tiny_models):
  model = tiny_models["mbt2018-mean"]
  image = random_image(64, 64)
  stream = Bitstream.from_bytes(codec.encode_image(model, image, 1))
  # Latent shapes that do not match the image size.
  bad = Bitstream(**{**stream.__dict__, "shapes": [[9, 9], [1, 1]]})
  with pytest.raises(FormatError, match="latent shapes"):
    codec.decode_bytes(bad.to_bytes(), model=model)
  # Coded with other weights under the same name (a retrained model): the
  # decoder refuses instead of decoding a wrong image.
  assert stream.weights_id == model.weights_id
  bad = Bitstream(**{**stream.__dict__,
                     "weights_id": stream.weights_id ^ 0x80000000})
  with pytest.raises(FormatError, match="other mbt2018-mean weights"):
    codec.decode_bytes(bad.to_bytes(), model=model)
  # Unknown model name.
  bad = Bitstream(**{**stream.__dict__, "model": "not-a-model"})
  with pytest.raises(FormatError, match="not known"):
    codec.decode_bytes(bad.to_bytes())
  # Damaged payload with a valid CRC (re-packed): mbt2018-mean's strings are
  # decoded in bounded time and re-encoded (entropy.guard), so this is an error.
  damaged = [bytes(b ^ 0xFF for b in s) for s in stream.strings]
  bad = Bitstream(**{**stream.__dict__, "strings": damaged})
  with pytest.raises(FormatError, match="entropy-coded string is damaged"):
    codec.decode_bytes(bad.to_bytes(), model=model)
