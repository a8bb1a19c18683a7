"""The `tfcodec` command: everyday compression with the shipped models.

  tfcodec compress IN.png [OUT.tfci]     (--model, --quality, --target_bpp, ...)
  tfcodec decompress IN.tfci [OUT.png]   (--reference for PSNR / MS-SSIM)
  tfcodec info FILE.tfci...              header fields and CRC status
  tfcodec models                         registry, qualities, shipped weights
  tfcodec eval ...                       tfcodec.eval (RD evaluation)
  tfcodec export OUT_DIR                 SavedModel with compress/decompress

Installed as a console script by `pip install -e .`; `python -m tfcodec`
runs the same thing. TensorFlow is imported only by the subcommands that need
it, so `--help` answers at once. Exit status: 0 on success, 1 when a file
could not be processed (bad image, corrupt bitstream, CRC mismatch), 2 for
usage errors (unknown model, weights not shipped, output already exists).
"""

import argparse
import functools
import glob
import json
import os
import struct
import sys
import warnings
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_GLOB = os.path.join(ROOT, "RDdata", "results", "*.json")
DEFAULT_QUALITY = 3


class UsageError(Exception):
  """A request that cannot be served as asked (message says what exists)."""


# -- shared helpers --------------------------------------------------------------

def _quiet():
  from tfcodec.util import quiet_tensorflow
  quiet_tensorflow()


def shipped_summary(name=None):
  """One sentence listing shipped weights (of one model, or all)."""
  from tfcodec import zoo
  shipped = [w for w in zoo.available_weights() if name is None or w[0] == name]
  if not shipped:
    everything = zoo.available_weights()
    other = ", ".join(f"{n} {m} q{q}" for n, m, q in everything) or "none"
    return (f"No weights are shipped for {name}; shipped weights: {other}."
            if name else "No weights are shipped.")
  listed = ", ".join(f"{m} q{q}" if name else f"{n} {m} q{q}"
                     for n, m, q in shipped)
  return (f"Shipped for {name}: {listed}." if name
          else f"Shipped weights: {listed}.")


def check_model_name(name):
  from tfcodec.models import MODELS
  if name not in MODELS:
    raise UsageError(f"unknown model {name!r}; registered models: "
                     f"{', '.join(sorted(MODELS))}")


def load_shipped_model(name, quality, metric):
  """The frozen model with shipped weights, or a UsageError saying what exists."""
  from tfcodec import codec, zoo
  from tfcodec.models import qualities
  check_model_name(name)
  valid = qualities(name)
  if quality not in valid:
    raise UsageError(f"quality must be one of {valid[0]}..{valid[-1]}, "
                     f"got {quality}. {shipped_summary(name)}")
  # A variable-rate file need not hold every rung of its network (the MS-SSIM
  # ladder has no q0), so ask what is shipped, not whether the file exists.
  if quality not in shipped_qualities(name, metric):
    raise UsageError(f"no shipped weights for {name} ({metric}) at quality "
                     f"{quality}. {shipped_summary(name)}")
  return codec.get_model(name, quality, metric)


def shipped_qualities(name, metric):
  from tfcodec import zoo
  return sorted(q for n, m, q in zoo.available_weights()
                if n == name and m == metric)


def _check_output(path, force):
  if os.path.exists(path) and not force:
    raise UsageError(f"{path} already exists (pass -f to overwrite it, or "
                     "give another output path)")


def _bpp(num_bytes, height, width):
  return 8. * num_bytes / (height * width)


# -- compress -------------------------------------------------------------------

def pick_quality_for_bpp(model_name, metric, image, target_bpp,
                         refine_steps=0):
  """Encodes `image` at every shipped quality; returns (quality, data, tried).

  The chosen quality is the one whose file is closest to `target_bpp`
  (absolute difference; ties go to the higher quality). `tried` maps each
  quality to its bpp, so the caller can show the choice.
  """
  from tfcodec import codec
  qualities = shipped_qualities(model_name, metric)
  if not qualities:
    raise UsageError(f"--target_bpp needs shipped weights for {model_name} "
                     f"({metric}). {shipped_summary(model_name)}")
  tried, files = {}, {}
  for quality in qualities:
    model = load_shipped_model(model_name, quality, metric)
    files[quality] = codec.encode_image(model, image, quality,
                                        refine_steps=refine_steps)
    tried[quality] = _bpp(len(files[quality]), *image.shape[:2])
  best = min(qualities, key=lambda q: (abs(tried[q] - target_bpp), -q))
  return best, files[best], tried


def run_compress(args, out):
  from tfcodec import codec, zoo
  from tfcodec.io.images import ImageError, atomic_write, read_image
  _quiet()
  name = args.model or zoo.DEFAULT_MODEL
  output = args.output or os.path.splitext(args.input)[0] + ".tfci"
  check_model_name(name)
  if args.target_bpp is not None and args.quality is not None:
    raise UsageError("give either --quality or --target_bpp, not both")
  if args.target_bpp is not None and not args.target_bpp > 0:
    raise UsageError(f"--target_bpp must be positive, got {args.target_bpp}")
  if args.refine_steps < 0:
    raise UsageError(f"--refine_steps must be >= 0, got {args.refine_steps}")
  if args.refine_steps and not _registered(name).supports_refinement:
    raise UsageError(f"{name} does not support --refine_steps (latent "
                     "refinement: mbt2018-mean and mbt2018-mean-vr)")
  _check_output(output, args.force)
  try:
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always")
      image = read_image(args.input)
    for w in caught:
      print(f"warning: {w.message}", file=sys.stderr)
  except (ImageError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  if args.target_bpp is not None:
    quality, data, tried = pick_quality_for_bpp(name, args.metric, image,
                                                args.target_bpp,
                                                args.refine_steps)
    options = ", ".join(f"q{q} {b:.4f}" for q, b in sorted(tried.items()))
    print(f"target {args.target_bpp:g} bpp: shipped qualities give {options}; "
          f"chose quality {quality}", file=out)
  else:
    quality = DEFAULT_QUALITY if args.quality is None else args.quality
    model = load_shipped_model(name, quality, args.metric)
    data = codec.encode_image(model, image, quality,
                              refine_steps=args.refine_steps)
  try:
    atomic_write(output, data)
  except OSError as e:
    print(f"error: {output}: cannot write ({e.strerror or e})", file=sys.stderr)
    return 1
  height, width = image.shape[:2]
  print(f"{args.input} -> {output}: {width}x{height}, {len(data)} bytes, "
        f"{_bpp(len(data), height, width):.4f} bpp ({name} {args.metric} "
        f"q{quality})", file=out)
  return 0


# -- decompress -----------------------------------------------------------------

def run_decompress(args, out):
  from tfcodec import codec
  from tfcodec.io.bitstream import FormatError
  from tfcodec.io.images import ImageError, read_image, write_png
  output = args.output or os.path.splitext(args.input)[0] + ".png"
  _check_output(output, args.force)
  _quiet()
  try:
    with open(args.input, "rb") as f:
      data = f.read()
    image = codec.decode_bytes(data)
    write_png(output, image)
  except (FormatError, OSError, MemoryError) as e:
    print(f"error: {args.input}: {e}", file=sys.stderr)
    return 1
  except Exception as e:  # noqa: BLE001 (a bad file must not print a traceback)
    print(f"error: {args.input}: {codec._unexpected(e)}", file=sys.stderr)
    return 1
  height, width = image.shape[:2]
  line = (f"{args.input} -> {output}: {width}x{height}, "
          f"{_bpp(len(data), height, width):.4f} bpp")
  if args.reference:
    from tfcodec import metrics
    try:
      reference = read_image(args.reference)
    except (ImageError, OSError) as e:
      print(f"error: reference: {e}", file=sys.stderr)
      return 1
    if reference.shape != image.shape:
      print(f"error: reference {args.reference} is {reference.shape[1]}x"
            f"{reference.shape[0]}, the decoded image {width}x{height}",
            file=sys.stderr)
      return 1
    line += (f", PSNR {metrics.psnr(reference, image):.2f} dB, MS-SSIM "
             f"{metrics.ms_ssim(reference, image):.4f}")
  print(line, file=out)
  return 0


# -- info -------------------------------------------------------------------------

def describe_file(path):
  """(lines, ok) describing a .tfci file's header and CRC, never raising.

  The CRC is checked on its own, and the header is then parsed as if the CRC
  were right, so a damaged file still shows what its header claims (marked
  unreliable) instead of only "CRC mismatch".
  """
  from tfcodec.io.bitstream import Bitstream, FormatError
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    return [f"{path}: error: {e}"], False
  lines = [f"{path}: {len(data)} bytes"]
  if len(data) < 8:
    return lines + ["  error: too short to be a .tfci file"], False
  stored = struct.unpack(">I", data[-4:])[0]
  computed = zlib.crc32(data[:-4])
  crc_ok = stored == computed
  try:
    stream = Bitstream.from_bytes(data[:-4] + struct.pack(">I", computed))
  except FormatError as e:
    crc = "ok" if crc_ok else "FAILED"
    return lines + [f"  error: {e}", f"  CRC32:        {crc} (stored "
                    f"0x{stored:08x}, computed 0x{computed:08x})"], False
  payloads = stream.payloads()
  first_strings = payloads[0]
  names = _string_names(stream.model, len(first_strings))
  shapes = _latent_shapes(stream)
  # Bytes per string name, summed over tiles for a tiled file.
  totals = [sum(len(strings[i]) for strings in payloads
                if i < len(strings)) for i in range(len(names))]
  strings = ", ".join(f"{n} {t}" for n, t in zip(names, totals))
  payload_bytes = sum(len(s) for strings_ in payloads for s in strings_)
  lines += [
      f"  model:        {stream.model}{_model_status(stream)}",
      f"  quality:      {stream.quality}",
      f"  metric:       {stream.metric}",
      f"  weights id:   {stream.weights_id:08x}",
      f"  size:         {stream.width}x{stream.height} (width x height), "
      f"{_bpp(len(data), stream.height, stream.width):.4f} bpp",
  ]
  if stream.tiled:
    rows, cols = stream.tile_grid()
    lines.append(f"  tiles:        {cols}x{rows} of {stream.tile_size} px "
                 f"(format version {stream.version}); latents of the first "
                 "tile:")
  lines += [
      f"  latents:      {shapes}",
      f"  string bytes: {strings}  (header and CRC: "
      f"{len(data) - payload_bytes})",
  ]
  if crc_ok:
    lines.append(f"  CRC32:        ok (0x{stored:08x})")
  else:
    lines.append(f"  CRC32:        FAILED: stored 0x{stored:08x}, computed "
                 f"0x{computed:08x}; the file is corrupted or truncated, and "
                 "the fields above may be wrong")
  return lines, crc_ok


def _registered(name):
  from tfcodec.models import MODELS
  return MODELS.get(name)


def _string_names(model, count):
  cls = _registered(model)
  if cls is not None and len(cls.string_names) == count:
    return cls.string_names
  return [f"#{i}" for i in range(count)]


def _latent_shapes(stream):
  """The first tile's latent shapes (not stored: derived from its size)."""
  from tfcodec import codec
  cls = _registered(stream.model)
  if cls is None:
    return "unknown (model not known)"
  _, _, tile_h, tile_w = stream.tile_boxes()[0]
  shapes = codec.expected_latent_shapes(cls, tile_h, tile_w)
  return ", ".join(f"{n} {'x'.join(map(str, s))}"
                   for n, s in zip(cls.shape_names, shapes))


def _model_status(stream):
  from tfcodec import zoo
  if _registered(stream.model) is None:
    return " (not a model this tfcodec knows)"
  if os.path.exists(zoo.weights_path(stream.model, stream.quality, stream.metric)):
    return " (weights installed)"
  return " (weights for this quality are not installed)"


def run_info(args, out):
  _quiet()
  status = 0
  for path in args.files:
    lines, ok = describe_file(path)
    print("\n".join(lines), file=out)
    status = status if ok else 1
  return status


# -- models -----------------------------------------------------------------------

def measured_points(pattern=RESULTS_GLOB):
  """{(model, metric, quality): (bpp, psnr)} from RD results, if any.

  Reads the JSON results `tfcodec.eval` writes (CompressAI's layout, with our
  "model"/"metric" keys and a "setting" list giving each point's quality).
  Files without those keys (e.g. classical codecs) are skipped, as are files
  that cannot be read.
  """
  points = {}
  for path in sorted(glob.glob(pattern)):
    try:
      with open(path) as f:
        result = json.load(f)
      values = result["results"]
      model = result.get("model")
      settings = values.get("setting") or values.get("quality")
      if not model or not settings:
        continue
      metric = result.get("metric", "mse")
      for quality, bpp, psnr in zip(settings, values["bpp"],
                                    values["psnr-rgb"]):
        points[(model, metric, int(quality))] = (float(bpp), float(psnr))
    except (OSError, ValueError, KeyError, TypeError):
      continue
  return points


def parameter_count(name, quality, metric=None):
  """Trainable parameters at a quality: from the shipped file when there is
  one (no model is built; `metric`'s file, else the MSE one, else MS-SSIM's:
  a variable-rate file's count includes its ladder's gains, so the q0-q4 MSE
  file holds 2 x M more than the q1-q4 MS-SSIM one), else by building the
  model once per (N, M)."""
  import numpy as np
  from tfcodec import zoo
  from tfcodec.models import quality_config
  for metric in ((metric,) if metric else ()) + ("mse", "ms-ssim"):
    path = zoo.weights_path(name, quality, metric)
    if os.path.exists(path):
      with np.load(path) as data:
        return sum(int(data[k].size) for k in data.files
                   if not k.startswith("__"))
  n, m, _ = quality_config(name, quality)
  return _built_parameter_count(name, n, m)


@functools.lru_cache(maxsize=None)
def _built_parameter_count(name, n, m):
  import numpy as np
  from tfcodec.models import create_model
  model = create_model(name, N=n, M=m)
  return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def models_report(results_glob=RESULTS_GLOB):
  """The registry as text lines: one table per model."""
  from tfcodec import zoo
  from tfcodec.models import MODELS, qualities, quality_config
  shipped = zoo.available_weights()
  measured = measured_points(results_glob)
  lines = [f"{len(MODELS)} registered models (default: {zoo.DEFAULT_MODEL} "
           f"q{DEFAULT_QUALITY}). Weights directory: {zoo.WEIGHTS_DIR}", ""]
  for name in sorted(MODELS):
    cls = MODELS[name]
    doc = (cls.__doc__ or "").strip().splitlines()[0].split(" Args:")[0]
    lines.append(f"{name}: {doc}")
    lines.append(f"  stride {cls.stride}, strings {', '.join(cls.string_names)}")
    lines.append(f"  {'q':>2} {'N':>4} {'M':>4} {'lambda mse':>11} "
                 f"{'lambda ms-ssim':>15} {'params':>7}  shipped  Kodak "
                 "(measured: bpp, PSNR)")
    for quality in qualities(name):
      n, m, lmbda = quality_config(name, quality)
      try:
        ms_ssim_lambda = f"{quality_config(name, quality, 'ms-ssim')[2]:>15.2f}"
      except ValueError:  # e.g. TCM: released for MSE only
        ms_ssim_lambda = f"{'-':>15}"
      metrics_here = [mt for nm, mt, q in shipped if nm == name and q == quality]
      kodak = []
      for metric in metrics_here:
        point = measured.get((name, metric, quality))
        kodak.append(f"{metric}: {point[0]:.4f} bpp, {point[1]:.2f} dB" if point
                     else f"{metric}: not measured")
      params = parameter_count(name, quality) / 1e6
      if metrics_here:
        # A shipped file may be narrower than the table (e.g. mbt2018 at
        # N=128, warm-started from mbt2018-mean): list what it holds.
        meta = zoo.read_metadata(zoo.weights_path(name, quality,
                                                  metrics_here[0]))
        if (meta["N"], meta["M"]) != (n, m):
          kodak.append(f"shipped file N={meta['N']}, M={meta['M']}; the "
                       f"table's N={n}, M={m}")
          n, m = meta["N"], meta["M"]
      lines.append(
          f"  {quality:>2} {n:>4} {m:>4} {lmbda:>11.4f} "
          f"{ms_ssim_lambda} {params:>6.2f}M  "
          f"{','.join(metrics_here) or '-':<7}  {'; '.join(kodak) or '-'}")
    lines.append("")
  lines.append(shipped_summary())
  return lines


def run_models(args, out):
  _quiet()
  print("\n".join(models_report()), file=out)
  return 0


# -- eval and export (delegated) -------------------------------------------------

EVAL_HELP = ("Rate-distortion evaluation (tfcodec.eval): every shipped model "
             "and classical codecs on Kodak with real files, BD-rates, plots "
             "and the RDdata/ tree. All arguments after 'eval' are passed to "
             "it; 'tfcodec eval --help' lists them.")


def run_eval(argv, out):
  """Hands every argument to tfcodec.eval.main (imported only now)."""
  try:
    from tfcodec.eval import main as eval_main
  except ImportError as e:
    print(f"{EVAL_HELP}\n\nerror: the evaluation package tfcodec.eval is not "
          f"available in this installation ({e}).", file=out)
    return 2
  return eval_main(list(argv))


def run_export(args, out):
  from tfcodec import export
  return export.run(args, out=out)


# -- parser -----------------------------------------------------------------------

def build_parser():
  parser = argparse.ArgumentParser(
      prog="tfcodec",
      description="Learned image compression with tfcodec's shipped models: "
                  "compress images to .tfci files and back, inspect files, "
                  "list the models, evaluate, and export SavedModels.",
      epilog="Run 'tfcodec COMMAND --help' for a command's options.")
  sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

  p = sub.add_parser(
      "compress", help="Compress an image to a .tfci file.",
      description="Compress one image (PNG, JPEG, ...; RGBA, grayscale and "
                  "palette images are converted to RGB) to a .tfci file with "
                  "a shipped model. The file records the model, quality and "
                  "size, so decompressing needs no options.")
  p.add_argument("input", metavar="IN", help="The image to compress.")
  p.add_argument("output", metavar="OUT", nargs="?",
                 help="The .tfci file to write (default: IN with a .tfci "
                      "extension).")
  p.add_argument("--model", default=None,
                 help="Registered model name (default: the best shipped, "
                      "mbt2018-mean-vr); "
                      "'tfcodec models' lists them.")
  p.add_argument("--quality", type=int, default=None,
                 help=f"Quality level 1..8 of the shipped weights, 0 for "
                      f"mbt2018-mean-vr's low rung (default "
                      f"{DEFAULT_QUALITY}).")
  p.add_argument("--metric", default="mse", choices=("mse", "ms-ssim"),
                 help="Use weights trained for MSE (default) or MS-SSIM.")
  p.add_argument("--target_bpp", type=float, default=None,
                 help="Instead of --quality: encode at every shipped quality "
                      "of the model and keep the file whose bits per pixel "
                      "are closest to this value.")
  p.add_argument("--refine_steps", type=int, default=0,
                 help="Encoder-side latent refinement: Adam steps on the "
                      "image's latents before coding (slower encoding, "
                      "smaller files at equal quality; mbt2018-mean and "
                      "mbt2018-mean-vr).")
  p.add_argument("-f", "--force", action="store_true",
                 help="Overwrite OUT if it exists.")
  p.set_defaults(run=run_compress)

  p = sub.add_parser(
      "decompress", help="Decompress a .tfci file to a PNG image.",
      description="Decompress a .tfci file to PNG. The model, quality and "
                  "image size are read from the file; its CRC and header are "
                  "checked first.")
  p.add_argument("input", metavar="IN", help="The .tfci file to decompress.")
  p.add_argument("output", metavar="OUT", nargs="?",
                 help="The PNG to write (default: IN with a .png extension).")
  p.add_argument("--reference", default=None,
                 help="The original image; when given, PSNR and MS-SSIM "
                      "against it are printed.")
  p.add_argument("-f", "--force", action="store_true",
                 help="Overwrite OUT if it exists.")
  p.set_defaults(run=run_decompress)

  p = sub.add_parser(
      "info", help="Show a .tfci file's header and check its CRC.",
      description="Print what a .tfci file's header says (model, quality, "
                  "metric, image size, latent shapes, bytes per string) and "
                  "whether its CRC32 matches. Nothing is decoded. The exit "
                  "status is 1 if any file is damaged.")
  p.add_argument("files", metavar="FILE", nargs="+", help=".tfci files.")
  p.set_defaults(run=run_info)

  p = sub.add_parser(
      "models", help="List the registered models, qualities and shipped weights.",
      description="List every registered model with its quality table (N, M "
                  "and lambda per quality), parameter counts, which weights "
                  "are shipped, and their measured Kodak bpp and PSNR when "
                  "RDdata/results holds a measurement.")
  p.set_defaults(run=run_models)

  # Listed for 'tfcodec --help'; main() hands its arguments over untouched.
  sub.add_parser("eval", help="Evaluate rate-distortion on Kodak (tfcodec.eval).",
                 description=EVAL_HELP, add_help=False)

  from tfcodec import export
  p = sub.add_parser("export", help="Export a SavedModel with compress and "
                     "decompress signatures.", description=export.DESCRIPTION)
  export.add_arguments(p)
  p.set_defaults(run=run_export)
  return parser


def main(argv=None, out=None):
  """Runs the command line; returns the exit status."""
  # TensorFlow prints CUDA-plugin registration errors at import on machines
  # without GPUs; a command-line tool hides them unless the user chose a level.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  argv = sys.argv[1:] if argv is None else list(argv)
  out = out or sys.stdout
  if argv and argv[0] == "eval":
    return run_eval(argv[1:], out)
  args = build_parser().parse_args(argv)
  try:
    return args.run(args, out)
  except UsageError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
