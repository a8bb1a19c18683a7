"""SavedModel export: the in-graph .tfci container and the exported codec.

The central check: the shipped default model, exported by `tfcodec export`,
loaded in a Python process that cannot import tfcodec, produces the same bytes
and the same images as the `tfcodec` command line (which calls
codec.encode_image / decode_bytes, like encoder.py and decoder.py).
"""

import functools
import os
import random
import struct
import subprocess
import sys
import sysconfig
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import KODAK, ROOT, assert_exports_like_the_library, random_image
from tfcodec import cli, codec, export, zoo
from tfcodec.io import graph_bitstream
from tfcodec.io.bitstream import Bitstream, FormatError
from tfcodec.models import MODELS

CLIENT = os.path.join(ROOT, "tests", "savedmodel_client.py")


# -- the container in the graph ------------------------------------------------

@tf.function(input_signature=[tf.TensorSpec([], tf.string)])
def graph_crc32(data):
  return graph_bitstream.crc32(data)


def test_graph_crc32_equals_zlib_at_every_chunk_boundary():
  rng = random.Random(7)
  lengths = list(range(0, 40)) + [255, 256, 257, 4095, 4096, 20_000, 65_537]
  for length in lengths:
    data = rng.randbytes(length)
    assert int(graph_crc32(tf.constant(data))) == zlib.crc32(data), length
  # All-ones and all-zeros data exercise every table entry's extremes.
  for data in (b"\xff" * 1000, b"\x00" * 1000):
    assert int(graph_crc32(tf.constant(data))) == zlib.crc32(data)


def _graph_encode(stream):
  @tf.function
  def encode(height, width, strings):
    return graph_bitstream.encode(stream.model, stream.quality, stream.metric,
                                  height, width, strings, stream.weights_id)
  return encode(tf.constant(stream.height), tf.constant(stream.width),
                [tf.constant(s) for s in stream.strings]).numpy()


@functools.lru_cache(maxsize=None)
def _decoder(model, quality, metric, num_strings, weights_id):
  """The graph parser for one set of expectations, traced once."""
  @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
  def decode(data):
    return graph_bitstream.decode(data, model, quality, metric, num_strings,
                                  weights_id=weights_id)[:3]
  return decode


def _graph_decode(stream, data):
  decode = _decoder(stream.model, stream.quality, stream.metric,
                    len(stream.strings), stream.weights_id)
  height, width, strings = decode(tf.constant(data))
  return Bitstream(stream.model, stream.quality, stream.metric, int(height),
                   int(width), [s.numpy() for s in strings],
                   weights_id=stream.weights_id)


CASES = [
    # (model, quality, metric, height, width, string lengths)
    ("mbt2018-mean", 3, "mse", 37, 53, [0, 0]),
    ("mbt2018-mean", 8, "ms-ssim", 1, 1, [1, 1]),
    ("bmshj2018-hyperprior", 1, "mse", 512, 768, [20_000, 37]),
    ("bmshj2018-factorized", 5, "mse", 65_536, 3, [70_001]),
    # A model without an id is written by name (0, length, name).
    ("someone-elses-codec", 2, "mse", 9, 65_536, [5, 6, 7]),
]


@pytest.mark.parametrize("model,quality,metric,height,width,lengths", CASES)
def test_graph_container_is_byte_identical_to_python(model, quality, metric,
                                                     height, width, lengths):
  rng = random.Random(height * 31 + width)
  stream = Bitstream(model, quality, metric, height, width,
                     [rng.randbytes(n) for n in lengths],
                     weights_id=rng.randrange(1 << 32))
  data = stream.to_bytes()
  assert _graph_encode(stream) == data
  assert _graph_decode(stream, data) == stream


def _repacked(data):
  """Same body, CRC recomputed: the damage is past the CRC check."""
  body = bytes(data[:-4])
  return body + struct.pack(">I", zlib.crc32(body))


def test_graph_decode_names_the_problem():
  stream = Bitstream("mbt2018-mean", 3, "mse", 64, 64, [b"abcdef", b"xyz"],
                     weights_id=0x1234abcd)
  data = stream.to_bytes()
  flipped = bytearray(data)
  flipped[20] ^= 0x08
  # Files no reader accepts: the Python reader refuses them too.
  invalid = {
      "too short": data[:5],
      "bad magic": b"TFCX" + data[4:],
      "version not supported": _repacked(data[:4] + b"\x02" + data[5:]),
      "CRC32 mismatch": bytes(flipped),
      "truncated file": _repacked(data[:-4 - 4]),
      "unexpected bytes": _repacked(data[:-4] + b"!!" + data[-4:]),
  }
  # Valid containers, but not for the model the graph was built for.
  foreign = {
      "another model": {"model": "mbt2018-mean-vr"},
      "model field bytes": {"model": "mbt2018-meat"},
      "another quality": {"quality": 4},
      "another metric": {"metric": "ms-ssim"},
      "other mbt2018-mean weights": {"weights_id": 0x1234abce},
      "expected 2 strings": {"strings": [b"a"]},
  }
  for expected, bad in invalid.items():
    with pytest.raises(FormatError):
      Bitstream.from_bytes(bad)
    with pytest.raises(tf.errors.InvalidArgumentError, match=expected):
      _graph_decode(stream, bad)
  for expected, change in foreign.items():
    bad = Bitstream(**{**stream.__dict__, **change}).to_bytes()
    with pytest.raises(tf.errors.InvalidArgumentError, match=expected):
      _graph_decode(stream, bad)
  assert _graph_decode(stream, data) == stream


# -- exporting the other architectures (tiny, random weights) ----------------

@pytest.fixture(scope="module")
def tiny_bmshj2018(tiny_models):
  """Tiny random models of the architectures without shipped weights
  (mbt2018-mean is exported with its real weights further down), from the
  session's cached snapshots: freezing fresh ones cost ~4 minutes."""
  return {name: tiny_models[name] for name in (
      "bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean-vr")}


CONTEXT_MODELS = ("mbt2018", "cheng2020-gmm", "informer")
# Registered names whose graph is another name's at a different width: TCM's
# sizes differ only in their default N, so at tiny widths they are one graph.
SAME_GRAPH_AS = {"tcm-m": "tcm-s", "tcm-l": "tcm-s"}
# Registered names whose graph has no part the exported ones lack (each
# export costs ~30 s of make test): cheng2020-anchor's and -attn's layers are
# a subset of cheng2020-gmm's (residual, attention and sub-pixel blocks), and
# their Gaussian wavefront coder is mbt2018's.
COVERED_BY = {"cheng2020-anchor": ("cheng2020-gmm", "mbt2018"),
              "cheng2020-attn": ("cheng2020-gmm", "mbt2018")}
# Exported in another test file: tiny TCM's coder takes ~2 minutes to trace,
# and tests/test_tcm.py's round trips have traced it already in that worker
# (pytest-xdist keeps a file on one worker).
EXPORTED_ELSEWHERE = {"tcm-s": "tests/test_tcm.py::test_exports_like_the_library"}


@pytest.fixture(scope="module")
def tiny_context_models(tiny_models):
  """The context models decode in a tf.while_loop (wavefronts), in the graph."""
  return {name: tiny_models[name] for name in CONTEXT_MODELS}


def test_every_registered_model_is_exported_by_some_test(tiny_bmshj2018,
                                                        tiny_context_models):
  """No model needs a Python-driven decoding loop, so all of them export
  (TCM's five slices are a fixed, unrolled sequence of network steps)."""
  assert set(MODELS) == (set(tiny_bmshj2018) | set(tiny_context_models)
                         | {"mbt2018-mean"} | set(SAME_GRAPH_AS)
                         | set(COVERED_BY) | set(EXPORTED_ELSEWHERE))
  for name, test in EXPORTED_ELSEWHERE.items():
    path, function = test.split("::")
    with open(os.path.join(ROOT, path)) as source:
      assert f"def {function}(" in source.read(), (name, test)
  for name, same in SAME_GRAPH_AS.items():
    assert MODELS[name].__bases__ == MODELS[same].__bases__
  for name, (layers_of, _) in COVERED_BY.items():
    assert MODELS[name].__bases__ == MODELS[layers_of].__bases__


# make test exports one model per coding loop (hyperprior; Gaussian and
# mixture wavefronts); the others run under make test-all.
@pytest.mark.parametrize("name", [
    pytest.param("bmshj2018-factorized", marks=pytest.mark.slow),
    "bmshj2018-hyperprior",
    pytest.param("mbt2018-mean-vr", marks=pytest.mark.slow),
    "mbt2018", "cheng2020-gmm",
    pytest.param("informer", marks=pytest.mark.slow)])
def test_registered_model_exports(name, tiny_bmshj2018, tiny_context_models,
                                  tmp_path):
  model = {**tiny_bmshj2018, **tiny_context_models}[name]
  assert_exports_like_the_library(model, tmp_path / name, random_image(
      37, 53, seed=5))


def test_exported_codec_rejects_bad_input_with_clear_errors(tiny_bmshj2018):
  model = tiny_bmshj2018["bmshj2018-hyperprior"]
  module = export.build_module(model, 1)
  data = codec.encode_image(model, random_image(40, 70), 1)
  stream = Bitstream.from_bytes(data)
  with pytest.raises(tf.errors.InvalidArgumentError, match="CRC32 mismatch"):
    module.decompress(tf.constant(data[:-1] + bytes([data[-1] ^ 1])))
  bad = Bitstream(**{**stream.__dict__, "strings": stream.strings[:1]})
  with pytest.raises(tf.errors.InvalidArgumentError, match="expected 2 strings"):
    module.decompress(tf.constant(bad.to_bytes()))
  other = Bitstream(**{**stream.__dict__, "model": "mbt2018-mean"})
  with pytest.raises(tf.errors.InvalidArgumentError, match="another model"):
    module.decompress(tf.constant(other.to_bytes()))
  with pytest.raises(tf.errors.InvalidArgumentError, match="image size"):
    module.compress(tf.zeros([0, 5, 3], tf.uint8))


# -- the shipped model, loaded without tfcodec ---------------------------------

@pytest.fixture(scope="module")
def shipped_export(tmp_path_factory):
  out_dir = tmp_path_factory.mktemp("export") / "mbt2018-mean-q3"
  assert (zoo.DEFAULT_MODEL, "mse", 3) in zoo.available_weights()
  status = export.main(["--model", zoo.DEFAULT_MODEL, "--quality", "3",
                        str(out_dir)])
  assert status == 0
  return out_dir


def _write_images(folder):
  kodak = np.asarray(Image.open(os.path.join(KODAK, "kodim23.png")).convert("RGB"))
  images = {"kodim23_crop": kodak[200:328, 300:492],  # 128 x 192
            "odd": kodak[101:138, 407:460]}  # 37 x 53
  assert images["kodim23_crop"].shape == (128, 192, 3)
  assert images["odd"].shape == (37, 53, 3)
  for stem, image in images.items():
    Image.fromarray(image).save(folder / f"{stem}.png")
  return images


def test_savedmodel_without_tfcodec_matches_the_cli(shipped_export, tmp_path):
  images = _write_images(tmp_path)
  for stem in images:
    assert cli.main(["compress", str(tmp_path / f"{stem}.png")]) == 0
    assert cli.main(["decompress", str(tmp_path / f"{stem}.tfci"),
                     str(tmp_path / f"{stem}.cli.png")]) == 0

  site_dirs = sorted({sysconfig.get_paths()["purelib"],
                      sysconfig.get_paths()["platlib"]})
  env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
  result = subprocess.run(
      [sys.executable, "-I", "-S", CLIENT, str(shipped_export), str(tmp_path),
       *site_dirs], cwd=tmp_path, env=env, capture_output=True, text=True,
      timeout=600)
  assert result.returncode == 0, result.stdout + result.stderr
  assert "tfcodec imported: no" in result.stdout

  for stem, image in images.items():
    cli_bytes = (tmp_path / f"{stem}.tfci").read_bytes()
    sm_bytes = (tmp_path / f"{stem}.sm.tfci").read_bytes()
    assert sm_bytes == cli_bytes, stem
    header = Bitstream.from_bytes(sm_bytes)
    assert (header.model, header.quality, header.height, header.width) == (
        zoo.DEFAULT_MODEL, 3, image.shape[0], image.shape[1])
    cli_image = np.asarray(Image.open(tmp_path / f"{stem}.cli.png"))
    sm_image = np.asarray(Image.open(tmp_path / f"{stem}.sm.png"))
    assert sm_image.shape == image.shape
    np.testing.assert_array_equal(sm_image, cli_image)
    print(f"{stem} {image.shape[1]}x{image.shape[0]}: {len(sm_bytes)} bytes, "
          "identical to the CLI's; decoded image identical")


def test_saved_model_cli_lists_both_signatures(shipped_export):
  """`saved_model_cli show --all`, run after importing tensorflow_compression
  (the plain command prints the same signatures, then fails on the
  'Concrete Functions' section because it cannot know tfc's custom ops)."""
  code = ("import sys, tensorflow_compression; "
          "from tensorflow.python.tools import saved_model_cli; "
          "sys.exit(saved_model_cli.main())")
  result = subprocess.run(
      [sys.executable, "-c", code, "show", "--dir", str(shipped_export), "--all"],
      capture_output=True, text=True, timeout=300,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  assert result.returncode == 0, result.stderr
  text = result.stdout
  compress = text[text.index("signature_def['compress']"):]
  compress = compress[:compress.index("Method name")]
  assert "inputs['image']" in compress and "DT_UINT8" in compress
  assert "shape: (-1, -1, 3)" in compress
  assert "outputs['bitstream']" in compress and "DT_STRING" in compress
  decompress = text[text.index("signature_def['decompress']"):]
  decompress = decompress[:decompress.index("Method name")]
  assert "inputs['bitstream']" in decompress and "DT_STRING" in decompress
  assert "outputs['image']" in decompress and "shape: (-1, -1, 3)" in decompress
  assert "EntropyDecodeIndex" in text  # tfc's range decoder is in the graph
