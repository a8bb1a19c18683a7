"""RDdata/: our measured curves, the published ones, plots and a README,
all written by code from the JSON results (`make rd`).

  RDdata/results/<key>.json       CompressAI layout, one per model and baseline
  RDdata/dat/<key>_PSNR.dat       two columns (bpp, PSNR dB), like Cheng 2020
  RDdata/dat/<key>_MSSSIM.dat     two columns (bpp, MS-SSIM dB)
  RDdata/published/               unchanged copies of the published points,
                                  with SOURCES.md (repository + commit)
  RDdata/kodak_psnr.png, kodak_msssim.png
  RDdata/bd_rate.json             the BD-rate matrices as data
  RDdata/README.md                tables generated from the files above
  RDdata/FLAGSHIP.md              (by hand) the flagship choice, linked
"""

import glob
import json
import os

from tfcodec.eval import baselines, plot, published, tables
from tfcodec.eval import results as rd

OURS_PREFIX = "tfcodec-"
# The one hand-written page in RDdata/: the flagship choice and its evidence.
FLAGSHIP = "FLAGSHIP.md"


def is_ours(result):
  return result.get("key", "").startswith(OURS_PREFIX)


def write_results(out_dir, curves, fresh=False):
  """Writes each measured curve's JSON and .dat files.

  `fresh` first deletes the JSON and .dat files already there, so curves of
  weights that are no longer shipped do not linger.
  """
  results_dir = os.path.join(out_dir, "results")
  dat_dir = os.path.join(out_dir, "dat")
  if fresh:
    for path in (glob.glob(os.path.join(results_dir, "*.json")) +
                 glob.glob(os.path.join(dat_dir, "*.dat"))):
      os.remove(path)
  for curve in curves:
    rd.write_json(curve, os.path.join(results_dir, curve["key"] + ".json"))
    write_dats(curve, dat_dir)


def write_dats(curve, dat_dir):
  values = curve["results"]
  rd.write_dat(values["bpp"], values["psnr-rgb"],
               os.path.join(dat_dir, curve["key"] + "_PSNR.dat"))
  db = rd.msssim_db_values(curve)
  rd.write_dat(values["bpp"], db,
               os.path.join(dat_dir, curve["key"] + "_MSSSIM.dat"))


def _order(result):
  """Ours first (by name), then baselines in the order of baselines.ALL."""
  keys = [cls.key for cls in baselines.ALL]
  key = result.get("key", "")
  if is_ours(result):
    return (0, 0, key)
  return (1, keys.index(key) if key in keys else len(keys), key)


def load_results(results_dir):
  """Every JSON result in `results_dir`, ours first."""
  found = []
  for path in glob.glob(os.path.join(results_dir, "*.json")):
    result = rd.read_json(path)
    result.setdefault("key", os.path.splitext(os.path.basename(path))[0])
    found.append(result)
  return sorted(found, key=_order)


def model_keys(curves):
  """(architecture, metric) of each of our curves, for CompressAI's runs."""
  return [(c["model"], c["metric"]) for c in curves
          if is_ours(c) and "model" in c and "metric" in c]


def load_published(directory, curves):
  """[(Source, result)] of the published curves present in `directory`."""
  if not os.path.isdir(directory):
    return []
  return [(s, published.load(s, directory))
          for s in published.select(directory, model_keys(curves))]


def build(out_dir, anchor_dir=None, out=None):
  """Copies published points (when `anchor_dir` exists), then regenerates
  plots, bd_rate.json and README.md from the JSON files in out_dir/results.
  Returns the printed BD-rate tables (markdown lines)."""
  curves = load_results(os.path.join(out_dir, "results"))
  pub_dir = os.path.join(out_dir, "published")
  if anchor_dir and os.path.isdir(anchor_dir):
    sources = published.select(anchor_dir, model_keys(curves))
    published.copy_into(sources, anchor_dir, pub_dir)
  elif out is not None:
    print(f"notice: anchor folder {anchor_dir!r} not found; using the copies "
          f"already in {pub_dir}", file=out)
  pub = load_published(pub_dir, curves)
  ours = [c for c in curves if is_ours(c)]
  live = [c for c in curves if not is_ours(c)]
  pngs = []
  if plot.available():
    pngs = plot.write_plots(out_dir, ours, live, [r for _, r in pub])
  elif out is not None:
    print("notice: matplotlib is not installed; plots skipped "
          "(pip install -r requirements-rd.txt)", file=out)
  anchors = live + [r for s, r in pub if s.key in published.BD_ANCHORS]
  with open(os.path.join(out_dir, "bd_rate.json"), "w") as f:
    json.dump(tables.bd_json(ours + live, anchors), f, indent=2)
    f.write("\n")
  readme, bd_lines = readme_lines(ours, live, pub, anchors, pngs, out_dir)
  with open(os.path.join(out_dir, "README.md"), "w") as f:
    f.write("\n".join(readme) + "\n")
  return bd_lines


def _measured_line(curves):
  """One sentence on where and when the curves were measured."""
  info = [c.get("measured") for c in curves if c.get("measured")]
  if not info:
    return []
  first = info[0]
  # Curves are re-measured one model at a time, on whichever machine the
  # session has: name every CPU, not the first curve's.
  cpus = sorted({i.get("cpu", "?") for i in info})
  seconds = sum(i.get("seconds", 0) for i in info)
  dates = sorted({i.get("date", "?") for i in info})
  loads = sorted({i.get("load_average_1min_at_start") for i in info} - {None})
  load = (f" (1-minute load average at the start of each codec: "
          f"{loads[0]:g}–{loads[-1]:g})" if loads else "")
  return [f"Measured on {', '.join(dates)} on {' and '.join(cpus)}, "
          f"{first.get('cores', '?')} cores{load}; measuring took "
          f"{seconds / 60:.1f} minutes. Times are wall-clock seconds per "
          "image, one thread where the library lets us choose, so they are "
          "only comparable within this table."]


def readme_lines(ours, live, pub, anchors, pngs, out_dir="."):
  """README.md as lines, and the BD-rate section on its own for printing."""
  images = {c.get("images") for c in ours + live} - {None}
  n_images = ", ".join(str(i) for i in sorted(images)) or "?"
  lines = [
      "# Rate–distortion data (Kodak)",
      "",
      "Generated by `make rd` (`python -m tfcodec.eval --rddata RDdata "
      "--fresh`); do not edit by hand. Every number here is read from the",
      "JSON files in `results/` (ours and the classical baselines, measured "
      "in the same run) and `published/` (other people's points, copied "
      "with their sources in `published/SOURCES.md`).",
      "",
      f"How: each of the {n_images} Kodak images is encoded to a complete "
      "file and decoded; bpp = 8 × file bytes / pixels (headers included); "
      "PSNR and MS-SSIM are computed on the decoded 8-bit RGB image "
      "(MS-SSIM: 5 scales, Wang et al. weights, float64) and averaged over "
      "the images (PSNR in dB). MS-SSIM (dB) = −10 log10(1 − MS-SSIM).",
      "",
  ]
  lines += _measured_line(ours + live)
  if not ours:
    lines += ["", "**No shipped model weights were found in `tfcodec/weights/` "
              "when this was generated: baselines only.**"]
  lines += ["", "## Plots", ""]
  for path in pngs:
    lines.append(f"![{os.path.basename(path)}]({os.path.basename(path)})")
  if not pngs:
    lines.append("(matplotlib was not installed: no plots)")
  lines += ["", "Solid lines were measured in this run (thick: tfcodec "
            "models); dashed lines are published points.", ""]

  bd = ["## BD-rate", "",
        "Bjøntegaard delta rate of each row against each column: cubic fit "
        "of log(rate) against quality, integrated over the quality range "
        f"both curves cover; points above {tables.BD_MAX_BPP:g} bpp are "
        "dropped first. Negative = fewer bits than the column's codec for "
        "the same quality.", "", "### PSNR", ""]
  bd += tables.bd_table(ours + live, anchors, "psnr")
  bd += ["", "### MS-SSIM (dB)", ""]
  bd += tables.bd_table(ours + live, anchors, "ms-ssim")
  lines += bd
  if os.path.exists(os.path.join(out_dir, FLAGSHIP)):
    lines += ["", "## Flagship", "",
              f"Which architecture we train longest, and why (measured RD "
              f"per CPU-hour, written by hand): [{FLAGSHIP}]({FLAGSHIP})."]
  lines += ["", "## Quality at fixed rates", "",
            "Linear interpolation in log(bpp) between measured points; n/a "
            "outside a curve's range.", ""]
  lines += tables.at_rates_table(ours + live + [r for _, r in pub])
  lines += ["", "## Codecs", "", "| curve | file | how it was run |",
            "|---|---|---|"]
  for curve in ours + live:
    lines.append(f"| {curve['name']} | `results/{curve['key']}.json` | "
                 f"{curve.get('description', '')} |")
  for source, curve in pub:
    lines.append(f"| {curve['name']} | `published/{source.files[0]}` | "
                 f"{source.repo} @ {source.commit}. {source.note} |")
  lines += ["", "## Mean points", ""]
  for curve in ours + live:
    lines += [f"### {curve['name']}", ""] + tables.points_table(curve) + [""]
  lines += [
      "## Files", "",
      "- `results/<key>.json`: CompressAI's results layout (`name`, "
      "`description`, `results` with `bpp`, `psnr-rgb`, `ms-ssim-rgb`, "
      "`encoding_time`, `decoding_time`, plus our `setting`), points sorted "
      "by bpp.",
      "- `dat/<key>_PSNR.dat`, `dat/<key>_MSSSIM.dat`: two columns (bpp, "
      "PSNR dB / MS-SSIM dB), the layout of Cheng 2020's RDdata.",
      "- `bd_rate.json`: the BD-rate tables above as data.",
      "- `published/`: unchanged copies of published points; "
      "`published/SOURCES.md` names repository, commit and path of each.",
  ]
  return lines, bd
