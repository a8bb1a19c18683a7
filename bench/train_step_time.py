"""Seconds per training step of registered models, as train.py runs them.

  python bench/train_step_time.py [--models informer,mbt2018] [--quality 3]
      [--batch 8] [--patch 256] [--precision mixed_bfloat16] [--steps 5]

Each model is built at its quality's full size under the chosen precision
policy (with Grappler's remapper off, as in training), compiled with Adam and
stepped through `model.train_step` in a tf.function on fixed random crops:
one warm-up step (tracing, kernel selection), then `--steps` timed steps.
Prints wall and process-CPU seconds per step and images per second. Run it on
an idle machine: a training job on the same cores halves the numbers.
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from tfcodec.util import quiet_tensorflow  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--models", default="informer,mbt2018")
  parser.add_argument("--quality", type=int, default=3)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--patch", type=int, default=256)
  parser.add_argument("--precision", default="mixed_bfloat16")
  parser.add_argument("--steps", type=int, default=5)
  args = parser.parse_args()

  quiet_tensorflow()
  import numpy as np
  import tensorflow as tf
  from tfcodec.models import create_model
  from tfcodec.train.precision import use_inference_arithmetic_in_training

  use_inference_arithmetic_in_training()
  tf.keras.mixed_precision.set_global_policy(args.precision)
  rng = np.random.default_rng(0)
  batch = tf.constant(rng.uniform(size=(args.batch, args.patch, args.patch, 3)),
                      tf.float32)
  print(f"{args.batch}x{args.patch}^2, {args.precision}, {os.cpu_count()} "
        f"cores, {args.steps} timed steps after 1 warm-up")
  for name in args.models.split(","):
    tf.random.set_seed(0)
    model = create_model(name, args.quality)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-4, global_clipnorm=1.))
    step = tf.function(model.train_step)
    step(batch)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
      loss = step(batch)["loss"].numpy()
    wall = (time.perf_counter() - wall) / args.steps
    cpu = (time.process_time() - cpu) / args.steps
    print(f"{name:>14} q{args.quality} ({model.count_params() / 1e6:.2f}M "
          f"params): {wall:.2f} s/step wall, {cpu:.2f} CPU-s/step, "
          f"{args.batch / wall:.2f} images/s (loss {float(loss):.3f})")


if __name__ == "__main__":
  main()
