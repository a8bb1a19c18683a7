"""Published Kodak RD points we compare against, and where each came from.

They are read from the read-only anchor folder (../shared/anchors, see
../shared/spec/REFERENCE_RD.md) and copied into RDdata/published/ with a
SOURCES.md, so the repository carries the figures it plots. Every curve's
label ends in "(published)": they are somebody else's measurements, drawn
dashed, never mixed up with ours.
"""

import dataclasses
import os
import shutil

from tfcodec.eval import results as rd

COMPRESSAI = ("InterDigitalInc/CompressAI", "869a9f5d")
CHENG = ("ZhengxueCheng/Learned-Image-Compression-with-GMM-and-Attention",
         "c13652f7")
TCM = ("jmliu206/LIC_TCM", "6c6d7a36")


@dataclasses.dataclass(frozen=True)
class Source:
  """One published curve: files (relative to the anchor folder) and origin."""
  key: str
  label: str
  files: tuple          # paths under the anchor folder, copied as they are
  repo: str
  commit: str
  repo_paths: tuple     # the same files' paths in `repo`
  kind: str             # "compressai", "cheng" or "tcm:<model>"
  note: str = ""
  metrics: tuple = ("psnr", "ms-ssim")  # which of its metrics we plot/compare


def _cheng(key, label, loss, note, metrics):
  names = tuple(f"cheng2020_RDdata/data_Kodak_Proposed_optimized_by_{loss}_{m}.dat"
                for m in ("PSNR", "MSSSIM"))
  return Source(key, label, names, *CHENG,
                tuple("RDdata/" + os.path.basename(n) for n in names), "cheng",
                note, metrics)


def _tcm(key, label, model):
  return Source(key, label, ("tcm2023/RD_data.md",), *TCM, ("RD_data.md",),
                "tcm:" + model, "Kodak section; PSNR only", ("psnr",))


def _compressai(key, label, name, note=""):
  return Source(key, label, (f"kodak/{name}",), *COMPRESSAI,
                (f"results/image/kodak/{name}",), "compressai", note)


FIXED = (
    _compressai("vtm", "VTM intra", "vtm.json",
                "VTM version not stated in the file"),
    _compressai("bpg444", "BPG 4:4:4", "bpg_444_x265_ycbcr.json",
                "bpg 0.9.8, x265, YCbCr 4:4:4"),
    _cheng("cheng2020-mse", "Cheng 2020 (MSE)", "MSE",
           "GMM + attention, trained for MSE; the CVPR 2020 paper's points",
           ("psnr", "ms-ssim")),
    _cheng("cheng2020-msssim", "Cheng 2020 (MS-SSIM)", "MSSSIM",
           "GMM + attention, trained for MS-SSIM; MS-SSIM only (its PSNR "
           "says little)", ("ms-ssim",)),
    _tcm("tcm-large", "TCM-L", "Large"),
    _tcm("tcm-middle", "TCM-M", "Middle"),
    _tcm("tcm-small", "TCM-S", "Small"),
)

# Curves the BD-rate table measures every live codec against.
BD_ANCHORS = ("vtm", "bpg444")


def compressai_model(name, metric):
  """CompressAI's own run of an architecture we also ship (8-bit decoded
  output when CompressAI published it, like our measurement)."""
  suffix = {"mse": "mse", "ms-ssim": "ms-ssim"}[metric]
  eight_bit = f"8bit-decoded/compressai-{name}_{suffix}_ans_cuda.json"
  plain = f"compressai-{name}_{suffix}_cuda.json"
  return [
      Source(f"compressai-{name}-{metric}", f"CompressAI {name} ({metric})",
             (f"kodak/{eight_bit}",), *COMPRESSAI,
             (f"results/image/8bit-decoded/kodak/{eight_bit.split('/')[1]}",),
             "compressai", "metrics on the 8-bit output"),
      Source(f"compressai-{name}-{metric}", f"CompressAI {name} ({metric})",
             (f"kodak/{plain}",), *COMPRESSAI,
             (f"results/image/kodak/{plain}",), "compressai",
             "metrics on the float output"),
  ]


def select(anchor_dir, models=()):
  """The sources present in `anchor_dir`: FIXED plus CompressAI's run of each
  (architecture, metric) in `models`; the first present variant wins."""
  chosen = []
  for source in FIXED:
    if all(os.path.exists(os.path.join(anchor_dir, f)) for f in source.files):
      chosen.append(source)
  for name, metric in models:
    for source in compressai_model(name, metric):
      if os.path.exists(os.path.join(anchor_dir, source.files[0])):
        chosen.append(source)
        break
  return chosen


def load(source, anchor_dir):
  """The curve as a CompressAI-layout result, name suffixed '(published)'."""
  paths = [os.path.join(anchor_dir, f) for f in source.files]
  name = f"{source.label} (published)"
  if source.kind == "compressai":
    result = rd.read_json(paths[0])
    return dict(result, name=name, key=source.key,
                description=result.get("description", ""))
  if source.kind == "cheng":
    bpp, psnr = rd.read_dat(paths[0])
    bpp_ms, msssim_db = rd.read_dat(paths[1])
    if bpp != bpp_ms:
      raise ValueError(f"{paths}: PSNR and MS-SSIM files have different rates")
    values = {"bpp": bpp, "psnr-rgb": psnr, "ms-ssim-db-rgb": msssim_db}
  elif source.kind.startswith("tcm:"):
    bpp, psnr = rd.read_tcm_markdown(paths[0], source.kind.split(":", 1)[1])
    values = {"bpp": bpp, "psnr-rgb": psnr}
  else:
    raise ValueError(f"unknown kind {source.kind!r}")
  if "psnr" not in source.metrics:
    values.pop("psnr-rgb")
  if "ms-ssim" not in source.metrics:
    values.pop("ms-ssim-db-rgb", None)
  order = sorted(range(len(bpp)), key=lambda i: bpp[i])
  return {"name": name, "key": source.key, "description": source.note,
          "results": {k: [v[i] for i in order] for k, v in values.items()}}


def copy_into(sources, anchor_dir, out_dir):
  """Copies each source's files (same relative paths) and writes SOURCES.md."""
  for source in sources:
    for rel in source.files:
      target = os.path.join(out_dir, rel)
      os.makedirs(os.path.dirname(target), exist_ok=True)
      shutil.copyfile(os.path.join(anchor_dir, rel), target)
  lines = [
      "# Published Kodak RD points",
      "",
      "Generated by `make rd` (tfcodec/eval/published.py); do not edit.",
      "These files are copied unchanged from the public repositories below;",
      "the figures are their authors' measurements, not ours. Plots draw",
      "them dashed and label them \"(published)\".",
      "",
      "| curve | file here | repository | commit | path there | note |",
      "|---|---|---|---|---|---|",
  ]
  for source in sources:
    for rel, there in zip(source.files, source.repo_paths):
      lines.append(f"| {source.label} | `{rel}` | {source.repo} | "
                   f"{source.commit} | `{there}` | {source.note} |")
  lines += [
      "",
      "Formats: CompressAI JSON (`bpp`, `psnr-rgb`, `ms-ssim-rgb`, timings);",
      "Cheng's `.dat` (two columns: bpp and PSNR in dB, or MS-SSIM in dB =",
      "-10 log10(1 - MS-SSIM)); TCM's `RD_data.md` (`PSNR = [...]`, `Bitrate",
      "= [...]` per model and data set).",
      "",
  ]
  with open(os.path.join(out_dir, "SOURCES.md"), "w") as f:
    f.write("\n".join(lines))
