"""Informer's global hyperprior: cost against image size (linear in pixels).

  python bench/informer_scaling.py [--quality 3] [--sizes 256,512,1024]
      [--repeats 3]

For each square image size, times (best of `--repeats`, after one warm-up
call that includes tracing) with a randomly initialised full-size model:
  * CA_a: the G = 8 tokens cross-attending to every position of y
    (global_h_a, encoder side);
  * CA_s: every position's context cross-attending to the 8 decoded tokens
    (the parameter model's attention, as in the training forward);
  * for reference, the masked 5x5 context convolution on the same latent.
Prints seconds and microseconds per latent position; a linear cost shows as a
flat per-position column (a self-attention over positions would grow 4x per
step of this ladder). Also prints the attention FLOPs counted from the shapes.
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from tfcodec.util import quiet_tensorflow  # noqa: E402


def best_time(fn, repeats):
  fn()  # trace
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)


def attention_flops(queries, keys, dim):
  """Multiply-adds of one cross-attention block, counted from its shapes."""
  projections = queries * dim * dim * 2 + keys * dim * dim * 2  # q, out; k, v
  scores = 2 * queries * keys * dim  # q.k and weights.v
  mlp = queries * dim * 4 * dim * 2
  return projections + scores + mlp


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quality", type=int, default=3)
  parser.add_argument("--sizes", default="256,512,1024")
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()

  quiet_tensorflow()
  import tensorflow as tf
  from tfcodec.models import create_model

  tf.random.set_seed(0)
  model = create_model("informer", args.quality)
  M = model.M
  ca_a = tf.function(model.global_h_a)
  tokens = model.global_h_s(tf.zeros((1, 1, 1, M)))
  ca_s = tf.function(lambda ctx: model.attend(ctx, tokens))
  context = tf.function(model.context)

  print(f"informer q{args.quality} (N={model.N}, M={M}, G=8), "
        f"{os.cpu_count()} cores, best of {args.repeats}")
  print(f"{'image':>10} {'latent':>8} {'CA_a s':>8} {'us/pos':>7} "
        f"{'CA_s s':>8} {'us/pos':>7} {'ctx conv s':>10} {'us/pos':>7} "
        f"{'CA_a+CA_s GFLOP':>15}")
  for size in [int(s) for s in args.sizes.split(",")]:
    side = size // 16
    positions = side * side
    y = tf.random.normal((1, side, side, M))
    ctx = tf.random.normal((1, positions, 2 * M))
    t_a = best_time(lambda: ca_a(y).numpy(), args.repeats)
    t_s = best_time(lambda: ca_s(ctx).numpy(), args.repeats)
    t_c = best_time(lambda: context(y).numpy(), args.repeats)
    flops = (attention_flops(8, positions, M)
             + attention_flops(positions, 8, 2 * M)) * 2 / 1e9
    print(f"{size:>5}x{size:<4} {side:>3}x{side:<4} {t_a:8.4f} "
          f"{t_a / positions * 1e6:7.1f} {t_s:8.4f} "
          f"{t_s / positions * 1e6:7.1f} {t_c:10.4f} "
          f"{t_c / positions * 1e6:7.1f} {flops:15.2f}")


if __name__ == "__main__":
  main()
