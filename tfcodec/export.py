"""Export a model with shipped weights as a self-contained SavedModel.

  tfcodec export --model mbt2018-mean --quality 3 OUT_DIR
  python -m tfcodec.export --model mbt2018-mean --quality 3 OUT_DIR

The SavedModel has two serving signatures:

  compress    image: uint8 [H, W, 3] (any size)  -> bitstream: string []
  decompress  bitstream: string []               -> image: uint8 [H, W, 3]

`bitstream` is a whole `.tfci` file (header, strings, CRC; docs/FORMAT.md),
built and checked in the graph by `tfcodec.io.graph_bitstream`, so files move
freely between the SavedModel and encoder.py / decoder.py. The weights and
the range-coding tables built by `model.freeze()` travel inside as variables.
Loading needs only TensorFlow and tensorflow-compression (whose import
registers the range-coding ops):

  import tensorflow as tf, tensorflow_compression  # noqa: F401
  codec = tf.saved_model.load(OUT_DIR)
  data = codec.signatures["compress"](image=image)["bitstream"]

Every registered model exports: their decoders are tfc range-decoding ops plus
convolutions, with no Python-driven loop that would have to become a
tf.while_loop first.
"""

import argparse
import os
import shutil
import sys
import tempfile

DESCRIPTION = (
    "Export a model with its shipped weights as a TensorFlow SavedModel with "
    "two signatures: 'compress' (uint8 HxWx3 image -> the bytes of a .tfci "
    "file) and 'decompress' (.tfci bytes -> uint8 image). It loads with "
    "tf.saved_model.load in any process that imports tensorflow and "
    "tensorflow_compression; tfcodec is not needed.")


def expected_latent_shapes(model, height, width):
  """Latent shapes (int32 [2] tensors) for an image size, in the graph.

  The graph twin of `codec.expected_latent_shapes`, from the model's
  `latent_factors` and the image padded to the model's stride.
  """
  import tensorflow as tf
  from tfcodec.models.base import latent_shape
  padded_h = (height + model.stride - 1) // model.stride * model.stride
  padded_w = (width + model.stride - 1) // model.stride * model.stride
  return [tf.stack(latent_shape(model.latent_factors[n], padded_h, padded_w))
          for n in model.shape_names]


def build_module(model, quality):
  """A tf.Module with `compress` / `decompress` tf.functions for a frozen model.

  The module tracks the model's variables (weights, and the CDF tables that
  `freeze()` created in the tfc entropy models), so they are saved with it.
  It deliberately does not track the Keras model itself: saving a Keras
  object makes TensorFlow re-trace every layer for Keras' own SavedModel
  metadata, which tfc's GDN cannot do in a graph and which the two signatures
  do not need. The functions reach the model through the closure instead.
  """
  import tensorflow as tf
  from tfcodec.io import graph_bitstream
  from tfcodec.io.bitstream import MAX_DIMENSION

  model._require_frozen()
  name, metric, quality = model.model_name, model.metric, int(quality)
  if hasattr(model, "set_quality"):
    # A variable-rate model's graphs read its quality variable: the export
    # codes (and accepts) this quality only.
    model.set_quality(quality)

  image_spec = tf.TensorSpec([None, None, 3], tf.uint8)
  bitstream_spec = tf.TensorSpec([], tf.string)

  def compress(image):
    checks = graph_bitstream.Checks()
    shape = tf.shape(image)
    checks.require(
        tf.reduce_all([shape[0] > 0, shape[0] <= MAX_DIMENSION,
                       shape[1] > 0, shape[1] <= MAX_DIMENSION]),
        f"image size outside 1..{MAX_DIMENSION}:", shape)
    image = checks.guard(image)
    strings, shapes = model.compress(image)
    data = graph_bitstream.encode(name, quality, metric, shape[0], shape[1],
                                  strings, model.weights_id)
    return {"bitstream": data}

  def decompress(bitstream):
    height, width, strings, checks = graph_bitstream.decode(
        bitstream, name, quality, metric, len(model.string_names),
        weights_id=model.weights_id)
    # Not stored in the file: they follow from the size (docs/FORMAT.md).
    shapes = expected_latent_shapes(model, height, width)
    image = model.decompress(strings, shapes, tf.stack([height, width]))
    return {"image": image}

  module = tf.Module(name="tfcodec")
  module.model_variables = tuple(model.variables)
  # Instance-level tf.functions: the module's attributes and the serving
  # signatures are the same functions, so the SavedModel holds each graph once.
  module.compress = tf.function(compress, input_signature=[image_spec],
                                autograph=False)
  module.decompress = tf.function(decompress, input_signature=[bitstream_spec],
                                  autograph=False)
  return module


def export_model(model, quality, out_dir, overwrite=False):
  """Writes the SavedModel for a frozen model to `out_dir`; returns the module.

  The SavedModel is written next to `out_dir` and renamed into place, so an
  interrupted export never leaves a half-written directory behind.
  """
  import tensorflow as tf
  out_dir = os.path.abspath(out_dir)
  if os.path.exists(out_dir) and os.listdir(out_dir) and not overwrite:
    raise FileExistsError(f"{out_dir} exists and is not empty (pass "
                          "--overwrite to replace it)")
  module = build_module(model, quality)
  parent = os.path.dirname(out_dir)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".tmp-export-", dir=parent)
  try:
    # Passing the tf.functions (not concrete functions traced beforehand)
    # lets the saver trace each once, in its own context; a trace made
    # outside would be traced again inside and stored twice.
    tf.saved_model.save(module, tmp, signatures={
        "compress": module.compress, "decompress": module.decompress})
    if os.path.exists(out_dir):
      shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    # mkdtemp creates the directory private (0700); give it the usual mode.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(out_dir, 0o777 & ~umask)
  finally:
    if os.path.exists(tmp):
      shutil.rmtree(tmp)
  return module


def directory_size(path):
  """Bytes of all files under `path` (what `du` reports, give or take blocks)."""
  return sum(os.path.getsize(os.path.join(root, f))
             for root, _, files in os.walk(path) for f in files)


def add_arguments(parser):
  """Export options, shared by `tfcodec export` and `python -m tfcodec.export`."""
  parser.add_argument("out_dir", metavar="OUT_DIR",
                      help="Directory to write the SavedModel to.")
  parser.add_argument("--model", default=None,
                      help="Registered model name; the default is the "
                      "project's default model (mbt2018-mean).")
  parser.add_argument("--quality", type=int, default=3,
                      help="Quality level (1..8, 0 for mbt2018-mean-vr's low "
                      "rung) of the shipped weights to export (default 3).")
  parser.add_argument("--metric", default="mse", choices=("mse", "ms-ssim"),
                      help="Export the weights trained for MSE or for MS-SSIM.")
  parser.add_argument("--weights", default=None,
                      help="A weights .npz to export instead of the shipped "
                      "file (its metadata names the model and quality).")
  parser.add_argument("--overwrite", action="store_true",
                      help="Replace OUT_DIR if it already holds files.")


def build_parser():
  parser = argparse.ArgumentParser(
      prog="python -m tfcodec.export", description=DESCRIPTION)
  add_arguments(parser)
  return parser


def run(args, out=sys.stdout):
  """Runs an export from parsed arguments; returns the exit status."""
  from tfcodec import zoo
  from tfcodec.cli import UsageError, load_shipped_model
  from tfcodec.util import quiet_tensorflow
  quiet_tensorflow()
  try:
    if args.weights:
      model = zoo.load_model(path=args.weights)
      quality = int(zoo.read_metadata(args.weights)["quality"])
    else:
      quality = args.quality
      model = load_shipped_model(args.model or zoo.DEFAULT_MODEL, quality,
                                 args.metric)
    export_model(model, quality, args.out_dir, overwrite=args.overwrite)
  except (UsageError, FileNotFoundError, FileExistsError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  size = directory_size(args.out_dir)
  print(f"exported {model.model_name} {model.metric} q{quality} to "
        f"{args.out_dir} ({size / 1e6:.1f} MB)\n"
        "  signature compress:   image uint8 [H, W, 3] -> bitstream string [] "
        "(the bytes of a .tfci file)\n"
        "  signature decompress: bitstream string [] -> image uint8 [H, W, 3]\n"
        "Load it with: import tensorflow as tf, tensorflow_compression; "
        "tf.saved_model.load(OUT_DIR)", file=out)
  return 0


def main(argv=None):
  args = build_parser().parse_args(argv)
  return run(args)


if __name__ == "__main__":
  sys.exit(main())
