"""The bad-inputs table (README "Reliability"): every case gets one clear line
naming the file and the problem, the other files are still processed, nothing
partial is written, and the exit status is non-zero.

The folder loops run in-process with tiny random models (weights-independent);
the exit-status cases that fail before a model is loaded run the real CLIs.
"""

import io
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, random_image
from tfcodec import codec
from tfcodec.io import bitstream
from tfcodec.io.bitstream import Bitstream

MODEL = "mbt2018-mean"


def _png_bytes(image, **kwargs):
  buffer = io.BytesIO()
  image.save(buffer, **kwargs)
  return buffer.getvalue()


def _image_folder(folder):
  """Writes every bad image case, and the accepted odd ones, into `folder`.

  Returns {file name: words the error must contain, or None if accepted}.
  """
  rgb = Image.fromarray(random_image(24, 40, seed=3))
  png, jpeg = _png_bytes(rgb, format="PNG"), _png_bytes(rgb, format="JPEG")
  cases = {
      "empty.png": (b"", ["cannot read image", "empty file"]),
      "not_an_image.jpg": (b"hello, I am text\n" * 20, ["cannot read image"]),
      "truncated.png": (png[:len(png) // 2], ["cannot read image"]),
      "truncated.jpg": (jpeg[:len(jpeg) // 2], ["cannot read image"]),
      "deep16.png": (_png_bytes(Image.fromarray(
          np.full((8, 8), 40000, np.uint16)), format="PNG"),
                     ["unsupported image mode"]),
      "cmyk.jpg": (_png_bytes(Image.new("CMYK", (8, 8)), format="JPEG"),
                   ["unsupported image mode", "CMYK"]),
      "palette.png": (_png_bytes(rgb.convert("P"), format="PNG"), None),
      "rgba.png": (_png_bytes(rgb.convert("RGBA"), format="PNG"), None),
      "gray.png": (_png_bytes(rgb.convert("L"), format="PNG"), None),
      "one_pixel.png": (_png_bytes(Image.new("RGB", (1, 1), (9, 99, 199)),
                                   format="PNG"), None),
      "good.png": (png, None),
  }
  for name, (content, _) in cases.items():
    (folder / name).write_bytes(content)
  return {name: words for name, (_, words) in cases.items()}


def _error_lines(text):
  return {line.split(":")[1].strip(): line for line in text.splitlines()
          if line.startswith("error: ")}


def test_bad_images_each_get_one_clear_line(tmp_path, tiny_models):
  images, bits = tmp_path / "images", tmp_path / "bits"
  images.mkdir()
  expected = _image_folder(images)
  out = io.StringIO()
  results = codec.encode_folder(str(images), str(bits), MODEL, 1, out=out,
                                model=tiny_models[MODEL])
  errors = _error_lines(out.getvalue())
  for name, words in expected.items():
    if words is None:
      assert name not in errors, errors[name]
      continue
    line = errors[name]
    assert len(line.splitlines()) == 1
    for word in words:
      assert word in line, line
  accepted = sorted(os.path.splitext(n)[0] + ".tfci"
                    for n, w in expected.items() if w is None)
  # Only the accepted images were written, and no temp file is left behind.
  assert sorted(os.listdir(bits)) == accepted
  assert sum(not r.ok for r in results) == sum(
      w is not None for w in expected.values())
  for mode in ("P", "RGBA", "L"):
    assert f"{mode} image" in out.getvalue()  # the conversion warning


def _with_crc(body):
  return body + struct.pack(">I", zlib.crc32(body))


def test_bad_bitstreams_each_get_one_clear_line(tmp_path, tiny_models):
  model = tiny_models[MODEL]
  bits, recon = tmp_path / "bits", tmp_path / "recon"
  bits.mkdir()
  good = codec.encode_image(model, random_image(20, 30, seed=4), 1)
  newer = bytearray(good[:-4])
  newer[4] = 9
  stream = Bitstream.from_bytes(good)
  unknown = Bitstream(**{**stream.__dict__, "model": "not-in-registry"})
  cases = {
      "zero.tfci": (b"", "too short"),
      "text.tfci": (b"this is not a bitstream at all", "bad magic"),
      "newer.tfci": (_with_crc(bytes(newer)), "version 9 is not supported"),
      "unknown_model.tfci": (unknown.to_bytes(),
                             "model 'not-in-registry' is not known"),
      "truncated.tfci": (good[:len(good) - 7], "CRC32 mismatch"),
      "huge.tfci": (_huge_header(), "exceeds the maximum"),
      "good.tfci": (good, None),
  }
  for name, (content, _) in cases.items():
    (bits / name).write_bytes(content)
  out = io.StringIO()
  results = codec.decode_folder(str(bits), str(recon), out=out,
                                loader=lambda name, *_: tiny_models[name])
  errors = _error_lines(out.getvalue())
  for name, (_, words) in cases.items():
    if words is None:
      assert name not in errors
    else:
      assert words in errors[name], errors[name]
  assert os.listdir(recon) == ["good.png"]
  assert [r.ok for r in results].count(True) == 1


def _huge_header():
  """A tiled header claiming 65536 x 65536 pixels (over MAX_PIXELS), CRC valid."""
  model_id = bitstream.MODEL_IDS[MODEL]
  body = b"TFCI" + struct.pack(">BBBBIHHH", bitstream.VERSION_TILED, model_id,
                               1, 0, 0, 65535, 65535,
                               1024)
  return _with_crc(body)


def _run(script, *args):
  return subprocess.run([sys.executable, os.path.join(ROOT, script), *args],
                        capture_output=True, text=True, timeout=300)


def test_cli_unwritable_output_and_unknown_model(tmp_path):
  images = tmp_path / "images"
  images.mkdir()
  Image.fromarray(random_image(16, 16)).save(images / "a.png")
  blocker = tmp_path / "a_file"
  blocker.write_text("a regular file where a folder is needed")
  # Root can write anywhere chmod forbids, so make the parent a regular file.
  enc = _run("encoder.py", f"--input_dir={images}",
             f"--output_dir={blocker / 'out'}")
  assert enc.returncode != 0
  assert "Traceback" not in enc.stderr + enc.stdout
  assert f"cannot create output directory '{blocker / 'out'}'" in enc.stderr
  enc = _run("encoder.py", f"--input_dir={images}",
             f"--output_dir={tmp_path / 'bits'}", "--model=no-such-model")
  assert enc.returncode != 0
  assert "unknown model 'no-such-model'" in enc.stderr
  assert "Traceback" not in enc.stderr + enc.stdout
  dec = _run("decoder.py", f"--input_dir={images}",
             f"--output_dir={blocker / 'out'}")
  assert dec.returncode != 0 and "cannot create output directory" in dec.stderr
