"""Train a tfcodec model: `python train.py --flagfile=configs/<model>/<name>.flags`.

Thin entry point: flags here, the work in tfcodec.train. Interrupt at any time
and re-run the same command to resume from the last checkpoint.
"""

import json
import os

from absl import app, flags

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "shared", "data")

flags.DEFINE_string("model", "mbt2018-mean",
                    "Registered architecture to train, e.g. bmshj2018-hyperprior.")
flags.DEFINE_integer("quality", 3,
                     "Quality 1..8: picks N, M and lambda from the quality table.")
flags.DEFINE_enum("metric", "mse", ["mse", "ms-ssim"],
                  "Distortion the loss optimises: 255^2*MSE or 1-MS-SSIM.")
flags.DEFINE_float("lambda", None,
                   "Rate-distortion trade-off; overrides the quality table's value.")
flags.DEFINE_string("train_glob", os.path.join(DATA, "train"),
                    "Training images: folders or globs of PNG/JPEG, comma-separated.")
flags.DEFINE_string("val_glob", os.path.join(DATA, "kodak"),
                    "Validation images evaluated with real rounding every "
                    "--eval_every steps; empty to skip.")
flags.DEFINE_string("run_dir", None,
                    "Directory for checkpoints, the log and the export; "
                    "defaults to runs/<model>-<metric>-q<quality>.")
flags.DEFINE_integer("patch_size", 128, "Side of the random square training crops.")
flags.DEFINE_integer("batch_size", 8, "Crops per training step.")
flags.DEFINE_integer("steps", 10000, "Total training steps (including resumed ones).")
flags.DEFINE_float("lr", 1e-4, "Adam learning rate.")
flags.DEFINE_list("lr_milestones", [],
                  "Steps at which the learning rate is multiplied by --lr_gamma.")
flags.DEFINE_float("lr_gamma", 0.1, "Learning-rate factor applied at each milestone.")
flags.DEFINE_float("clipnorm", 1.0, "Global gradient-norm clipping threshold.")
flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16"],
                  "Keras dtype policy; mixed_bfloat16 only pays off on CPUs with "
                  "AMX or AVX512-BF16.")
flags.DEFINE_integer("checkpoint_every", 500, "Steps between checkpoints.")
flags.DEFINE_integer("eval_every", 1000, "Steps between validation runs.")
flags.DEFINE_integer("log_every", 50, "Steps between training log lines.")
flags.DEFINE_string("finetune_from", None,
                    "Weights (.npz) to start from, e.g. a higher-rate model when "
                    "training a lower rate. Ignored when resuming.")
flags.DEFINE_string("export", None,
                    "Where to write the float16 weights (.npz) after training; "
                    "defaults to <run_dir>/export.npz.")
flags.DEFINE_string("gdn_form", "simplified",
                    "GDN form: 'simplified' (tfc default, |x|, no sqrt) or 'classic'.")
flags.DEFINE_enum("likelihood", None, ["gaussian", "gmm"],
                  "Likelihood of y for context models (mbt2018, cheng2020-*): "
                  "mean-scale Gaussian or K=3 Gaussian mixture; default: the "
                  "model's own.")
flags.DEFINE_integer("seed", None, "Seed for the data pipeline's shuffles.")
flags.DEFINE_bool("export_only", False,
                  "Do not train: export the newest checkpoint of --run_dir to "
                  "--export and exit.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from tfcodec.train import loop
  run_dir = FLAGS.run_dir or os.path.join(
      "runs", f"{FLAGS.model}-{FLAGS.metric}-q{FLAGS.quality}")
  model_kwargs = dict(gdn_form=FLAGS.gdn_form)
  if FLAGS.likelihood:
    model_kwargs["likelihood"] = FLAGS.likelihood
  if FLAGS.export_only:
    model, step = loop.restore(FLAGS.model, FLAGS.quality, run_dir,
                               metric=FLAGS.metric, lmbda=FLAGS["lambda"].value,
                               model_kwargs=model_kwargs)
  else:
    step = None
    model = loop.train(
      FLAGS.model, FLAGS.quality, metric=FLAGS.metric, lmbda=FLAGS["lambda"].value,
      train_glob=FLAGS.train_glob, val_glob=FLAGS.val_glob, run_dir=run_dir,
      patch_size=FLAGS.patch_size, batch_size=FLAGS.batch_size, steps=FLAGS.steps,
      lr=FLAGS.lr, lr_milestones=FLAGS.lr_milestones, lr_gamma=FLAGS.lr_gamma,
      clipnorm=FLAGS.clipnorm, precision=FLAGS.precision,
      checkpoint_every=FLAGS.checkpoint_every, eval_every=FLAGS.eval_every,
      log_every=FLAGS.log_every, finetune_from=FLAGS.finetune_from,
      seed=FLAGS.seed, model_kwargs=model_kwargs)
  recipe = {"flags": {f.name: f.value for f in FLAGS.get_key_flags_for_module(
      FLAGS.find_module_defining_flag("model"))},
            "run": loop.run_summary(run_dir)}
  if step is not None:
    recipe["run"]["steps"] = step  # the checkpoint's step, not the log's last
  loop.export(model, FLAGS.export or os.path.join(run_dir, "export.npz"),
              FLAGS.quality, recipe=json.loads(json.dumps(recipe, default=str)))


if __name__ == "__main__":
  app.run(main)
