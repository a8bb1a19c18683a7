"""tfcodec.eval: rates, metrics, BD-rate, result files, baselines, CLI.

Fast by design: tiny random models, small synthetic images, no Kodak sweeps.
Optional codecs and matplotlib are skipped (with the reason) when absent.
"""

import io
import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, random_image
from tfcodec import metrics
from tfcodec.eval import baselines, bdrate, published, quality, rddata, runner
from tfcodec.eval import results as rd
from tfcodec.eval import main as eval_main

ANCHORS = os.path.join(ROOT, "..", "shared", "anchors")


@pytest.fixture(scope="module")
def tiny_codec():
  """A ModelCodec whose 'shipped weights' are a tiny random mbt2018-mean
  (one model, not conftest's three: this file should run in seconds)."""
  import tensorflow as tf
  from conftest import TINY
  from tfcodec.models import create_model
  tf.random.set_seed(1)
  model = create_model("mbt2018-mean", **TINY)
  model.freeze()
  return runner.ModelCodec("mbt2018-mean", "mse", [3], loader=lambda *_: model)


# -- bpp counts every byte ---------------------------------------------------

def test_model_bpp_counts_every_byte_of_the_file(tiny_codec, tmp_path):
  codec = tiny_codec
  image = random_image(48, 80, seed=3)
  data, values = runner.measure_image(codec, image, 3)
  path = tmp_path / "x.tfci"
  path.write_bytes(data)
  # The file on disk, header and CRC included, is what is counted.
  assert values["bpp"] == 8 * os.path.getsize(path) / (48 * 80)
  from tfcodec.io.bitstream import Bitstream
  stream = Bitstream.from_bytes(data)
  payload = sum(len(s) for s in stream.strings)
  assert len(data) > payload  # so the header is in the rate, not just strings
  assert values["bpp"] > 8 * payload / (48 * 80)
  assert values["encoding_time"] > 0 and values["decoding_time"] > 0


def test_baseline_bpp_counts_every_byte_of_the_file():
  image = random_image(64, 96, seed=4)
  data, values = runner.measure_image(baselines.Jpeg(), image, 50)
  assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"  # whole JFIF file
  assert values["bpp"] == 8 * len(data) / (64 * 96)


# -- PSNR and MS-SSIM known values ----------------------------------------------

def test_psnr_known_values():
  image = np.full((32, 48, 3), 100, np.uint8)
  assert quality.psnr(image, image) == math.inf
  # Every sample off by one gray level: MSE = 1, PSNR = 20 log10(255).
  assert quality.psnr(image, image + 1) == pytest.approx(48.1308036, abs=1e-6)
  assert quality.psnr(image, image + 5) == pytest.approx(34.1514, abs=1e-4)
  half = image.copy()
  half[:16] += 2  # MSE = 2: 10 log10(255^2 / 2)
  assert quality.psnr(image, half) == pytest.approx(45.1205, abs=1e-4)


def test_ms_ssim_of_identical_images_is_one():
  image = random_image(192, 256, seed=5)
  assert quality.ms_ssim(image, image) == pytest.approx(1.0, abs=1e-12)
  assert quality.ms_ssim_db(1.0) == math.inf
  assert quality.ms_ssim_db(0.99) == pytest.approx(20.0, abs=1e-9)
  assert quality.ms_ssim_db(0.9) == pytest.approx(10.0, abs=1e-9)


def test_ms_ssim_of_a_flat_image_and_its_offset_has_a_closed_form():
  # Flat images have no variance, so every contrast-structure term is 1 and
  # MS-SSIM is the last scale's luminance term to the power 0.1333.
  a = np.full((176, 200, 3), 100, np.uint8)
  b = a + 10
  c1 = (0.01 * 255) ** 2
  luminance = (2 * 100 * 110 + c1) / (100 ** 2 + 110 ** 2 + c1)
  expected = luminance ** 0.1333
  assert expected == pytest.approx(0.9993958, abs=1e-6)
  assert quality.ms_ssim(a, b) == pytest.approx(expected, abs=1e-12)
  # tf.image's float32 leaves a rounding residue in E[x^2] - E[x]^2, so it
  # sees some "variance" in a flat image and lands ~2e-4 low.
  assert metrics.ms_ssim(a, b) == pytest.approx(expected, abs=5e-4)


def test_ms_ssim_agrees_with_tf_image():
  rng = np.random.default_rng(6)
  image = random_image(176, 240, seed=6)
  noisy = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
  ours = quality.ms_ssim(image, noisy)
  reference = metrics.ms_ssim(image, noisy)  # tf.image.ssim_multiscale
  assert 0.8 < reference < 0.999
  assert ours == pytest.approx(reference, abs=2e-5)
  # Near-lossless, float32 (what tf.image uses) loses precision; our float32
  # path reproduces tf.image, showing the algorithm is the same.
  slight = np.clip(image + rng.integers(-1, 2, image.shape), 0, 255).astype(np.uint8)
  assert quality.ms_ssim(image, slight, dtype=np.float32) == pytest.approx(
      metrics.ms_ssim(image, slight), abs=2e-6)
  # Small images go through tfcodec.metrics (which pads them).
  small = image[:40, :50]
  assert quality.ms_ssim(small, noisy[:40, :50]) == metrics.ms_ssim(
      small, noisy[:40, :50])


# -- BD-rate -----------------------------------------------------------------

RATES = np.array([0.12, 0.25, 0.45, 0.8, 1.3, 1.9])
PSNRS = np.array([27.5, 30.1, 32.4, 34.9, 37.0, 38.8])


def test_bd_rate_of_a_curve_against_itself_is_zero():
  assert bdrate.bd_rate(RATES, PSNRS, RATES, PSNRS) == pytest.approx(0, abs=1e-9)


def test_bd_rate_with_every_rate_scaled_by_0_9_is_minus_10_percent():
  assert bdrate.bd_rate(RATES, PSNRS, 0.9 * RATES, PSNRS) == pytest.approx(
      -10., abs=1e-6)
  assert bdrate.bd_rate(0.9 * RATES, PSNRS, RATES, PSNRS) == pytest.approx(
      100 / 9, abs=1e-6)


def test_bd_rate_on_ms_ssim_curves_in_db():
  ms = [0.90, 0.94, 0.965, 0.98, 0.988, 0.993]
  anchor = {"results": {"bpp": list(RATES), "ms-ssim-rgb": ms}}
  scaled = {"results": {"bpp": list(0.9 * RATES), "ms-ssim-rgb": ms}}
  assert bdrate.bd_rate_curves(anchor, anchor, "ms-ssim")[0] == pytest.approx(0, abs=1e-9)
  percent, degree = bdrate.bd_rate_curves(anchor, scaled, "ms-ssim")
  assert percent == pytest.approx(-10., abs=1e-6) and degree == 3
  # Already-in-dB input (CompressAI's paper-*.json) gives the same answer.
  in_db = {"results": {"bpp": list(0.9 * RATES),
                       "ms-ssim-db-rgb": [quality.ms_ssim_db(v) for v in ms]}}
  assert bdrate.bd_rate_curves(anchor, in_db, "ms-ssim")[0] == pytest.approx(-10., abs=1e-6)


def test_bd_rate_with_two_points_falls_back_to_a_line_and_no_overlap_is_nan():
  percent, degree = bdrate.bd_rate_curves(
      {"results": {"bpp": list(RATES), "psnr-rgb": list(PSNRS)}},
      {"results": {"bpp": [0.2, 0.5], "psnr-rgb": [29.6, 33.2]}})
  assert degree == 1 and math.isfinite(percent)
  assert math.isnan(bdrate.bd_rate(RATES, PSNRS, RATES, PSNRS + 20))


def test_bd_rate_reproduces_the_published_bpg_vs_vtm_figure():
  for base in (os.path.join(ROOT, "RDdata", "published"), ANCHORS):
    vtm = os.path.join(base, "kodak", "vtm.json")
    bpg = os.path.join(base, "kodak", "bpg_444_x265_ycbcr.json")
    if os.path.exists(vtm) and os.path.exists(bpg):
      break
  else:
    pytest.skip("no copy of CompressAI's vtm.json / bpg_444_x265_ycbcr.json")
  # ../shared/spec/REFERENCE_RD.md: BPG 4:4:4 vs VTM, cubic, <= 2 bpp: +26.7%.
  percent, _ = bdrate.bd_rate_curves(rd.read_json(vtm), rd.read_json(bpg),
                                     "psnr", max_bpp=2.0)
  assert round(percent, 1) == 26.7


# -- result files ------------------------------------------------------------

def test_result_layout_dat_files_and_published_parsers(tmp_path):
  points = [dict(setting=q, bpp=b, **{"psnr-rgb": p, "ms-ssim-rgb": 0.9 + b / 10,
                                      "encoding_time": 0.1, "decoding_time": 0.05})
            for q, b, p in ((9, 1.2, 36.), (1, 0.2, 29.), (5, 0.6, 33.))]
  result = rd.make_result("X", "a codec", points, {"key": "x"})
  assert result["results"]["bpp"] == [0.2, 0.6, 1.2]  # sorted by rate
  assert result["results"]["setting"] == [1, 5, 9]
  rddata.write_dats(result, str(tmp_path))
  bpps, values = rd.read_dat(tmp_path / "x_MSSSIM.dat")
  assert bpps == [0.2, 0.6, 1.2]
  assert values[0] == pytest.approx(quality.ms_ssim_db(0.92), abs=1e-4)
  assert rd.read_dat(tmp_path / "x_PSNR.dat")[1] == [29., 33., 36.]
  md = tmp_path / "RD_data.md"
  md.write_text("# Large\n## Kodak\nPSNR = [30.0, 32.5]\n\nBitrate = [0.15, 0.3]\n"
                "## CLIC Pro\nPSNR = [1]\nBitrate = [2]\n# Small\n## Kodak\n"
                "PSNR = [29.0]\nBitrate = [0.16]\n")
  assert rd.read_tcm_markdown(md, "Large") == ([0.15, 0.3], [30.0, 32.5])
  assert rd.read_tcm_markdown(md, "Small") == ([0.16], [29.0])


def test_published_sources_load_and_are_labelled(tmp_path):
  if not os.path.isdir(ANCHORS):
    pytest.skip("../shared/anchors is not here")
  sources = published.select(ANCHORS, [("mbt2018-mean", "mse")])
  keys = [s.key for s in sources]
  assert {"vtm", "bpg444", "cheng2020-mse", "tcm-large",
          "compressai-mbt2018-mean-mse"} <= set(keys)
  published.copy_into(sources, ANCHORS, str(tmp_path))
  assert "869a9f5d" in (tmp_path / "SOURCES.md").read_text()
  for source in sources:
    curve = published.load(source, str(tmp_path))
    assert curve["name"].endswith("(published)")
    assert curve["results"]["bpp"] == sorted(curve["results"]["bpp"])
  tcm = published.load(sources[keys.index("tcm-large")], str(tmp_path))
  assert tcm["results"]["psnr-rgb"][0] == 30.07


# -- baselines ---------------------------------------------------------------

@pytest.mark.parametrize("key", list(baselines.BY_KEY))
def test_baseline_round_trip(key):
  codec = baselines.get(key)
  reason = codec.unavailable()
  if reason:
    pytest.skip(f"{codec.label}: {reason}")
  image = random_image(64, 80, seed=7)
  settings = codec.settings
  low = codec.encode(image, settings[0])
  high = codec.encode(image, settings[-1])
  assert 0 < len(low) < len(high)
  decoded = codec.decode(high)
  assert decoded.shape == image.shape and decoded.dtype == np.uint8
  assert quality.psnr(image, decoded) > quality.psnr(image, codec.decode(low))
  assert quality.psnr(image, decoded) > 20  # a noisy image: a loose floor
  assert len(settings) >= 8


def test_jpeg_is_444_and_heif_is_444():
  data = baselines.Jpeg().encode(random_image(32, 32), 75)
  from PIL import JpegImagePlugin
  with Image.open(io.BytesIO(data)) as im:
    assert JpegImagePlugin.get_sampling(im) == 0  # 4:4:4
  heif = baselines.Heif()
  if heif.unavailable():
    pytest.skip(f"HEIF: {heif.unavailable()}")
  import pillow_heif
  info = pillow_heif.open_heif(io.BytesIO(heif.encode(random_image(32, 32), 50))).info
  assert info["chroma"] == 444


# -- progress bar and CLI ----------------------------------------------------

def test_progress_bar_in_a_log_prints_every_tenth_and_quiet_prints_nothing():
  log = io.StringIO()
  bar = runner.Progress(50, stream=log)
  for _ in range(50):
    bar.step("x")
  bar.close()
  lines = log.getvalue().splitlines()
  assert len(lines) == 11 and lines[-1].startswith("[" + "#" * 28 + "] 50/50")
  silent = io.StringIO()
  bar = runner.Progress(5, enabled=False, stream=silent)
  bar.step()
  assert silent.getvalue() == ""


def test_cli_writes_compressai_layout_rddata_and_bd_table(tmp_path, capsys):
  images = tmp_path / "images"
  images.mkdir()
  for i in range(2):
    Image.fromarray(random_image(176, 184, seed=10 + i)).save(images / f"im{i}.png")
  out, rdd = tmp_path / "out", tmp_path / "RDdata"
  status = eval_main(["--images", str(images), "--model", "none",
                      "--baselines", "jpeg,webp", "--per-image", "--quiet",
                      "--output", str(out), "--rddata", str(rdd), "--fresh",
                      "--anchors", str(tmp_path / "no-anchors")])
  assert status == 0
  printed = capsys.readouterr().out
  assert "im1.png 50:" in printed and "| JPEG 4:4:4 | — |" in printed
  for key, codec in (("jpeg", baselines.Jpeg()), ("webp", baselines.WebP())):
    result = json.loads((out / f"{key}.json").read_text())
    assert set(result) >= {"name", "description", "results"}
    values = result["results"]
    n = len(codec.settings)
    for field in ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time",
                  "decoding_time", "setting"):
      assert len(values[field]) == n, field
    assert values["bpp"] == sorted(values["bpp"])
    assert len(result["per_image"][str(codec.settings[0])]) == 2
    # The mean point is the mean of the per-image numbers.
    first = result["per_image"][str(values["setting"][0])]
    assert values["bpp"][0] == pytest.approx(np.mean([r["bpp"] for r in first]))
    assert json.loads((rdd / "results" / f"{key}.json").read_text())["results"] == values
    assert len(rd.read_dat(rdd / "dat" / f"{key}_PSNR.dat")[0]) == n
  readme = (rdd / "README.md").read_text()
  assert "| JPEG 4:4:4 | — |" in readme and "No shipped model weights" in readme
  bd = json.loads((rdd / "bd_rate.json").read_text())
  assert bd["tests"] == ["JPEG 4:4:4", "WebP"] and bd["max_bpp"] == 2.0
  assert set(bd["psnr"]) == {"JPEG 4:4:4 vs WebP", "WebP vs JPEG 4:4:4"}
  # Regenerating from the JSON alone gives the same README, and the .dat
  # files follow the JSON (here: rebuilt after being deleted).
  (rdd / "dat" / "webp_PSNR.dat").unlink()
  assert eval_main(["--from-results", str(rdd / "results"), "--rddata", str(rdd),
                    "--anchors", str(tmp_path / "no-anchors")]) == 0
  assert (rdd / "README.md").read_text() == readme
  assert len(rd.read_dat(rdd / "dat" / "webp_PSNR.dat")[0]) == len(
      baselines.WebP().settings)
  # The hand-written flagship page is linked once it exists, and kept.
  assert "FLAGSHIP.md" not in readme
  (rdd / "FLAGSHIP.md").write_text("why\n")
  assert eval_main(["--from-results", str(rdd / "results"), "--rddata", str(rdd),
                    "--anchors", str(tmp_path / "no-anchors")]) == 0
  assert "[FLAGSHIP.md](FLAGSHIP.md)" in (rdd / "README.md").read_text()
  assert (rdd / "FLAGSHIP.md").read_text() == "why\n"


def test_cli_rejects_unknown_models_and_folders(tmp_path, capsys):
  assert eval_main(["--model", "no-such-model", "--baselines", "none",
                    "--images", str(tmp_path)]) == 2
  assert "no shipped weights for no-such-model" in capsys.readouterr().err
  assert eval_main(["--model", "none", "--baselines", "jpeg",
                    "--images", str(tmp_path / "missing")]) == 2
  assert "does not exist" in capsys.readouterr().err


def test_plot_labels_published_curves_and_draws_them_dashed(tmp_path):
  from tfcodec.eval import plot
  if not plot.available():
    pytest.skip("matplotlib is not installed (requirements-rd.txt)")
  ours = {"name": "tfcodec m (mse)", "results": {"bpp": [0.2, 0.5],
                                                 "psnr-rgb": [30., 33.]}}
  base = {"name": "JPEG", "results": {"bpp": [0.3, 1.0], "psnr-rgb": [27., 33.]}}
  pub = {"name": "VTM", "results": {"bpp": [0.1, 0.5, 3.0],
                                    "psnr-rgb": [28., 34., 45.]}}
  path = tmp_path / "p.png"
  drawn = plot.rd_plot(str(path), "psnr", [ours], [base], [pub])
  assert ("VTM (published)", "--") in drawn
  assert ("tfcodec m (mse)", "-") in drawn and ("JPEG", "-") in drawn
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  # A curve without the metric is left out, not drawn empty.
  assert plot.rd_plot(str(path), "ms-ssim", [ours], [], []) == []


def test_plot_gives_each_of_our_curves_its_own_colour_and_marker():
  from tfcodec.eval import plot
  looks = [plot.our_style(i) for i in range(10)]  # the zoo has 10 curves
  assert len(set(looks)) == 10
  assert looks[0] == ("black", "o")
  assert len({plot.our_style(i) for i in range(
      len(plot.OUR_COLOURS) * len(plot.OUR_MARKERS))}) == 18


def test_model_selection_defaults_to_every_shipped_weight(monkeypatch):
  from tfcodec import zoo
  from tfcodec.eval import cli
  shipped = [("mbt2018-mean", "mse", 1), ("mbt2018-mean", "mse", 3),
             ("bmshj2018-hyperprior", "mse", 2)]
  monkeypatch.setattr(zoo, "available_weights", lambda: shipped)
  out = io.StringIO()

  def pick(*argv):
    return cli.select_models(cli.build_parser().parse_args(list(argv)), out)

  assert pick() == [("bmshj2018-hyperprior", "mse", [2]),
                    ("mbt2018-mean", "mse", [1, 3])]
  assert pick("--model", "mbt2018-mean", "--quality", "3") == [
      ("mbt2018-mean", "mse", [3])]
  assert pick("--quality", "2") == [("bmshj2018-hyperprior", "mse", [2])]
  assert pick("--model", "none") == []
  with pytest.raises(SystemExit, match="at quality 2"):
    pick("--model", "mbt2018-mean", "--quality", "2,3")
  monkeypatch.setattr(zoo, "available_weights", lambda: [])
  assert pick() == [] and "baselines only" in out.getvalue()
