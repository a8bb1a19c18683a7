"""bench/codec_speed.py --weights: a trained file's coded size, estimate and
PSNR, as used to check a checkpoint before it is shipped."""

import os
import re
import subprocess
import sys

from conftest import ROOT
from tfcodec import zoo


def test_codec_speed_reports_a_weight_file():
  path = zoo.weights_path("mbt2018-mean", 1, "mse")
  run = subprocess.run(
      [sys.executable, os.path.join(ROOT, "bench", "codec_speed.py"),
       f"--weights={path}", "--images=kodim23", "--stages"],
      capture_output=True, text=True, timeout=600)
  assert run.returncode == 0, run.stdout + run.stderr
  out = run.stdout
  assert "(kodim23)" in out and "mbt2018-mean q1, lambda 0.0018" in out
  assert "exact True" in out
  payload = float(re.search(r"payload ([\d.]+) bpp", out).group(1))
  ratio = float(re.search(r"file/estimated bits ([\d.]+)", out).group(1))
  psnr = float(re.search(r"PSNR ([\d.]+) dB", out).group(1))
  parts = {k: float(v) for k, v in re.findall(r"\b(y|z) ([\d.]+)\b",
                                               out.split("estimated bpp")[1])}
  assert set(parts) == {"y", "z"}
  # The printed pieces agree with each other: payload = ratio x estimate.
  assert abs(payload - ratio * (parts["y"] + parts["z"])) < 5e-4
  # A trained low-rate model: coded within 1% of its estimate, and far from
  # an untrained one's PSNR on this image.
  assert 0.99 < ratio < 1.01
  assert 0.08 < payload < 0.14 and 28. < psnr < 30.
  # --stages: the transforms' MACs at 768x512, by hand: g_a's four 5x5
  # stride-2 convolutions (3->128 at 384x256, 128->128 at 192x128 and 96x64,
  # 128->192 at 48x32) 14.47 G plus its three GDN 1x1s (128x128 at the
  # first three resolutions) 2.11 G; g_s mirrors them (transposed).
  stages = re.search(r"g_a ([\d.]+) s, rest of encode (-?[\d.]+) s; g_s "
                     r"([\d.]+) s, rest of decode (-?[\d.]+) s; MACs g_a "
                     r"([\d.]+) G, g_s ([\d.]+) G", out)
  assert stages, out
  assert float(stages.group(5)) == float(stages.group(6)) == 16.6
  assert float(stages.group(1)) > 0 and float(stages.group(3)) > 0
