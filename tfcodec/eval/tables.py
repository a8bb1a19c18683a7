"""Markdown tables from result dicts: mean points, quality at fixed rates,
and BD-rates. Printed by the CLI and written into RDdata/README.md, so the
README's numbers always come from the JSON files."""

import math

from tfcodec.eval import bdrate
from tfcodec.eval import results as rd

# Points above this rate are dropped before BD-rate fits (both curves), as
# ../shared/spec/REFERENCE_RD.md does; the published VTM curve reaches 3.6 bpp.
BD_MAX_BPP = 2.0
RATES = (0.25, 0.5, 0.75, 1.0)


def _fmt(value, digits):
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "n/a"
  if isinstance(value, float) and math.isinf(value):
    return "inf"
  return f"{value:.{digits}f}"


def _setting(value):
  return "" if value is None else (f"{value:g}" if isinstance(value, float)
                                   else str(value))


def points_table(result):
  """One row per setting: the means over the images."""
  name = result.get("setting_name", "setting")
  lines = [f"| {name} | bpp | PSNR (dB) | MS-SSIM | MS-SSIM (dB) | enc s | dec s |",
           "|---|---|---|---|---|---|---|"]
  for row in rd.mean_points(result):
    lines.append(
        f"| {_setting(row['setting'])} | {_fmt(row['bpp'], 4)} | "
        f"{_fmt(row['psnr'], 2)} | {_fmt(row['ms_ssim'], 5)} | "
        f"{_fmt(row['ms_ssim_db'], 2)} | {_fmt(row['enc'], 3)} | "
        f"{_fmt(row['dec'], 3)} |")
  return lines


def at_rates_table(curves, rates=RATES):
  """PSNR and MS-SSIM (dB) interpolated at fixed rates, one row per curve."""
  head = " | ".join([f"PSNR@{r:g}" for r in rates] +
                    [f"MS-SSIM dB@{r:g}" for r in rates])
  lines = [f"| curve | {head} |", "|---|" + "---|" * (2 * len(rates))]
  for curve in curves:
    cells = [_fmt(rd.quality_at_rate(curve, r, "psnr"), 2) for r in rates]
    cells += [_fmt(rd.quality_at_rate(curve, r, "ms-ssim"), 2) for r in rates]
    lines.append(f"| {curve['name']} | " + " | ".join(cells) + " |")
  return lines


def bd_matrix(tests, anchors, metric):
  """{(test name, anchor name): (percent, degree)} for every pair."""
  return {(t["name"], a["name"]): bdrate.bd_rate_curves(
              a, t, metric, max_bpp=BD_MAX_BPP)
          for t in tests for a in anchors}


def bd_table(tests, anchors, metric):
  """Rows: tested curves; columns: anchors; cells: BD-rate of the row
  against the column (negative = fewer bits at equal quality)."""
  matrix = bd_matrix(tests, anchors, metric)
  lines = ["| vs → | " + " | ".join(a["name"] for a in anchors) + " |",
           "|---|" + "---|" * len(anchors)]
  flagged = False
  for test in tests:
    cells = []
    for anchor in anchors:
      if test is anchor:
        cells.append("—")
        continue
      percent, degree = matrix[(test["name"], anchor["name"])]
      cell = "n/a" if math.isnan(percent) else f"{percent:+.1f}%"
      if not math.isnan(percent) and degree < 3:
        cell += "†"
        flagged = True
      cells.append(cell)
    lines.append(f"| {test['name']} | " + " | ".join(cells) + " |")
  if flagged:
    lines += ["", "† a curve with fewer than 4 points: fitted with a "
              "polynomial of degree (points - 1) instead of a cubic."]
  return lines


def bd_json(tests, anchors):
  """The BD-rate matrices as plain data (RDdata/bd_rate.json)."""
  out = {"max_bpp": BD_MAX_BPP, "tests": [t["name"] for t in tests],
         "anchors": [a["name"] for a in anchors]}
  for metric in bdrate.METRICS:
    matrix = bd_matrix(tests, anchors, metric)
    out[metric] = {f"{t} vs {a}": (None if math.isnan(p) else round(p, 3))
                   for (t, a), (p, _) in matrix.items() if t != a}
  return out
