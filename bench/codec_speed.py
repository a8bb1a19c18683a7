"""Encode and decode seconds per Kodak image, per registered model.

  python bench/codec_speed.py [--models mbt2018,cheng2020-attn] [--images 2]
      [--quality 1] [--threads 0]

Untrained (randomly initialised, then frozen) models at the given quality's
width: speed does not depend on the weights' values, only on the
architecture, the image size and, for context models, the number of
wavefront steps (3(H-1) + W for an H x W latent: 141 for 512 x 768).
Each model is warmed up once (tracing), then every image is encoded and
decoded; the median seconds are printed with the file size, the estimated
bits of the evaluation forward pass and whether decode(encode(x)) equals the
encoder-side reconstruction bit for bit.

`--transforms exact,float` times both ways of running g_a and g_s (see
CompressionModel.freeze): "exact" (integer arithmetic in float64, the
default of encoder.py/decoder.py) and "float" (float32, --noexact_transforms).
For "float" the last columns compare with the exact mode's files and
pixels instead: same bytes or not, and the largest pixel difference.
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

from tfcodec.models import MODELS, create_model  # noqa: E402
from tfcodec.models.base import pad_to_multiple  # noqa: E402

KODAK = os.path.join(ROOT, "..", "shared", "data", "kodak")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", default=",".join(sorted(MODELS)))
  parser.add_argument("--images", type=int, default=2)
  parser.add_argument("--quality", type=int, default=1)
  parser.add_argument("--threads", type=int, default=0,
                      help="intra/inter-op threads (0: TensorFlow's default)")
  parser.add_argument("--transforms", default="exact",
                      help="comma-separated: exact, float")
  parser.add_argument("--likelihood", default=None,
                      help="override the likelihood (gaussian/gmm) of context models")
  args = parser.parse_args()
  if args.threads:
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
  paths = sorted(glob.glob(os.path.join(KODAK, "kodim*.png")))[:args.images]
  images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
  print(f"{len(images)} Kodak image(s), quality {args.quality}, "
        f"{os.cpu_count()} CPUs")
  for name in args.models.split(","):
    tf.random.set_seed(0)
    kwargs = {}
    if args.likelihood and hasattr(MODELS[name], "_build_entropy"):
      kwargs["likelihood"] = args.likelihood
    model = create_model(name, args.quality, **kwargs)
    exact_files, exact_pixels = None, None
    for mode in args.transforms.split(","):
      model.freeze(exact_transforms=(mode == "exact"))
      files, pixels = time_model(name, model, images, mode)
      if mode == "exact":
        exact_files, exact_pixels = files, pixels
      elif exact_files is not None:
        same_bytes = all(a == b for a, b in zip(files, exact_files))
        worst = max(int(np.abs(a.astype(int) - b.astype(int)).max())
                    for a, b in zip(pixels, exact_pixels))
        print(f"{'':22s} float vs exact: same bytes {same_bytes}, "
              f"largest pixel difference {worst}", flush=True)


def time_model(name, model, images, mode):
  """Prints one line of timings; returns (file bytes, decoded images)."""
  model.compress(images[0][:64, :64])  # trace once
  model.decompress(*model.compress(images[0][:64, :64]), [64, 64])
  enc, dec, sizes, exact, estimated = [], [], [], True, []
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
    if mode == "exact":
      if hasattr(model, "encode_latents"):
        reference = model._to_image(model.g_s(model.encode_latents(x)[2]),
                                    image.shape[:2]).numpy()
      else:
        reference = model._to_image(model(x, training=False)["x_hat"],
                                    image.shape[:2]).numpy()
      exact &= bool(np.array_equal(decoded, reference))
    bits = model(x, training=False)["bits"]
    estimated.append(sum(float(tf.reduce_sum(b)) for b in bits.values()))
  print(f"{name:22s} N={model.N} M={model.M} "
        f"{getattr(model, 'likelihood', '-'):8s} {mode:5s} "
        f"encode {np.median(enc):6.2f} s  decode {np.median(dec):6.2f} s  "
        f"payload {np.mean(sizes) * 8 / images[0][..., 0].size:.3f} bpp  "
        f"file/estimated bits {np.sum(sizes) * 8 / np.sum(estimated):.3f}"
        + (f"  exact {exact}" if mode == "exact" else ""), flush=True)
  return files, pixels

if __name__ == "__main__":
  main()
