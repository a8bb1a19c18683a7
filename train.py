"""Train a tfcodec model: `python train.py --flagfile=configs/<model>/<name>.flags`.

Thin entry point: flags here, the work in tfcodec.train. Interrupt at any time
(even kill -9) and re-run the same command to resume from the last checkpoint.
The seed repositories' spellings work too, e.g. Informer's
`-e 250 --seed 777 --num-workers 4 --metric mse --lambda 0.0067 --quality 3
-lr 1e-4` or TCM's `--N 64 --lambda 0.05 --epochs 50 --lr_epoch 45 48`.
"""

import json
import os
import sys

from absl import app, flags

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "shared", "data")

# What the model is.
flags.DEFINE_string("model", "mbt2018-mean",
                    "The registered architecture to train, for example "
                    "bmshj2018-hyperprior or mbt2018-mean.")
flags.DEFINE_integer("quality", 3,
                     "The quality level 1..8, which picks N, M and lambda from "
                     "the CompressAI-compatible quality table.")
flags.DEFINE_enum("metric", "mse", ["mse", "ms-ssim"],
                  "The distortion the loss optimises: 'mse' gives rate + "
                  "lambda * 255^2 * MSE, 'ms-ssim' gives rate + lambda * "
                  "(1 - MS-SSIM) and needs crops of at least 161 pixels.")
flags.DEFINE_float("lambda", None,
                   "The rate-distortion trade-off; when set it overrides the "
                   "quality table's value.")
flags.DEFINE_integer("N", None,
                     "The number of channels of the transforms' hidden layers; "
                     "when set it overrides the quality table's value.")
flags.DEFINE_integer("M", None,
                     "The number of channels of the latent y; when set it "
                     "overrides the quality table's value.")
flags.DEFINE_string("gdn_form", "simplified",
                    "The GDN form: 'simplified' (tfc's default: |x|, no square "
                    "root) or 'classic' (Balle 2016: square and square root).")
flags.DEFINE_enum("synthesis_quantization", None, ["noise", "ste"],
                  "mbt2018-mean(-vr): what the synthesis transform sees in "
                  "training: y plus uniform noise (the default, as CompressAI "
                  "trains) or y rounded around its mean with a straight-"
                  "through gradient (Minnen & Singh 2020's mixed "
                  "quantization; the rate keeps the noise). For fine-tuning "
                  "a noise-trained model to the rounding it is decoded with.")
flags.DEFINE_enum("likelihood", None, ["gaussian", "gmm"],
                  "The likelihood of y for the context models (mbt2018 and "
                  "cheng2020-*): a mean-scale Gaussian or a K=3 Gaussian "
                  "mixture; by default the model's own.")
flags.DEFINE_list("ladder", [],
                  "Variable-rate models: the qualities (CompressAI's lambda "
                  "table) one network learns, e.g. 1,2,3,4,5,6; by default "
                  "the registry's ladder. With --finetune_from a file of "
                  "another ladder, shared rungs keep their gains and new ones "
                  "start from the nearest rung's.")

# Data.
flags.DEFINE_string("train_glob", os.path.join(DATA, "train"),
                    "The training images: PNG/JPEG files given as folders or "
                    "globs, comma-separated; a folder holding a 'train' "
                    "subfolder (CompressAI's layout) means that subfolder.",
                    short_name="d")
flags.DEFINE_string("val_glob", os.path.join(DATA, "kodak"),
                    "The validation images, evaluated whole with real rounding "
                    "every --eval_every steps; a folder holding a 'test' "
                    "subfolder means that subfolder, and an empty value "
                    "disables validation.")
flags.DEFINE_integer("patch_size", 128,
                     "The side in pixels of the random square training crops; "
                     "images smaller than that are edge-padded first.")
flags.DEFINE_list("augment", [],
                  "Training-crop augmentations, comma-separated: 'flip' "
                  "(left-right) and 'rescale' (each crop downscaled by a "
                  "random factor in [0.5, 1], antialiased, back to 8 bits).")
flags.DEFINE_integer("batch_size", 8,
                     "The number of crops per optimisation step, over all "
                     "replicas and workers together.")
flags.DEFINE_integer("num_workers", None,
                     "The number of parallel threads decoding and cropping "
                     "images; by default tf.data tunes it.")
flags.DEFINE_integer("seed", None,
                     "The seed of the initial weights and of the data "
                     "pipeline's shuffles; unset means a different run each "
                     "time.")

# How long, and how fast.
flags.DEFINE_integer("steps", 10000,
                     "The total number of optimisation steps, counting the "
                     "steps of resumed sessions.")
flags.DEFINE_integer("epochs", None,
                     "When set, the run length in epochs, replacing --steps; "
                     "an epoch here is one random crop of every training image, "
                     "i.e. ceil(images / batch_size) steps.", short_name="e")
flags.DEFINE_float("lr", 1e-4, "The Adam learning rate at the start.")
flags.DEFINE_list("lr_milestones", [],
                  "The steps at which the learning rate is multiplied by "
                  "--lr_gamma, comma-separated.")
flags.DEFINE_list("lr_epoch", [],
                  "The epochs at which the learning rate is multiplied by "
                  "--lr_gamma (TCM's spelling; space- or comma-separated), "
                  "combined with --lr_milestones.")
flags.DEFINE_float("lr_gamma", 0.1,
                   "The factor applied to the learning rate at each milestone.")
flags.DEFINE_float("prior_lr_multiplier", 1.0,
                   "The factorized priors' parameters learn this many times "
                   "faster than the rest (a fresh prior is wide, and Adam "
                   "narrows it by ~lr per step; see tfcodec/train/optimizer.py).")
flags.DEFINE_float("clipnorm", 1.0,
                   "The global gradient-norm clipping threshold.")
flags.DEFINE_enum("precision", "auto", ["auto", "float32", "mixed_bfloat16"],
                  "The Keras dtype policy: 'auto' picks mixed_bfloat16 when "
                  "the CPU reports amx_bf16 or avx512_bf16 and float32 "
                  "otherwise; entropy models and other sensitive layers stay "
                  "float32 under either policy.")
flags.DEFINE_enum("conv_kernel_grad", "auto", ["auto", "native", "patches"],
                  "How convolution kernel gradients are computed: 'native' "
                  "with TF's (oneDNN's) backprop-filter kernel, 'patches' as "
                  "extract_patches + matmul (oneDNN's kernel corrupted the "
                  "heap in training on a Zen 4 EPYC), 'auto' picks 'patches' "
                  "on AMD CPUs; tfcodec/train/conv_grad.py has the details.")
flags.DEFINE_enum("strategy", "none", ["none", "mirrored", "multi_worker"],
                  "The tf.distribute strategy: 'none' for one device, "
                  "'mirrored' for all GPUs of this machine, 'multi_worker' for "
                  "several machines described by the TF_CONFIG environment "
                  "variable.")

# Where things go, and how often.
flags.DEFINE_string("run_dir", None,
                    "The directory for checkpoints, the log, TensorBoard files "
                    "and the export; it defaults to "
                    "runs/<model>-<metric>-q<quality>.")
flags.DEFINE_integer("checkpoint_every", 500,
                     "The number of steps between checkpoints; one is also "
                     "written when the run ends or is stopped by a signal "
                     "(0: only then).")
flags.DEFINE_integer("eval_every", 1000,
                     "The number of steps between validation runs (0: none).")
flags.DEFINE_integer("log_every", 50,
                     "The number of steps between progress lines and "
                     "TensorBoard training scalars (0: only at the end).")
flags.DEFINE_string("finetune_from", None,
                    "A weights file (.npz) to start from, for example a "
                    "higher-rate model when training a lower rate; it is "
                    "ignored when the run resumes from its own checkpoint.")
flags.DEFINE_string("warm_start_from", None,
                    "A weights file (.npz) of another model whose "
                    "sub-transforms named by --warm_start_parts are copied "
                    "into this one before training (for example mbt2018-mean's "
                    "g_a and g_s into Informer with the same N and M); it is "
                    "ignored when the run resumes from its own checkpoint.")
flags.DEFINE_string("widen_from", None,
                    "A new run of mbt2018-mean[-vr] at a larger --N/--M starts "
                    "from this narrower trained file, computing what it "
                    "computes (new channels start at zero; "
                    "tfcodec/train/widen.py).")
flags.DEFINE_list("warm_start_parts", ["g_a", "g_s"],
                  "The model attributes copied by --warm_start_from.")
flags.DEFINE_bool("warm_start_partial", False,
                  "--warm_start_from copies, within each part, only the "
                  "variables whose name and shape match (another variant "
                  "of the same architecture); the rest keep their "
                  "initialisation.")
flags.DEFINE_string("export", None,
                    "Where to write the trained float16 weights (.npz) with "
                    "their recipe; it defaults to <run_dir>/export.npz.")
flags.DEFINE_bool("export_only", False,
                  "When set, do not train: export the newest checkpoint of "
                  "--run_dir to --export and exit.")
flags.DEFINE_integer("keep_checkpoints", 3,
                     "How many of the newest checkpoints the run keeps (more "
                     "for --average_from_step).")
flags.DEFINE_integer("average_from_step", None,
                     "With --export_only: export the mean of the weights of "
                     "every kept checkpoint at or after this step (stochastic "
                     "weight averaging) instead of the newest one.")
flags.DEFINE_bool("cuda", False,
                  "Accepted so seed command lines run unchanged; TensorFlow "
                  "uses a GPU whenever one is visible, so it changes nothing.")
flags.DEFINE_bool("save", True,
                  "Accepted so TCM command lines run unchanged; checkpoints "
                  "are always saved.")

# The seed repositories' spellings.
flags.DEFINE_alias("num-workers", "num_workers")
flags.DEFINE_alias("dataset", "train_glob")
flags.DEFINE_alias("test-dataset", "val_glob")
flags.DEFINE_alias("checkpoint", "finetune_from")
flags.DEFINE_alias("save_path", "run_dir")
flags.DEFINE_alias("exp", "run_dir")
FLAGS = flags.FLAGS


def parse_flags(argv):
  from tfcodec.train.seed_flags import join_multi_word_values
  return FLAGS(join_multi_word_values(argv))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from tfcodec.train import distribute, loop
  from tfcodec.train.seed_flags import dataset_split
  run_dir = FLAGS.run_dir or os.path.join(
      "runs", f"{FLAGS.model}-{FLAGS.metric}-q{FLAGS.quality}")
  model_kwargs = dict(gdn_form=FLAGS.gdn_form)
  if FLAGS.N is not None:
    model_kwargs["N"] = FLAGS.N
  if FLAGS.M is not None:
    model_kwargs["M"] = FLAGS.M
  if FLAGS.likelihood:
    model_kwargs["likelihood"] = FLAGS.likelihood
  if FLAGS.synthesis_quantization:
    model_kwargs["synthesis_quantization"] = FLAGS.synthesis_quantization
  if FLAGS.ladder:
    from tfcodec.models import VARIABLE_RATE, ladder_lambdas
    if FLAGS.model not in VARIABLE_RATE:
      raise app.UsageError(f"--ladder is for variable-rate models "
                           f"({', '.join(VARIABLE_RATE)}), not {FLAGS.model}")
    try:
      model_kwargs["lmbdas"] = ladder_lambdas(FLAGS.ladder, FLAGS.metric)
    except ValueError as error:
      raise app.UsageError(f"--ladder: {error}") from None
  if FLAGS.export_only:
    model, step, averaged = loop.restore(
        FLAGS.model, FLAGS.quality, run_dir, metric=FLAGS.metric,
        lmbda=FLAGS["lambda"].value, model_kwargs=model_kwargs,
        average_from_step=FLAGS.average_from_step)
  else:
    if FLAGS.average_from_step is not None:
      raise app.UsageError("--average_from_step needs --export_only")
    from tfcodec.train.data import check_augment
    try:
      check_augment(FLAGS.augment)
    except ValueError as error:
      raise app.UsageError(f"--augment: {error}") from None
    step, averaged = None, []
    model = loop.train(
        FLAGS.model, FLAGS.quality, metric=FLAGS.metric,
        lmbda=FLAGS["lambda"].value,
        train_glob=dataset_split(FLAGS.train_glob, "train"),
        val_glob=dataset_split(FLAGS.val_glob, "test"), run_dir=run_dir,
        patch_size=FLAGS.patch_size, batch_size=FLAGS.batch_size,
        steps=FLAGS.steps, epochs=FLAGS.epochs, lr=FLAGS.lr,
        lr_milestones=FLAGS.lr_milestones, lr_epochs=FLAGS.lr_epoch,
        lr_gamma=FLAGS.lr_gamma, clipnorm=FLAGS.clipnorm,
        precision=FLAGS.precision, checkpoint_every=FLAGS.checkpoint_every,
        eval_every=FLAGS.eval_every, log_every=FLAGS.log_every,
        finetune_from=FLAGS.finetune_from,
        warm_start_from=FLAGS.warm_start_from,
        warm_start_parts=tuple(FLAGS.warm_start_parts),
        warm_start_partial=FLAGS.warm_start_partial,
        widen_from=FLAGS.widen_from, seed=FLAGS.seed,
        model_kwargs=model_kwargs, strategy=FLAGS.strategy,
        parallel_calls=FLAGS.num_workers,
        keep_checkpoints=FLAGS.keep_checkpoints,
        prior_lr_multiplier=FLAGS.prior_lr_multiplier,
        conv_kernel_grad=FLAGS.conv_kernel_grad, augment=FLAGS.augment)
  work_dir = distribute.worker_dir(run_dir, FLAGS.strategy)
  recipe = {"flags": {f.name: f.value for f in FLAGS.get_key_flags_for_module(
      FLAGS.find_module_defining_flag("model"))},
            "command": " ".join(sys.argv),
            "run": loop.run_summary(work_dir)}
  if step is not None:
    recipe["run"]["steps"] = step  # the checkpoint's step, not the log's last
  if averaged:
    recipe["run"]["averaged_checkpoints"] = averaged
  export = (FLAGS.export if FLAGS.export and work_dir == run_dir
            else os.path.join(work_dir, "export.npz"))
  loop.export(model, export, FLAGS.quality,
              recipe=json.loads(json.dumps(recipe, default=str)))
  print(f"exported {export}", flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
