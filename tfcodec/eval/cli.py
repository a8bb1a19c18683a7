"""python -m tfcodec.eval: measure models and classical codecs on an image
folder (default: Kodak), print mean points and BD-rates, optionally write
JSON (CompressAI's layout), plots, or the whole RDdata/ tree.

  python -m tfcodec.eval                          # every shipped weight + all baselines
  python -m tfcodec.eval --model mbt2018-mean --quality 1,3 --baselines jpeg,webp
  python -m tfcodec.eval --images my_photos --per-image --output out/
  python -m tfcodec.eval --rddata RDdata --fresh  # what `make rd` runs
  python -m tfcodec.eval --from-results RDdata/results --rddata RDdata
                                                  # re-make tables/plots only
"""

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_IMAGES = os.path.join(ROOT, "..", "shared", "data", "kodak")
DEFAULT_ANCHORS = os.path.join(ROOT, "..", "shared", "anchors")


def build_parser():
  from tfcodec.eval import baselines
  parser = argparse.ArgumentParser(
      prog="python -m tfcodec.eval",
      description="Rate-distortion evaluation with real bitstreams: tfcodec "
                  "models and classical codecs (JPEG, WebP, JPEG 2000, AVIF, "
                  "HEIF, JPEG XL) on a folder of images.",
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog=__doc__.split("\n\n", 1)[1])
  parser.add_argument("--images", default=DEFAULT_IMAGES,
                      help="folder of images (default: ../shared/data/kodak "
                           "next to the repository)")
  parser.add_argument("--model", action="append", default=None,
                      help="architecture to evaluate (repeatable; 'none' for "
                           "baselines only). Default: every shipped weight.")
  parser.add_argument("--quality", default=None,
                      help="comma-separated qualities, e.g. 1,3 (default: "
                           "every shipped quality of the chosen models)")
  parser.add_argument("--metric", default=None, choices=("mse", "ms-ssim"),
                      help="training metric of the weights (default: all "
                           "shipped)")
  parser.add_argument("--refine-steps", type=int, default=0,
                      help="encoder-side latent refinement steps per image "
                           "for the models (tfcodec/refine.py); results are "
                           "kept under their own key")
  parser.add_argument("--baselines", default="all",
                      help="comma-separated subset of "
                           f"{','.join(baselines.BY_KEY)}, 'all' or 'none'")
  parser.add_argument("--max-images", type=int, default=None,
                      help="use only the first N images (quick looks)")
  parser.add_argument("--per-image", action="store_true",
                      help="print every image's numbers and keep them in the "
                           "JSON ('per_image')")
  parser.add_argument("--output", default=None,
                      help="write one JSON per codec (CompressAI layout) here")
  parser.add_argument("--plot", default=None,
                      help="write kodak_psnr.png and kodak_msssim.png here")
  parser.add_argument("--rddata", default=None,
                      help="write the RDdata tree here (results/, dat/, "
                           "published/, plots, README.md)")
  parser.add_argument("--fresh", action="store_true",
                      help="with --rddata: delete the old results/*.json and "
                           "dat/*.dat first")
  parser.add_argument("--from-results", default=None,
                      help="measure nothing: read the JSON results in this "
                           "folder and only make tables/plots/RDdata")
  parser.add_argument("--anchors", default=DEFAULT_ANCHORS,
                      help="published reference points (default: "
                           "../shared/anchors)")
  parser.add_argument("--quiet", action="store_true",
                      help="no progress bar")
  return parser


def parse_qualities(text):
  try:
    return sorted({int(q) for q in text.split(",") if q.strip()})
  except ValueError:
    raise SystemExit(f"error: --quality must be integers like 1,3, got {text!r}")


def select_models(args, out):
  """[(name, metric, [qualities])] from the flags and the shipped weights."""
  from tfcodec import zoo
  if args.model and [m.lower() for m in args.model] == ["none"]:
    return []
  shipped = zoo.available_weights()
  wanted_q = parse_qualities(args.quality) if args.quality else None
  groups = {}
  for name, metric, quality in shipped:
    if args.model and name not in args.model:
      continue
    if args.metric and metric != args.metric:
      continue
    if wanted_q and quality not in wanted_q:
      continue
    groups.setdefault((name, metric), []).append(quality)
  listing = ", ".join(f"{n} {m} q{q}" for n, m, q in shipped) or "none"
  if args.model:
    # Everything named must exist: a typo should not silently shrink a run.
    for name in args.model:
      metrics = [args.metric] if args.metric else sorted(
          {m for n, m, _ in shipped if n == name}) or ["mse"]
      for metric in metrics:
        have = groups.get((name, metric), [])
        missing = sorted(set(wanted_q or []) - set(have))
        if not have or missing:
          at = f" at quality {','.join(map(str, missing))}" if missing else ""
          raise SystemExit(f"error: no shipped weights for {name} ({metric})"
                           f"{at}; shipped: {listing}")
  elif (args.quality or args.metric) and not groups:
    raise SystemExit(f"error: no shipped weights match --quality/--metric; "
                     f"shipped: {listing}")
  if not shipped and not args.model:
    print("notice: no shipped weights in tfcodec/weights/; measuring the "
          "baselines only", file=out)
  return [(n, m, sorted(q)) for (n, m), q in sorted(groups.items())]


def select_baselines(text, out):
  from tfcodec.eval import baselines
  if text.strip().lower() == "none":
    return []
  keys = list(baselines.BY_KEY) if text.strip().lower() == "all" else \
      [k.strip().lower() for k in text.split(",") if k.strip()]
  chosen = []
  for key in keys:
    if key not in baselines.BY_KEY:
      raise SystemExit(f"error: unknown baseline {key!r} (known: "
                       f"{', '.join(baselines.BY_KEY)})")
    codec = baselines.get(key)
    reason = codec.unavailable()
    if reason:
      print(f"notice: skipping {codec.label}: {reason}", file=out)
    else:
      chosen.append(codec)
  return chosen


def print_points(curve, out):
  from tfcodec.eval import tables
  print(f"\n{curve['name']}: {curve.get('description', '')}", file=out)
  for line in tables.points_table(curve):
    print(line, file=out)


def measure(args, out):
  """Runs every selected codec; returns the result dicts."""
  from tfcodec.eval import runner
  from tfcodec.util import quiet_tensorflow
  quiet_tensorflow()
  codecs = [runner.ModelCodec(n, m, q, refine_steps=args.refine_steps)
            for n, m, q in select_models(args, out)]
  codecs += select_baselines(args.baselines, out)
  if not codecs:
    raise SystemExit("error: nothing to evaluate (no models, no baselines)")
  images = runner.load_images(args.images, args.max_images)
  print(f"{len(images)} image(s) from {os.path.abspath(args.images)}; codecs: "
        + ", ".join(f"{c.label} x{len(c.settings)}" for c in codecs), file=out)
  total = len(images) * sum(len(c.settings) for c in codecs)
  progress = runner.Progress(total, enabled=not args.quiet)

  def report(setting, name, values):
    if progress.enabled and progress._tty:
      sys.stderr.write("\n")
    print(f"  {name} {setting}: {values['bpp']:.4f} bpp, "
          f"{values['psnr-rgb']:.2f} dB, MS-SSIM {values['ms-ssim-rgb']:.5f}, "
          f"enc {values['encoding_time']:.3f} s, dec "
          f"{values['decoding_time']:.3f} s", file=out, flush=True)

  curves = []
  for codec in codecs:
    try:
      curve = runner.evaluate(codec, images, progress, args.per_image,
                              report if args.per_image else None)
    except Exception as e:  # One broken optional codec must not end the run.
      progress.close()
      print(f"error: {codec.label} failed and is left out: "
            f"{type(e).__name__}: {e}", file=out)
      continue
    curve["images_folder"] = os.path.basename(os.path.normpath(args.images))
    curves.append(curve)
  progress.close()
  return curves


def main(argv=None, out=None):
  """Entry point (also for a `tfcodec eval` subcommand); returns the exit
  status."""
  out = out or sys.stdout
  args = build_parser().parse_args(argv)
  started = time.time()
  from tfcodec.eval import published, rddata, tables
  from tfcodec.eval import results as rd
  try:
    if args.from_results:
      curves = rddata.load_results(args.from_results)
      if not curves:
        raise SystemExit(f"error: no JSON results in {args.from_results!r}")
    else:
      curves = measure(args, out)
  except FileNotFoundError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except SystemExit as e:
    if isinstance(e.code, str):
      print(e.code, file=sys.stderr)
      return 2
    raise
  for curve in curves:
    print_points(curve, out)

  if args.output:
    for curve in curves:
      rd.write_json(curve, os.path.join(args.output, curve["key"] + ".json"))
    print(f"\nwrote {len(curves)} JSON file(s) to {args.output}", file=out)

  if args.rddata:
    target = os.path.join(args.rddata, "results")
    if not (args.from_results and os.path.isdir(target) and
            os.path.samefile(args.from_results, target)):
      rddata.write_results(args.rddata, curves, fresh=args.fresh)
    else:
      # The JSON files are the inputs; the .dat files are derived from them.
      for curve in curves:
        rddata.write_dats(curve, os.path.join(args.rddata, "dat"))
    bd_lines = rddata.build(args.rddata, args.anchors, out=out)
    print(f"\nwrote {args.rddata}/ (results, dat, published, plots, README.md)",
          file=out)
  else:
    ours = [c for c in curves if rddata.is_ours(c)]
    live = [c for c in curves if not rddata.is_ours(c)]
    pub = rddata.load_published(args.anchors, curves)
    anchors = live + [r for s, r in pub if s.key in published.BD_ANCHORS]
    bd_lines = (["## BD-rate", "", "### PSNR", ""] +
                tables.bd_table(ours + live, anchors, "psnr") +
                ["", "### MS-SSIM (dB)", ""] +
                tables.bd_table(ours + live, anchors, "ms-ssim"))
    if args.plot:
      from tfcodec.eval import plot
      if plot.available():
        for path in plot.write_plots(args.plot, ours, live, [r for _, r in pub]):
          print(f"wrote {path}", file=out)
      else:
        print("notice: matplotlib is not installed; no plots "
              "(pip install -r requirements-rd.txt)", file=out)
  print("", file=out)
  for line in bd_lines:
    print(line, file=out)
  print(f"\ndone in {time.time() - started:.1f} s", file=out)
  return 0
