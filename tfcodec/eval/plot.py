"""RD plots (matplotlib, PNG): PSNR-bpp and MS-SSIM(dB)-bpp.

Three kinds of curve, drawn so they cannot be confused:
  ours       thick solid lines, round (then diamond, triangle) markers
  baselines  thin solid lines, small square markers (measured in this run)
  published  dashed lines, 'x' markers, label ending in "(published)"
matplotlib is optional (requirements-rd.txt); `available()` says if it is here.
"""

import math
import os

from tfcodec.eval import bdrate

MAX_BPP = 2.0
PNG_NAMES = {"psnr": "kodak_psnr.png", "ms-ssim": "kodak_msssim.png"}
# Ours stand out: black first, then dark colours tab10 does not use; once
# the colours run out the marker changes, so ten models get ten looks.
OUR_COLOURS = ("black", "#6a3d9a", "#b15928", "#01665e", "#08306b", "#67001f")
OUR_MARKERS = ("o", "D", "^")
YLABELS = {"psnr": "PSNR (RGB) [dB]", "ms-ssim": "MS-SSIM (RGB) [dB]  "
           "= -10 log10(1 - MS-SSIM)"}


def available():
  try:
    import matplotlib  # noqa: F401
  except ImportError:
    return False
  return True


def our_style(index):
  """(colour, marker) of our index-th curve: distinct for the first
  len(OUR_COLOURS) * len(OUR_MARKERS) curves."""
  colour = OUR_COLOURS[index % len(OUR_COLOURS)]
  marker = OUR_MARKERS[(index // len(OUR_COLOURS)) % len(OUR_MARKERS)]
  return colour, marker


def _visible(result, metric, max_bpp):
  """Points up to a little past max_bpp (so lines reach the frame edge)."""
  rates, values = bdrate.curve_points(result, metric)
  order = rates.argsort()
  rates, values = rates[order], values[order]
  keep = rates <= max_bpp * 1.15
  # Keep the first point past the edge too, so the line runs to the frame.
  past = (~keep).nonzero()[0]
  if len(past):
    keep[past[0]] = True
  return rates[keep], values[keep]


def rd_plot(path, metric, ours=(), baselines=(), published=(), title="",
            max_bpp=MAX_BPP):
  """Writes one PNG; returns [(label, linestyle)] of the curves drawn.
  Curves lacking `metric` are skipped."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(11, 7), dpi=110)
  shown, drawn, handles = [], [], []
  def cycled(colours, marker):
    return lambda index: (colours[index % len(colours)], marker)

  styles = [
      (published, dict(linestyle="--", linewidth=1.2, markersize=4,
                       alpha=0.85), cycled(plt.cm.Dark2.colors, "x")),
      (baselines, dict(linestyle="-", linewidth=1.3, markersize=3),
       cycled(plt.cm.tab10.colors, "s")),
      (ours, dict(linestyle="-", linewidth=2.8, markersize=6, zorder=5),
       our_style),
  ]
  for rank, (curves, style, look) in enumerate(styles):
    for index, curve in enumerate(curves):
      rates, values = _visible(curve, metric, max_bpp)
      if len(rates) == 0:
        continue
      label = curve["name"]
      if curves is published and not label.endswith("(published)"):
        label += " (published)"
      colour, marker = look(index)
      line, = ax.plot(rates, values, label=label, color=colour, marker=marker,
                      **style)
      drawn.append((label, style["linestyle"]))
      handles.append((-rank, index, line))
      shown.extend(v for r, v in zip(rates, values) if r <= max_bpp)
  ax.set_xlim(0, max_bpp)
  if shown:
    finite = [v for v in shown if math.isfinite(v)]
    ax.set_ylim(math.floor(min(finite)) - 0.5, math.ceil(max(finite)) + 0.5)
  ax.set_xlabel("bits per pixel (whole file)")
  ax.set_ylabel(YLABELS[metric])
  ax.set_title(title)
  ax.grid(True, alpha=0.3)
  if drawn:
    # Drawn published-first (ours on top); listed ours-first.
    ax.legend(handles=[h for _, _, h in sorted(handles, key=lambda t: t[:2])],
              loc="center left",
              bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
  ax.text(0.99, 0.02, "solid: measured in this run   dashed: published",
          transform=ax.transAxes, ha="right", va="bottom", fontsize=8,
          color="0.35")
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path)
  plt.close(fig)
  return drawn


def write_plots(out_dir, ours, baselines, published, images_label="Kodak"):
  """Both PNGs into `out_dir`; returns their paths."""
  paths = []
  for metric, fname in PNG_NAMES.items():
    what = "PSNR" if metric == "psnr" else "MS-SSIM"
    path = os.path.join(out_dir, fname)
    rd_plot(path, metric, ours, baselines, published,
            title=f"{images_label}: {what} (RGB) vs rate")
    paths.append(path)
  return paths
