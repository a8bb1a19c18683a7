"""Encode and decode seconds per Kodak image, per registered model.

  python bench/codec_speed.py [--models mbt2018,cheng2020-attn] [--images 2]
      [--quality 1] [--threads 0]
  python bench/codec_speed.py --weights runs/x/export.npz --images kodim01,kodim23

Untrained (randomly initialised, then frozen) models at the given quality's
width: speed does not depend on the weights' values, only on the
architecture, the image size and, for context models, the number of
wavefront steps (3(H-1) + W for an H x W latent: 141 for 512 x 768).
Each model is warmed up once (tracing), then every image is encoded and
decoded; the median seconds are printed with the file size, the estimated
bits (the evaluation forward pass; for context models `coded_bits`, which
puts the coder's own y_hat in the context) and whether decode(encode(x)) equals the
encoder-side reconstruction bit for bit.

`--weights` (comma-separated weight files: shipped ones or a training run's
export.npz) times trained models instead, and adds what only trained weights
make meaningful: the PSNR of the decoded images and the estimated bits per
pixel of each latent (y, z, ...), so a checkpoint's coded size can be checked
against its training estimate before it is shipped. A file opens at the
quality it was saved at (`--quality` picks the rung of a variable-rate file).
`--images` is a count (the first Kodak images) or comma-separated names.

`--transforms exact,float` times both ways of running g_a and g_s (see
CompressionModel.freeze): "exact" (integer arithmetic in float64, the
default of encoder.py/decoder.py) and "float" (float32, --noexact_transforms).
For "float" the last columns compare with the exact mode's files and
pixels instead: same bytes or not, and the largest pixel difference.

`--stages` adds where the time goes, on the first image: the seconds of g_a
and of g_s alone (each traced once, median of three calls; g_s on round(y)),
the rest of encode and decode (hyperprior, entropy parameters, range coding:
for context models the wavefront loop), and the multiply-accumulates of g_a
and g_s (counted from the float32 graph's convolutions and matrix products).
MACs bound the transforms from below: the exact path does four int8 digit
products per MAC (tfcodec/layers/digits.py), so g_s cannot take less than
4 x its MACs / the int8 rate of the CPU.
"""

import argparse
import glob
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from tfcodec import zoo  # noqa: E402
from tfcodec.metrics import psnr  # noqa: E402
from tfcodec.models import MODELS, create_model  # noqa: E402
from tfcodec.models.base import pad_to_multiple  # noqa: E402
from graph_crc32 import median_seconds  # noqa: E402  (bench/, next to this)

KODAK = os.path.join(ROOT, "..", "shared", "data", "kodak")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", default=",".join(sorted(MODELS)))
  parser.add_argument("--images", default="2",
                      help="a count or comma-separated names (kodim01,...)")
  parser.add_argument("--quality", type=int, default=None,
                      help="untrained models: 1; weight files: their own")
  parser.add_argument("--weights", default="",
                      help="comma-separated weight files (.npz) to time "
                           "instead of untrained --models")
  parser.add_argument("--threads", type=int, default=0,
                      help="intra/inter-op threads (0: TensorFlow's default)")
  parser.add_argument("--transforms", default="exact",
                      help="comma-separated: exact, float")
  parser.add_argument("--likelihood", default=None,
                      help="override the likelihood (gaussian/gmm) of context models")
  parser.add_argument("--stages", action="store_true",
                      help="also time g_a and g_s alone and count their MACs")
  args = parser.parse_args()
  if args.threads:
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
  if args.images.isdigit():
    paths = sorted(glob.glob(os.path.join(KODAK, "kodim*.png")))[
        :int(args.images)]
  else:
    paths = [os.path.join(KODAK, n if n.endswith(".png") else n + ".png")
             for n in args.images.split(",")]
  images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
  print(f"{len(images)} Kodak image(s) "
        f"({', '.join(os.path.basename(p)[:-4] for p in paths)}), "
        f"{os.cpu_count()} CPUs")
  for name, model, tables in build_models(args):
    exact_files, exact_pixels = None, None
    for mode in args.transforms.split(","):
      model.freeze(tables, exact_transforms=(mode == "exact"))
      files, pixels, seconds = time_model(name, model, images, mode)
      if args.stages:
        print_stages(model, images[0], seconds, mode, tables)
      if mode == "exact":
        exact_files, exact_pixels = files, pixels
      elif exact_files is not None:
        same_bytes = all(a == b for a, b in zip(files, exact_files))
        worst = max(int(np.abs(a.astype(int) - b.astype(int)).max())
                    for a, b in zip(pixels, exact_pixels))
        print(f"{'':22s} float vs exact: same bytes {same_bytes}, "
              f"largest pixel difference {worst}", flush=True)


def build_models(args):
  """Yields (label, unfrozen model, stored coding tables or None)."""
  if args.weights:
    for path in args.weights.split(","):
      model = zoo.load_model(path=path, freeze=False)
      if args.quality is not None and hasattr(model, "set_quality"):
        model.set_quality(args.quality)
      quality = getattr(model, "quality", zoo.read_metadata(path)["quality"])
      print(f"{path}: {model.model_name} q{quality}, lambda "
            f"{float(model.lmbda):g}", flush=True)
      yield model.model_name, model, zoo.read_tables(path)
    return
  quality = 1 if args.quality is None else args.quality
  print(f"untrained models, quality {quality}")
  for name in args.models.split(","):
    tf.random.set_seed(0)
    kwargs = {}
    if args.likelihood and hasattr(MODELS[name], "_build_entropy"):
      kwargs["likelihood"] = args.likelihood
    yield name, create_model(name, quality, **kwargs), None


def time_model(name, model, images, mode):
  """Prints one line of timings; returns (file bytes, decoded images)."""
  model.compress(images[0][:64, :64])  # trace once
  model.decompress(*model.compress(images[0][:64, :64]), [64, 64])
  enc, dec, sizes, exact, estimated = [], [], [], True, []
  psnrs, latent_bits = [], {}
  files, pixels = [], []
  for image in images:
    start = time.perf_counter()
    strings, shapes = model.compress(image)
    enc.append(time.perf_counter() - start)
    start = time.perf_counter()
    decoded = model.decompress(strings, shapes, image.shape[:2]).numpy()
    dec.append(time.perf_counter() - start)
    files.append(b"".join(s.numpy() for s in strings))
    pixels.append(decoded)
    sizes.append(len(files[-1]))
    x = pad_to_multiple(tf.constant(image, tf.float32)[None] / 255.,
                        model.stride)
    # Context models neither estimate nor check with the forward pass, so it
    # runs only for the others.
    needs_forward = not (hasattr(model, "coded_bits")
                         and hasattr(model, "encode_latents"))
    forward = model(x, training=False) if needs_forward else None
    if mode == "exact":
      if hasattr(model, "encode_latents"):
        reference = model._to_image(model.g_s(model.encode_latents(x)[2]),
                                    image.shape[:2]).numpy()
      else:
        reference = model._to_image(forward["x_hat"], image.shape[:2]).numpy()
      exact &= bool(np.array_equal(decoded, reference))
    # Context models: the estimate with the coder's own y_hat in the
    # context (the forward pass's round(y) is 1-13% off for them).
    bits = (model.coded_bits(x) if hasattr(model, "coded_bits")
            else forward["bits"])
    bits = {latent: float(tf.reduce_sum(b)) for latent, b in bits.items()}
    estimated.append(sum(bits.values()))
    for latent, value in bits.items():
      latent_bits[latent] = latent_bits.get(latent, 0.) + value
    psnrs.append(psnr(image, decoded))
  pixel_count = sum(image.shape[0] * image.shape[1] for image in images)
  print(f"{name:22s} N={model.N} M={model.M} "
        f"{getattr(model, 'likelihood', '-'):8s} {mode:5s} "
        f"encode {np.median(enc):6.2f} s  decode {np.median(dec):6.2f} s  "
        f"payload {np.sum(sizes) * 8 / pixel_count:.4f} bpp  "
        f"file/estimated bits {np.sum(sizes) * 8 / np.sum(estimated):.4f}"
        + (f"  exact {exact}" if mode == "exact" else ""), flush=True)
  print(f"{'':22s} PSNR {np.mean(psnrs):.2f} dB (mean over images); "
        "estimated bpp " + ", ".join(
            f"{latent} {value / pixel_count:.4f}"
            for latent, value in latent_bits.items()), flush=True)
  return files, pixels, (float(np.median(enc)), float(np.median(dec)))


def transform_macs(model, x, y_hat, tables):
  """(g_a, g_s) multiply-accumulates for the padded image x and its y_hat,
  counted on the float32 graph (leaves the model frozen with float
  transforms)."""
  model.freeze(tables, exact_transforms=False)
  counts = []
  for module, value in ((model.g_a, x), (model.g_s, y_hat)):
    graph = tf.function(lambda v, m=module: m(v)).get_concrete_function(
        tf.TensorSpec(value.shape, value.dtype)).graph
    counts.append(sum(_op_macs(op) for op in graph.get_operations()))
  return counts


def _op_macs(op):
  def shape(tensor):
    return tensor.shape.as_list()
  if op.type in ("Conv2D", "DepthwiseConv2dNative"):
    kh, kw, cin, cout = shape(op.inputs[1])
    n, h, w, _ = shape(op.outputs[0])
    if op.type == "DepthwiseConv2dNative":
      cin = 1
    return n * h * w * kh * kw * cin * cout
  if op.type == "Conv2DBackpropInput":  # a transposed convolution
    # Filter [kh, kw, out, in]; every input position meets every tap.
    kh, kw, cout, cin = shape(op.inputs[1])
    n, h, w, _ = shape(op.inputs[2])
    return n * h * w * kh * kw * cin * cout
  if op.type in ("MatMul", "BatchMatMulV2", "BatchMatMulV3"):
    a, out = shape(op.inputs[0]), shape(op.outputs[0])
    inner = a[-2] if op.get_attr("adj_x" if "Batch" in op.type
                                 else "transpose_a") else a[-1]
    return int(np.prod(out)) * inner
  if op.type == "Einsum":
    inputs, output = op.get_attr("equation").decode().split("->")
    sizes = {}
    for labels, tensor in zip(inputs.split(","), op.inputs):
      sizes.update(zip(labels, shape(tensor)))
    contracted = set(sizes) - set(output)
    return int(np.prod(shape(op.outputs[0]))) * int(
        np.prod([sizes[label] for label in contracted]))
  return 0


def print_stages(model, image, seconds, mode, tables):
  """g_a and g_s alone vs the whole encode and decode (first image)."""
  x = pad_to_multiple(tf.constant(image, tf.float32)[None] / 255.,
                      model.stride)
  analysis = tf.function(lambda v: model.g_a(v))
  y_hat = tf.round(analysis(x))  # traces g_a once for both uses
  g_a = median_seconds(analysis, x, repeats=3)
  g_s = median_seconds(tf.function(lambda v: model.g_s(v)), y_hat, repeats=3)
  macs_a, macs_s = transform_macs(model, x, y_hat, tables)
  model.freeze(tables, exact_transforms=(mode == "exact"))
  encode, decode = seconds
  print(f"{'':22s} stages (first image): g_a {g_a:.2f} s, rest of encode "
        f"{encode - g_a:.2f} s; g_s {g_s:.2f} s, rest of decode "
        f"{decode - g_s:.2f} s; MACs g_a {macs_a / 1e9:.1f} G, "
        f"g_s {macs_s / 1e9:.1f} G", flush=True)


if __name__ == "__main__":
  main()
