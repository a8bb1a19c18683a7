"""Does bf16 training cost rate-distortion performance? fp32 vs bf16, same start.

Trains the same model twice with tfcodec.train.loop, once per precision, from
the same seed (same initial weights, same crop order) for the same number of
steps, then evaluates both on a few Kodak images with real rounding
(estimated bpp, PSNR, and the RD loss bpp + lambda * 255^2 * MSE). Example:

  nice -n 5 .venv/bin/python bench/precision_rd.py --steps=300
  .venv/bin/python bench/precision_rd.py --model=mbt2018-mean --quality=2 \
      --finetune_from=tfcodec/weights/mbt2018-mean-mse-q3.npz --patch_size=256
"""

import json
import os
import sys
import tempfile
import time

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
DATA = os.path.join(ROOT, "..", "shared", "data")

flags.DEFINE_string("model", "bmshj2018-hyperprior",
                    "The registered architecture to train.")
flags.DEFINE_integer("quality", 3, "The quality level (picks N, M, lambda).")
flags.DEFINE_integer("steps", 300, "The number of training steps per run.")
flags.DEFINE_integer("batch_size", 8, "The number of crops per step.")
flags.DEFINE_integer("patch_size", 128, "The side of the square crops.")
flags.DEFINE_float("lr", 1e-3, "The Adam learning rate.")
flags.DEFINE_integer("seed", 1, "The seed shared by both runs.")
flags.DEFINE_string("train_glob", os.path.join(DATA, "train"),
                    "The training images.")
flags.DEFINE_string("val_glob", os.path.join(DATA, "kodak", "kodim0[1-4].png"),
                    "The evaluation images.")
flags.DEFINE_string("finetune_from", None,
                    "A weight file (.npz) or checkpoint both runs start from "
                    "instead of a random initialisation: the fine-tuning regime "
                    "most shipped weights are trained in, and far less noisy "
                    "than the first few hundred steps from scratch.")
flags.DEFINE_string("out_dir", None,
                    "Where the two runs go; a temporary folder by default.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from tfcodec.train import loop
  from tfcodec.util import quiet_tensorflow
  quiet_tensorflow()
  out_dir = FLAGS.out_dir or tempfile.mkdtemp(prefix="precision_rd_")
  rows = []
  for precision in ("float32", "mixed_bfloat16"):
    run_dir = os.path.join(out_dir, precision)
    start = time.time()
    model = loop.train(
        FLAGS.model, FLAGS.quality, train_glob=FLAGS.train_glob,
        val_glob=FLAGS.val_glob, run_dir=run_dir, patch_size=FLAGS.patch_size,
        batch_size=FLAGS.batch_size, steps=FLAGS.steps, lr=FLAGS.lr,
        precision=precision, checkpoint_every=FLAGS.steps,
        eval_every=FLAGS.steps, log_every=max(1, FLAGS.steps // 6),
        seed=FLAGS.seed, finetune_from=FLAGS.finetune_from, echo=False)
    seconds = time.time() - start
    records = loop.read_log(run_dir)
    train = [r for r in records if r["event"] == "train"]
    evaluation = [r for r in records if r["event"] == "eval"][-1]
    mse = 255. ** 2 / 10 ** (evaluation["psnr"] / 10)  # from the mean PSNR
    rows.append(dict(
        precision=precision, steps=FLAGS.steps, seconds=round(seconds, 1),
        s_per_step=round(sum(r["s_per_step"] for r in train[1:]) /
                         max(1, len(train) - 1), 3),
        train_loss_last_window=round(train[-1]["loss"], 4),
        kodak_bpp=round(evaluation["bpp"], 4),
        kodak_psnr=round(evaluation["psnr"], 3),
        kodak_rd_loss=round(evaluation["bpp"] + model.lmbda * mse, 4)))
    print(json.dumps(rows[-1]), flush=True)
  start_text = (f"from {FLAGS.finetune_from}" if FLAGS.finetune_from
                else "from scratch")
  print(f"\n{FLAGS.model} q{FLAGS.quality} {start_text}, {FLAGS.steps} steps of "
        f"{FLAGS.batch_size}x{FLAGS.patch_size}^2 at lr {FLAGS.lr:g}, seed "
        f"{FLAGS.seed}; evaluated on {FLAGS.val_glob}")
  print(f"{'precision':<16}{'s/step':>8}{'train loss':>12}{'bpp':>8}"
        f"{'PSNR':>8}{'RD loss':>9}")
  for r in rows:
    print(f"{r['precision']:<16}{r['s_per_step']:>8.3f}"
          f"{r['train_loss_last_window']:>12.4f}{r['kodak_bpp']:>8.4f}"
          f"{r['kodak_psnr']:>8.2f}{r['kodak_rd_loss']:>9.4f}")


if __name__ == "__main__":
  app.run(main)
