"""The `tfcodec` command: info, compress/decompress, --target_bpp, models,
messages and --help, with the shipped weights."""

import json
import os
import re
import shutil
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import KODAK, ROOT
from tfcodec import cli, codec, zoo
from tfcodec.io.bitstream import Bitstream
from tfcodec.models import MODELS, qualities


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
  """A Kodak crop and the .tfci file encoder.py (defaults) made of it."""
  folder = tmp_path_factory.mktemp("cli")
  (folder / "images").mkdir()
  kodak = np.asarray(Image.open(os.path.join(KODAK, "kodim23.png")).convert("RGB"))
  image = kodak[150:246, 250:410]  # 96 x 160
  Image.fromarray(image).save(folder / "images" / "k.png")
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, "encoder.py"),
       f"--input_dir={folder / 'images'}", f"--output_dir={folder / 'bits'}"],
      capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout + result.stderr
  return folder, image, folder / "bits" / "k.tfci"


def run(capsys, *argv):
  status = cli.main(list(argv))
  captured = capsys.readouterr()
  return status, captured.out, captured.err


def test_info_reports_the_header_of_an_encoder_py_file(encoded, capsys):
  _, image, path = encoded
  data = path.read_bytes()
  stream = Bitstream.from_bytes(data)
  status, out, _ = run(capsys, "info", str(path))
  assert status == 0
  height, width = image.shape[:2]
  bpp = 8 * len(data) / (height * width)
  y, z = stream.strings
  expected = [
      f"{path}: {len(data)} bytes",
      f"  model:        {zoo.DEFAULT_MODEL} (weights installed)",
      "  quality:      3",
      "  metric:       mse",
      f"  weights id:   {stream.weights_id:08x}",
      f"  size:         160x96 (width x height), {bpp:.4f} bpp",
      "  latents:      y 8x12, z 2x3",
      f"  string bytes: y {len(y)}, z {len(z)}  (header and CRC: "
      f"{len(data) - len(y) - len(z)})",
      f"  CRC32:        ok (0x{zlib.crc32(data[:-4]):08x})",
  ]
  assert out.splitlines() == expected


def test_info_reports_crc_failure_on_a_corrupted_file(encoded, tmp_path, capsys):
  _, _, path = encoded
  data = bytearray(path.read_bytes())
  stored = int.from_bytes(data[-4:], "big")
  data[-20] ^= 0x01  # inside the z string: the header still parses
  bad = tmp_path / "bad.tfci"
  bad.write_bytes(bytes(data))
  status, out, _ = run(capsys, "info", str(bad))
  assert status == 1
  computed = zlib.crc32(bytes(data[:-4]))
  assert (f"  CRC32:        FAILED: stored 0x{stored:08x}, computed "
          f"0x{computed:08x}") in out
  assert "  model:        mbt2018-mean" in out  # fields are still shown
  # A truncated file: the CRC fails and the header cannot be read to the end.
  bad.write_bytes(bytes(path.read_bytes()[:-30]))
  status, out, _ = run(capsys, "info", str(bad))
  assert status == 1
  assert "error: truncated file" in out and "CRC32:        FAILED" in out
  # decompress refuses it with the same diagnosis.
  status, _, err = run(capsys, "decompress", str(bad), str(tmp_path / "x.png"))
  assert status == 1 and "CRC32 mismatch" in err
  assert not (tmp_path / "x.png").exists()


def test_compress_matches_encoder_py_and_decompress_round_trips(
    encoded, tmp_path, capsys):
  folder, image, path = encoded
  out_file = tmp_path / "k.tfci"
  status, out, _ = run(capsys, "compress", str(folder / "images" / "k.png"),
                       str(out_file))
  assert status == 0 and f"({zoo.DEFAULT_MODEL} mse q3)" in out
  assert out_file.read_bytes() == path.read_bytes()
  status, out, _ = run(capsys, "decompress", str(out_file), "--reference",
                       str(folder / "images" / "k.png"))
  assert status == 0
  decoded = np.asarray(Image.open(tmp_path / "k.png"))
  np.testing.assert_array_equal(decoded, codec.decode_bytes(path.read_bytes()))
  psnr = float(re.search(r"PSNR ([0-9.]+) dB", out).group(1))
  expected = 10 * np.log10(255 ** 2 / np.mean(
      (decoded.astype(float) - image.astype(float)) ** 2))
  assert abs(psnr - expected) < 0.01
  # Outputs are never overwritten silently.
  status, _, err = run(capsys, "decompress", str(out_file))
  assert status == 2 and "already exists" in err and "-f" in err


def test_target_bpp_picks_the_closest_shipped_quality(encoded, tmp_path, capsys):
  folder, image, _ = encoded
  source = str(folder / "images" / "k.png")
  qualities = cli.shipped_qualities(zoo.DEFAULT_MODEL, "mse")
  _, _, tried = cli.pick_quality_for_bpp(zoo.DEFAULT_MODEL, "mse", image, 1.)
  assert sorted(tried) == qualities
  for quality, bpp in tried.items():
    out_file = tmp_path / f"q{quality}.tfci"
    status, out, _ = run(capsys, "compress", source, str(out_file),
                         "--target_bpp", f"{bpp * 1.01:.6f}")
    assert status == 0
    assert f"chose quality {quality}" in out
    assert Bitstream.from_bytes(out_file.read_bytes()).quality == quality
    assert abs(8 * out_file.stat().st_size / (96 * 160) - bpp) < 1e-9
  status, _, err = run(capsys, "compress", source, str(tmp_path / "y.tfci"),
                       "--target_bpp", "0.5", "--quality", "3")
  assert status == 2 and "either --quality or --target_bpp" in err


def test_missing_weights_and_unknown_models_say_what_exists(encoded, tmp_path,
                                                            capsys):
  folder, _, _ = encoded
  source = str(folder / "images" / "k.png")
  shipped = [q for n, m, q in zoo.available_weights() if n == "mbt2018-mean"]
  missing = max(set(range(1, 9)) - set(shipped))
  status, _, err = run(capsys, "compress", source, str(tmp_path / "a.tfci"),
                       "--model", "mbt2018-mean", "--quality", str(missing))
  assert status == 2
  assert f"no shipped weights for mbt2018-mean (mse) at quality {missing}" in err
  for quality in shipped:
    assert f"mse q{quality}" in err
  # A variable-rate file need not hold every rung of its network: the
  # MS-SSIM file (q1-q4) exists, but has no q0.
  vr_ms_ssim = [q for n, m, q in zoo.available_weights()
                if (n, m) == ("mbt2018-mean-vr", "ms-ssim")]
  if vr_ms_ssim and 0 not in vr_ms_ssim:
    status, _, err = run(capsys, "compress", source, str(tmp_path / "b.tfci"),
                         "--model", "mbt2018-mean-vr", "--metric", "ms-ssim",
                         "--quality", "0")
    assert status == 2
    assert ("no shipped weights for mbt2018-mean-vr (ms-ssim) at quality 0"
            in err)
    assert not (tmp_path / "b.tfci").exists()
  status, _, err = run(capsys, "compress", source, str(tmp_path / "a.tfci"),
                       "--model", "nope")
  assert status == 2
  assert ("unknown model 'nope'; registered models: "
          + ", ".join(sorted(MODELS))) in err
  unshipped = sorted(set(MODELS) - {n for n, _, _ in zoo.available_weights()})
  status, _, err = run(capsys, "export", "--model", unshipped[0],
                       str(tmp_path / "sm"))
  assert status == 2 and f"No weights are shipped for {unshipped[0]}" in err
  assert not (tmp_path / "sm").exists()


def test_models_lists_a_shipped_files_own_width(tmp_path, capsys,
                                                monkeypatch):
  """A file narrower than the quality table (mbt2018 warm-started at N=128)
  is listed with the N and M it holds, and the table's are named."""
  from tfcodec.models import create_model
  monkeypatch.setattr(zoo, "WEIGHTS_DIR", str(tmp_path))
  model = create_model("mbt2018-mean", quality=2, N=8, M=16)
  zoo.save_weights(model, zoo.weights_path("mbt2018-mean", 2), 2)
  status, out, _ = run(capsys, "models")
  assert status == 0
  section = out.split("\nmbt2018-mean: ")[1].split("\n\n")[0]
  q2 = [line for line in section.splitlines()
        if re.match(r"^\s+2\s", line)][0]
  assert re.match(r"^\s+2\s+8\s+16\s", q2), q2
  assert "shipped file N=8, M=16; the table's N=128, M=192" in q2
  params = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
  assert f"{params / 1e6:.2f}M" in q2


def test_models_lists_registry_weights_parameters_and_measurements(
    tmp_path, capsys):
  status, out, _ = run(capsys, "models")
  assert status == 0
  for name in MODELS:
    assert f"\n{name}: " in out
  rows = [line for line in out.splitlines()
          if re.match(r"^\s+\d+\s+\d+\s+\d+", line)]
  # One per quality and model.
  assert len(rows) == sum(len(qualities(name)) for name in MODELS)
  for name, metric, quality in zoo.available_weights():
    path = zoo.weights_path(name, quality, metric)
    with np.load(path) as data:
      count = sum(data[k].size for k in data.files
                  if not k.startswith("__"))  # metadata, coding tables
    assert cli.parameter_count(name, quality, metric) == count
  section = out.split("\nmbt2018-mean: ")[1].split("\n\n")[0]
  q3 = [line for line in section.splitlines()
        if line.startswith("   3  128  192")][0]
  assert "mse" in q3 and "7.02M" in q3
  # A result in the layout tfcodec.eval writes is matched by model, metric
  # and quality ("setting").
  results = tmp_path / "results"
  results.mkdir()
  (results / "tfcodec-mbt2018-mean-mse.json").write_text(json.dumps({
      "name": "tfcodec mbt2018-mean (mse)", "model": "mbt2018-mean",
      "metric": "mse", "results": {"setting": [3], "bpp": [0.3125],
                                   "psnr-rgb": [29.876]}}))
  (results / "jpeg.json").write_text(json.dumps({
      "name": "JPEG", "results": {"bpp": [1.0], "psnr-rgb": [30.0]}}))
  assert cli.measured_points(str(results / "*.json")) == {
      ("mbt2018-mean", "mse", 3): (0.3125, 29.876)}
  report = cli.models_report(str(results / "*.json"))
  section = report[report.index(next(
      l for l in report if l.startswith("mbt2018-mean: "))):]
  q3 = [line for line in section if line.startswith("   3  128  192")][0]
  assert q3.endswith("mse: 0.3125 bpp, 29.88 dB")


SUBCOMMANDS = ("compress", "decompress", "info", "models", "export")


def test_every_subcommand_has_help(capsys, monkeypatch):
  for command in SUBCOMMANDS:
    with pytest.raises(SystemExit) as exit_info:
      cli.main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: tfcodec {command}")
    # A description in full sentences, not just the flags.
    description = out.split("\n\n")[1]
    assert description.endswith(".") and len(description.split()) >= 15
  # eval hands --help to tfcodec.eval; without that package it explains.
  monkeypatch.setitem(sys.modules, "tfcodec.eval", None)
  status, out, _ = run(capsys, "eval", "--help")
  assert status == 2
  assert "Rate-distortion evaluation" in out and "not available" in out


def test_console_script_and_module_entry_points():
  script = os.path.join(os.path.dirname(sys.executable), "tfcodec")
  commands = [[sys.executable, "-m", "tfcodec", "--help"],
              [sys.executable, "-m", "tfcodec.export", "--help"]]
  if shutil.which(script):
    commands.append([script, "--help"])
  for command in commands:
    result = subprocess.run(command, capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
  if not shutil.which(script):
    pytest.skip("the tfcodec console script is not installed (pip install -e .)")


def test_compress_refine_steps_codes_refined_latents(
    encoded, tmp_path, capsys):
  folder, image, plain = encoded
  source = str(folder / "images" / "k.png")
  refined = tmp_path / "r.tfci"
  status, out, err = run(capsys, "compress", source, str(refined),
                         "--refine_steps", "5")
  assert status == 0, err
  data = refined.read_bytes()
  assert data != plain.read_bytes()
  decoded = codec.decode_bytes(data)
  assert decoded.shape == image.shape
  status, _, err = run(capsys, "compress", source, str(tmp_path / "m.tfci"),
                       "--model", "mbt2018", "--refine_steps", "5")
  assert status == 2 and "does not support --refine_steps" in err
  status, _, err = run(capsys, "compress", source, str(tmp_path / "n.tfci"),
                       "--refine_steps", "-1")
  assert status == 2 and "--refine_steps must be >= 0" in err
