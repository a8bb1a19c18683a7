"""Bjøntegaard delta rate: average bitrate difference between two RD curves.

For each curve, log(rate) is fitted as a cubic polynomial of quality (PSNR,
or MS-SSIM in dB); both fits are integrated over the quality range the two
curves share, and the mean gap between them, exp()'d, is the rate ratio at
equal quality. -10% means the test curve needs 10% fewer bits than the anchor.

Curves with fewer than four points (e.g. a model shipped at two qualities)
get a polynomial of degree points - 1; `bd_rate_curves` reports the degree
used so tables can flag such entries.
"""

import math

import numpy as np

from tfcodec.eval.quality import ms_ssim_db

# Quality keys in a CompressAI-layout "results" dict.
METRICS = ("psnr", "ms-ssim")


def _fit(quality, log_rate, degree):
  # Polynomial.fit maps quality onto [-1, 1] first, which keeps the
  # least-squares problem well conditioned (PSNR values are ~25..45).
  return np.polynomial.Polynomial.fit(quality, log_rate, degree)


def bd_rate(anchor_rate, anchor_quality, test_rate, test_quality,
            max_degree=3):
  """Percent rate change of `test` against `anchor` at equal quality.

  Returns nan when the curves share no quality interval or a curve has fewer
  than two distinct points.
  """
  ar, aq = np.asarray(anchor_rate, float), np.asarray(anchor_quality, float)
  tr, tq = np.asarray(test_rate, float), np.asarray(test_quality, float)
  keep_a = np.isfinite(aq) & (ar > 0)
  keep_t = np.isfinite(tq) & (tr > 0)
  ar, aq, tr, tq = ar[keep_a], aq[keep_a], tr[keep_t], tq[keep_t]
  degree = min(max_degree, len(np.unique(aq)) - 1, len(np.unique(tq)) - 1)
  if degree < 1:
    return float("nan")
  low, high = max(aq.min(), tq.min()), min(aq.max(), tq.max())
  if not high > low:
    return float("nan")
  anchor_fit = _fit(aq, np.log(ar), degree).integ()
  test_fit = _fit(tq, np.log(tr), degree).integ()
  gap = ((test_fit(high) - test_fit(low)) - (anchor_fit(high) - anchor_fit(low)))
  return float(100 * (math.exp(gap / (high - low)) - 1))


def curve_points(result, metric, max_bpp=None):
  """(bpp, quality) arrays from a CompressAI-layout dict; MS-SSIM in dB.

  Accepts "ms-ssim-rgb" (linear) or "ms-ssim-db-rgb" (already in dB), as
  CompressAI's paper-*.json files use either.
  """
  values = result["results"]
  bpp = np.asarray(values["bpp"], float)
  if metric == "psnr":
    quality = np.asarray(values.get("psnr-rgb", [np.nan] * len(bpp)), float)
  elif metric == "ms-ssim":
    if "ms-ssim-db-rgb" in values:
      quality = np.asarray(values["ms-ssim-db-rgb"], float)
    elif "ms-ssim-rgb" in values:
      quality = np.asarray([ms_ssim_db(v) for v in values["ms-ssim-rgb"]])
    else:
      quality = np.full(len(bpp), np.nan)
  else:
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
  keep = np.isfinite(quality) & np.isfinite(bpp)
  if max_bpp is not None:
    keep &= bpp <= max_bpp
  return bpp[keep], quality[keep]


def bd_rate_curves(anchor, test, metric="psnr", max_bpp=None):
  """(percent, degree) between two CompressAI-layout results.

  `max_bpp` drops points above that rate from both curves first (a cubic
  fitted across 0.05..3.6 bpp bends badly at the ends).
  """
  ar, aq = curve_points(anchor, metric, max_bpp)
  tr, tq = curve_points(test, metric, max_bpp)
  degree = min(3, len(np.unique(aq)) - 1, len(np.unique(tq)) - 1)
  return bd_rate(ar, aq, tr, tq), degree
