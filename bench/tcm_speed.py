"""TCM speed: encode/decode seconds on a Kodak image, and train-step seconds.

  python bench/tcm_speed.py [--model tcm-s] [--image kodim01.png]
      [--weights W.npz] [--fit_steps 0] [--train_steps 3] [--batch 8]
      [--patch 256] [--precision mixed_bfloat16] [--tiny]

Prints, for one 768x512 Kodak image through the real container:
  * encode and decode wall seconds (first call = tracing + run; then a warm
    call), and the bit-exactness of the decode against the encoder side;
  * file bits (whole .tfci) and payload bits against the bits the forward
    pass estimates with real rounding (their ratio should be ~1 for a
    trained model);
  * seconds per training step (batch x patch^2, `--precision`), after one
    warm-up step that includes tracing.
Without `--weights` the model is randomly initialised: the speeds are
representative, the bit counts are not (`--fit_steps N` first trains the
model for N steps on crops of the image so its scales mean something).
"""

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from tfcodec.util import quiet_tensorflow  # noqa: E402

KODAK = os.path.join(HERE, "..", "..", "shared", "data", "kodak")
TINY_TCM = dict(N=8, M=40, window=4, hyper_window=2,
                head_dims=(4, 8, 8, 8, 8, 4), hyper_head_dim=8,
                hyper_channels=8, attention_channels=16,
                attention_head_dim=8, attention_window=4, slice_hidden=(16, 16))


class Seconds(float):
  """Wall seconds that also carry the process CPU seconds of the same span
  (on a shared machine the wall time depends on the other jobs' load)."""

  def __new__(cls, wall, cpu):
    value = super().__new__(cls, wall)
    value.cpu = cpu
    return value

  def __format__(self, spec):
    return f"{float(self):{spec}} (cpu {self.cpu:{spec}})"


def timed(fn, *args):
  start, cpu = time.perf_counter(), time.process_time()
  result = fn(*args)
  return result, Seconds(time.perf_counter() - start,
                         time.process_time() - cpu)


def build(args, **overrides):
  from tfcodec import zoo
  from tfcodec.models import create_model
  kwargs = dict(TINY_TCM) if args.tiny else {}
  kwargs.update(overrides)
  model = create_model(args.model, args.quality, **kwargs)
  if args.weights:
    zoo.load_weights(model, args.weights)
  return model


def fit(model, image, steps, patch=128, batch=4):
  """A few Adam steps on random crops of the image (for meaningful bits)."""
  import tensorflow as tf
  optimizer = tf.keras.optimizers.Adam(1e-3, global_clipnorm=1.)
  model.compile(optimizer=optimizer)
  optimizer.build(model.trainable_variables)
  step = tf.function(model.train_step)
  x = tf.constant(image, tf.float32)[None] / 255.
  for i in range(steps):
    crops = tf.stack([tf.image.random_crop(x[0], (patch, patch, 3))
                      for _ in range(batch)])
    terms = step(crops)
    if i % 50 == 0 or i == steps - 1:
      print(f"  fit step {i}: loss {float(terms['loss']):.3f} "
            f"bpp {float(terms['bpp']):.3f} psnr {float(terms['psnr']):.2f}")


def coding(args):
  import tensorflow as tf
  from tfcodec import codec
  from tfcodec.io.bitstream import Bitstream
  from tfcodec.io.images import read_image
  from tfcodec.models.base import pad_to_multiple
  image = read_image(os.path.join(args.kodak, args.image))
  height, width = image.shape[:2]
  model, seconds = timed(build, args)
  print(f"{args.model} q{args.quality}{' (tiny)' if args.tiny else ''}: "
        f"built in {seconds:.1f} s, {model.count_params() / 1e6:.3f}M params, "
        f"stride {model.stride}")
  if args.fit_steps:
    fit(model, image, args.fit_steps)
  model.freeze()
  data, first = timed(codec.encode_image, model, image, args.quality)
  data, warm = timed(codec.encode_image, model, image, args.quality)
  print(f"encode {width}x{height}: {warm:.2f} s warm "
        f"({first:.1f} s first call, tracing included)")
  decoded, first = timed(codec.decode_bytes, data, model)
  decoded, warm = timed(codec.decode_bytes, data, model)
  print(f"decode {width}x{height}: {warm:.2f} s warm "
        f"({first:.1f} s first call, tracing included)")
  x = pad_to_multiple(tf.constant(image, tf.float32)[None] / 255., model.stride)
  outputs = model(x, training=False)
  encoder_side = model._to_image(outputs["x_hat"],
                                 tf.constant([height, width])).numpy()
  print(f"decode == encoder-side reconstruction: "
        f"{np.array_equal(decoded, encoder_side)}")
  estimated = {k: float(tf.reduce_sum(v)) for k, v in outputs["bits"].items()}
  stream = Bitstream.from_bytes(data)
  payload = {name: 8 * len(s) for name, s in zip(model.string_names,
                                                 stream.strings)}
  file_bits = 8 * len(data)
  total_estimate = sum(estimated.values())
  print(f"bits: file {file_bits}, payload {sum(payload.values())}, "
        f"estimated {total_estimate:.0f}; file/estimated "
        f"{file_bits / total_estimate:.4f}, payload/estimated "
        f"{sum(payload.values()) / total_estimate:.4f}; "
        f"{file_bits / (height * width):.4f} bpp in the file")
  for name in model.string_names:
    print(f"  {name}: payload {payload[name]} bits, estimated "
          f"{estimated[name]:.0f}")


def training(args):
  import tensorflow as tf
  if args.precision != "float32":
    tf.keras.mixed_precision.set_global_policy(args.precision)
  model = build(args, gdn_form="classic")
  optimizer = tf.keras.optimizers.Adam(1e-4, global_clipnorm=1.)
  model.compile(optimizer=optimizer)
  optimizer.build(model.trainable_variables)
  step = tf.function(model.train_step)
  x = tf.random.uniform((args.batch, args.patch, args.patch, 3), seed=1)
  terms, first = timed(step, x)
  float(terms["loss"])
  times, cpu_times = [], []
  for _ in range(args.train_steps):
    (terms, _), seconds = timed(lambda: (terms := step(x), float(terms["loss"])))
    times.append(float(seconds))
    cpu_times.append(seconds.cpu)
  print(f"train step {args.batch}x{args.patch}^2 {args.precision}: "
        f"{np.mean(times):.2f} s/step wall, {np.mean(cpu_times):.2f} cpu s/step "
        f"(over {len(times)}; first step {first:.1f} s with tracing); "
        f"loss {float(terms['loss']):.3f}, finite: "
        f"{bool(np.isfinite(float(terms['loss'])))}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="tcm-s")
  parser.add_argument("--quality", type=int, default=6)
  parser.add_argument("--weights", default=None)
  parser.add_argument("--kodak", default=KODAK)
  parser.add_argument("--image", default="kodim01.png")
  parser.add_argument("--tiny", action="store_true",
                      help="The tests' tiny configuration (N=8, M=40).")
  parser.add_argument("--fit_steps", type=int, default=0)
  parser.add_argument("--train_steps", type=int, default=3,
                      help="Timed training steps (0: skip training).")
  parser.add_argument("--skip_coding", action="store_true")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--patch", type=int, default=256)
  parser.add_argument("--precision", default="mixed_bfloat16",
                      choices=("float32", "mixed_bfloat16"))
  args = parser.parse_args()
  quiet_tensorflow()
  if not args.skip_coding:
    coding(args)
  if args.train_steps:
    training(args)


if __name__ == "__main__":
  main()
