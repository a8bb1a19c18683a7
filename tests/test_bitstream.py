"""The .tfci container: layout, validation, corruption."""

import struct
import zlib

import numpy as np
import pytest

from conftest import random_image
from tfcodec import codec
from tfcodec.io.bitstream import Bitstream, FormatError, MAGIC, MODEL_IDS


def sample():
  return Bitstream("mbt2018-mean", 3, "mse", 512, 768,
                   [b"\x01\x02\x03", b"z" * 70], weights_id=0xDEADBEEF)


def test_round_trip_and_layout():
  stream = sample()
  data = stream.to_bytes()
  assert data[:4] == MAGIC and data[4] == 7
  assert Bitstream.from_bytes(data) == stream
  # header: magic 4, version 1, model id 1, quality 1, metric 1, weights id 4,
  # H - 1 and W - 1 2 + 2, strings 1 + (4 + 3) + (4 + 70), crc 4
  assert len(data) == 4 + 1 + 1 + 1 + 1 + 4 + 4 + 1 + 7 + 74 + 4
  assert data[5] == MODEL_IDS["mbt2018-mean"] == 3
  assert data[8:12] == struct.pack(">I", stream.weights_id)
  assert data[12:16] == struct.pack(">HH", 511, 767)
  assert struct.unpack(">I", data[-4:])[0] == zlib.crc32(data[:-4])


def test_model_ids_are_unique_and_cover_the_registry():
  from tfcodec.models import MODELS
  assert len(set(MODEL_IDS.values())) == len(MODEL_IDS)
  assert 0 not in MODEL_IDS.values() and max(MODEL_IDS.values()) < 256
  assert set(MODELS) <= set(MODEL_IDS), "give a new model an id (FORMAT.md)"


def test_a_model_without_an_id_is_written_by_name():
  stream = Bitstream("my-own-codec", 2, "ms-ssim", 1, 65536, [b"abc"])
  data = stream.to_bytes()
  assert data[5:8 + len("my-own-codec")] == b"\x00\x0cmy-own-codec\x02"
  assert Bitstream.from_bytes(data) == stream
  # The extreme sizes survive the minus-one coding.
  assert data[-16:-12] == struct.pack(">HH", 0, 65535)


def test_unknown_model_id_is_refused():
  data = bytearray(sample().to_bytes())
  data[5] = 200
  with pytest.raises(FormatError, match="model id 200 is not known"):
    Bitstream.from_bytes(_with_crc(data[:-4]))


def _with_crc(body):
  body = bytes(body)
  return body + struct.pack(">I", zlib.crc32(body))


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
  data[4] = 9  # versions 7 (untiled) and 8 (tiled) exist
  with pytest.raises(FormatError, match="version 9 is not supported"):
    Bitstream.from_bytes(_with_crc(data[:-4]))


@pytest.mark.parametrize("version,writer", [(1, "0.1.x"), (2, "0.1.x"),
                                            (3, "0.2.x"), (4, "0.2.x"),
                                            (5, "0.3.x"), (6, "0.3.x")])
def test_legacy_versions_are_refused_with_a_re_encode_hint(version, writer):
  # 1 and 2 coded Gaussians with truncated scale indexes (decoding them with
  # today's rounded indexes would give a wrong image); 3 and 4 had the long
  # header; 5 and 6 computed context models' entropy parameters with other
  # arithmetic. Refused by version, before the rest is parsed.
  data = bytearray(sample().to_bytes())
  assert data[4] == 7
  data[4] = version
  with pytest.raises(FormatError, match=f"version {version} was written by "
                     f"tfcodec {writer}.*re-encode"):
    Bitstream.from_bytes(_with_crc(data[:-4]))


def test_decoder_rejects_inconsistent_or_damaged_files(tiny_models):
  model = tiny_models["mbt2018-mean"]
  image = random_image(64, 64)
  stream = Bitstream.from_bytes(codec.encode_image(model, image, 1))
  # More strings than the model sends.
  bad = Bitstream(**{**stream.__dict__, "strings": stream.strings + [b"x"]})
  with pytest.raises(FormatError, match="3 strings, mbt2018-mean needs 2"):
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


def test_encoder_refuses_latents_the_decoder_would_not_derive(tiny_models,
                                                              monkeypatch):
  # Shapes are not stored, so a model whose declared geometry disagrees with
  # what it computes must fail at encoding, not write an undecodable file.
  model = tiny_models["mbt2018-mean"]
  monkeypatch.setattr(type(model), "latent_factors", {"y": 16, "z": 32})
  with pytest.raises(RuntimeError, match="latent_factors say"):
    codec.encode_image(model, random_image(64, 64), 1)
