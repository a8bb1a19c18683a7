"""RD results in CompressAI's layout, and the other formats published points
come in (Cheng 2020's two-column .dat, TCM's RD_data.md).

A result is a plain dict, exactly what CompressAI's `results/image/kodak/*.json`
hold, so our files plot next to theirs with their tools:

  {"name": ..., "description": ...,
   "results": {"bpp": [...], "psnr-rgb": [...], "ms-ssim-rgb": [...],
               "encoding_time": [...], "decoding_time": [...]}}

Lists are aligned and sorted by bpp. We add "setting" (the codec's quality
knob for each point) to "results", and may add top-level keys (e.g.
"per_image"); CompressAI's readers ignore keys they do not use.
"""

import json
import os
import re

import numpy as np

from tfcodec.eval.quality import ms_ssim_db

TIMING_KEYS = ("encoding_time", "decoding_time")


def make_result(name, description, points, extra=None):
  """A result dict from per-setting points (dicts with the results keys)."""
  points = sorted(points, key=lambda p: p["bpp"])
  keys = []
  for point in points:
    keys += [k for k in point if k not in keys]
  result = {"name": name, "description": description,
            "results": {k: [p.get(k) for p in points] for k in keys}}
  result.update(extra or {})
  return result


def write_json(result, path):
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump(result, f, indent=2, allow_nan=True)
    f.write("\n")


def read_json(path):
  with open(path) as f:
    return json.load(f)


def msssim_db_values(result):
  """MS-SSIM in dB per point (from "ms-ssim-db-rgb" or "ms-ssim-rgb")."""
  values = result["results"]
  if "ms-ssim-db-rgb" in values:
    return [float(v) for v in values["ms-ssim-db-rgb"]]
  if "ms-ssim-rgb" in values:
    return [ms_ssim_db(v) for v in values["ms-ssim-rgb"]]
  return None


def write_dat(bpps, values, path):
  """Two whitespace-separated columns, bpp and value, like Cheng's RDdata."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    for bpp, value in sorted(zip(bpps, values)):
      f.write(f"{bpp:.6f}\t{value:.4f}\n")


def read_dat(path):
  """(bpps, values) from a two-column file; blank lines are ignored."""
  bpps, values = [], []
  with open(path) as f:
    for line in f:
      fields = line.split()
      if len(fields) >= 2:
        bpps.append(float(fields[0]))
        values.append(float(fields[1]))
  return bpps, values


def read_tcm_markdown(path, model, dataset="Kodak"):
  """(bpps, psnrs) for one model ("Large"/"Middle"/"Small") and data set
  from LIC_TCM's RD_data.md (headings '# Large', '## Kodak', then
  'PSNR = [..]' and 'Bitrate = [..]' lines)."""
  with open(path) as f:
    text = f.read()
  sections = re.split(r"^# ", text, flags=re.M)
  for section in sections:
    if not section.startswith(model):
      continue
    for part in re.split(r"^## ", section, flags=re.M):
      if part.startswith(dataset):
        psnr = _parse_list(part, "PSNR")
        rate = _parse_list(part, "Bitrate")
        if len(psnr) != len(rate):
          raise ValueError(f"{path}: {model}/{dataset}: {len(psnr)} PSNR "
                           f"values but {len(rate)} rates")
        return rate, psnr
  raise ValueError(f"{path}: no '{model}' / '{dataset}' section")


def _parse_list(text, key):
  match = re.search(rf"{key}\s*=\s*\[([^\]]*)\]", text)
  if not match:
    raise ValueError(f"no '{key} = [...]' line")
  return [float(v) for v in match.group(1).split(",") if v.strip()]


def mean_points(result):
  """Rows (setting, bpp, psnr, ms-ssim, ms-ssim dB, enc s, dec s)."""
  values = result["results"]
  n = len(values["bpp"])
  db = msssim_db_values(result) or [None] * n
  rows = []
  for i in range(n):
    rows.append(dict(
        setting=(values.get("setting") or [None] * n)[i],
        bpp=values["bpp"][i],
        psnr=(values.get("psnr-rgb") or [None] * n)[i],
        ms_ssim=(values.get("ms-ssim-rgb") or [None] * n)[i],
        ms_ssim_db=db[i],
        enc=(values.get("encoding_time") or [None] * n)[i],
        dec=(values.get("decoding_time") or [None] * n)[i]))
  return rows


def quality_at_rate(result, bpp, metric="psnr"):
  """Quality at `bpp` by linear interpolation in log(bpp); None outside the
  measured range (no extrapolation)."""
  from tfcodec.eval.bdrate import curve_points
  rates, quality = curve_points(result, metric)
  if len(rates) < 2 or not rates.min() <= bpp <= rates.max():
    return None
  order = np.argsort(rates)
  return float(np.interp(np.log(bpp), np.log(rates[order]), quality[order]))
