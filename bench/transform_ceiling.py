"""What limits a shipped model's top rungs: quantization, the transforms, or bf16?

For each quality of a weight file, on a few Kodak images, prints
  * the forward pass with hard rounding: estimated bpp and PSNR,
  * the no-quantization ceiling: PSNR of g_s(g_a(x)), what the transforms can
    give however many bits the latents get,
  * with --chroma420, the PSNR of the images after a 4:2:0 chroma round trip
    (most of the training set is 4:2:0 JPEG), a cap that data would put on
    what training can teach,
under one arithmetic (--precision); run it once per precision to compare.
Example (RDdata/FLAGSHIP.md, "The AVIF target"):

  .venv/bin/python bench/transform_ceiling.py --precision=float32
  .venv/bin/python bench/transform_ceiling.py --precision=mixed_bfloat16
"""

import glob
import os
import sys

from absl import app, flags
import numpy as np
from PIL import Image
import tensorflow as tf

from tfcodec import metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

flags.DEFINE_string("weights", os.path.join(
    ROOT, "tfcodec", "weights", "mbt2018-mean-vr-mse-N192.npz"),
                    "A weight file written by tfcodec.zoo.save_weights.")
flags.DEFINE_list("qualities", ["5", "7"],
                  "Qualities to measure (variable-rate files: their rungs).")
flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16"],
                  "The Keras dtype policy the model is built under.")
flags.DEFINE_string("images", os.path.join(
    ROOT, "..", "shared", "data", "kodak", "kodim0[1-4].png"),
                    "A glob of evaluation images.")
flags.DEFINE_bool("chroma420", False,
                  "Also print the PSNR of a 4:2:0 chroma round trip.")
FLAGS = flags.FLAGS


def to_8bit(x_hat):
  """A [0, 1] float reconstruction as the 8-bit pixels a decoder writes."""
  return np.clip(np.round(tf.cast(x_hat, tf.float32)[0].numpy() * 255.),
                 0, 255)


def chroma420_psnr(path):
  image = Image.open(path).convert("RGB")
  luma, cb, cr = image.convert("YCbCr").split()
  half = (image.size[0] // 2, image.size[1] // 2)
  cb, cr = (c.resize(half, Image.BILINEAR).resize(image.size, Image.BILINEAR)
            for c in (cb, cr))
  round_trip = Image.merge("YCbCr", (luma, cb, cr)).convert("RGB")
  return metrics.psnr(np.asarray(image), np.asarray(round_trip))


def main(_):
  # The policy must be set before any layer is built.
  tf.keras.mixed_precision.set_global_policy(FLAGS.precision)
  from tfcodec import zoo

  paths = sorted(glob.glob(FLAGS.images))
  if not paths:
    raise SystemExit(f"no images match {FLAGS.images}")
  model = zoo.load_model(path=FLAGS.weights, freeze=False)
  images = [np.asarray(Image.open(p).convert("RGB"), np.float32)
            for p in paths]
  print(f"{os.path.basename(FLAGS.weights)}, {FLAGS.precision}, "
        f"{len(paths)} images")
  for quality in FLAGS.qualities:
    if hasattr(model, "set_quality"):
      model.set_quality(int(quality))
    bpps, psnrs, ceilings = [], [], []
    for image in images:
      # Kodak's sides are multiples of 64; other images would need padding.
      x = tf.constant(image[None] / 255.)
      outputs = model(x, training=False)
      bits = sum(float(tf.reduce_sum(b)) for b in outputs["bits"].values())
      bpps.append(bits / (image.shape[0] * image.shape[1]))
      psnrs.append(metrics.psnr(image, to_8bit(outputs["x_hat"])))
      x_bar = model.synthesis(model.analysis(x))
      ceilings.append(metrics.psnr(image, to_8bit(x_bar)))
    print(f"q{quality}: {np.mean(bpps):.4f} bpp, {np.mean(psnrs):.2f} dB "
          f"with rounding; no-quantization ceiling {np.mean(ceilings):.2f} dB")
  if FLAGS.chroma420:
    values = [chroma420_psnr(p) for p in paths]
    print("4:2:0 chroma round trip: " + ", ".join(
        f"{os.path.basename(p)} {v:.2f} dB" for p, v in zip(paths, values)))


if __name__ == "__main__":
  app.run(main)
