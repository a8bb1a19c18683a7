"""The training loop: resumable checkpoints, progress, TensorBoard, export.

A run lives in one directory (`--run_dir`):
  ckpt/         tf.train checkpoints (model, optimizer, step, lr_backoff),
                written every `checkpoint_every` steps and at exit; the newest
                is resumed. TF writes a checkpoint's files under temporary
                names and only then atomically rewrites the `checkpoint` index,
                so a kill at any moment leaves the previous one usable.
  log.jsonl     one JSON line per event (start, parent, resume, train, eval,
                done), each with the session's wall and CPU seconds so far;
                `parent` keeps the metadata of the file the run started
                from (tfcodec.train.lineage).
  tb/           TensorBoard: training and validation scalars, and a few
                validation reconstructions at every evaluation.
  export.npz    float16 weights with metadata and recipe, for tfcodec.zoo.
Re-running the same command after an interruption (even kill -9) continues
from the last checkpoint with the optimizer state intact; the data order is
reshuffled, which random crops make harmless.
"""

import json
import os
import signal
import time

import numpy as np
import tensorflow as tf

from tfcodec import metrics, zoo
from tfcodec.models import create_model
from tfcodec.models.base import pad_to_multiple
from tfcodec.train import conv_grad, data, distribute, lineage, widen
from tfcodec.train.optimizer import Adam, prior_variables
from tfcodec.train.precision import (resolve_precision,
                                     use_inference_arithmetic_in_training)


def learning_rate(step, lr, milestones, gamma, backoff):
  """Milestone schedule times the divergence back-off factor."""
  passed = sum(1 for m in milestones if step >= int(m))
  return lr * gamma ** passed * backoff


def _every(step, period):
  """True every `period` steps; a period of 0 (or less) means never."""
  return period > 0 and step % period == 0


def diverged(window_loss, history, factor=3.):
  """A log window whose loss is non-finite or far above the recent best."""
  if not np.isfinite(window_loss):
    return True
  return len(history) >= 3 and window_loss > factor * min(history[-5:])


def format_duration(seconds):
  """'1h02m', '4m05s' or '12s': short enough for a progress line."""
  seconds = int(max(0, seconds))
  hours, rest = divmod(seconds, 3600)
  minutes, secs = divmod(rest, 60)
  if hours:
    return f"{hours}h{minutes:02d}m"
  if minutes:
    return f"{minutes}m{secs:02d}s"
  return f"{secs}s"


def progress_line(step, total, steps_per_second, terms, lr):
  """One human-readable line per log window."""
  eta = (total - step) / steps_per_second if steps_per_second > 0 else 0
  return (f"step {step}/{total} ({100. * step / max(total, 1):.1f}%) | "
          f"{steps_per_second:.2f} steps/s | ETA {format_duration(eta)} | "
          f"loss {terms['loss']:.4f} | bpp {terms['bpp']:.4f} | "
          f"PSNR {terms['psnr']:.2f} dB | lr {lr:.2e}"
          + (f" | skipped {terms['skipped']:.0%}" if terms.get("skipped") else ""))


def evaluate(model, images, keep=0):
  """Mean estimated bpp, PSNR and (for a model trained for MS-SSIM) MS-SSIM
  on whole images, with real rounding.

  Returns ({"bpp", "psnr"[, "ms_ssim"], "bpp_<latent>" for each latent},
  reconstructions of the first `keep` images as uint8). The per-latent split
  shows where a run's bits go (a side latent whose prior is still wide).
  """
  bpps, psnrs, ms_ssims, kept, latent_bpps = [], [], [], [], {}
  for image in images:
    x = tf.convert_to_tensor(image[None], tf.float32) / 255.
    x_pad = pad_to_multiple(x, model.stride)
    out = model(x_pad, training=False)
    h, w = image.shape[:2]
    latent_bits = {name: float(tf.reduce_sum(b))
                   for name, b in out["bits"].items()}
    bits = sum(latent_bits.values())
    for name, value in latent_bits.items():
      latent_bpps.setdefault(name, []).append(value / (h * w))
    x_hat = out["x_hat"][0, :h, :w, :]
    x_hat = tf.round(tf.clip_by_value(tf.cast(x_hat, tf.float32), 0., 1.) * 255.)
    mse = float(tf.reduce_mean(tf.math.squared_difference(
        x_hat, tf.cast(image, tf.float32))))
    bpps.append(bits / (h * w))
    psnrs.append(10 * np.log10(255. ** 2 / max(mse, 1e-10)))
    if model.metric == "ms-ssim":
      # The quantity such a run optimises; PSNR alone would hide its progress.
      ms_ssims.append(metrics.ms_ssim(image, x_hat.numpy()))
    if len(kept) < keep:
      kept.append(x_hat.numpy().astype(np.uint8))
  scores = dict(bpp=float(np.mean(bpps)), psnr=float(np.mean(psnrs)))
  scores.update({f"bpp_{name}": float(np.mean(values))
                 for name, values in latent_bpps.items()})
  if ms_ssims:
    scores["ms_ssim"] = float(np.mean(ms_ssims))
  return scores, kept


def _scores_text(scores):
  return (f"{scores['bpp']:.4f} bpp, {scores['psnr']:.2f} dB"
          + (f", MS-SSIM {scores['ms_ssim']:.4f}" if "ms_ssim" in scores
             else ""))


def _evaluate_other_rungs(model, images, step, log, writer):
  """A variable-rate model's other qualities, each logged as eval_quality."""
  current = model.quality
  try:
    for quality in model.qualities:
      if quality == current:
        continue
      model.set_quality(quality)
      scores, _ = evaluate(model, images)
      log("eval_quality", text=(f"eval at step {step}, quality {quality}: "
                                f"{_scores_text(scores)}"),
          step=step, quality=quality, **scores)
      _write_scalars(writer, step, f"val_q{quality}", scores)
  finally:
    model.set_quality(current)


def consistency(model, batch, step_terms, tolerance=1.5):
  """Eager loss on the last training batch vs what the traced step reported.

  The guard that would have caught tfcodec's worst training defect at its
  first evaluation: the traced training step optimised a different function
  (GDN without |x|) from the one eager evaluation and coding run, and
  reported ~10x lower MSE than the same weights gave outside it. The eager
  pass sees weights one optimiser step newer and fresh noise, so agreement
  means a ratio near 1, not equality.
  """
  eager = model.rd_loss(batch, model(batch, training=True))
  ratio = float(eager["mse"]) / max(float(step_terms["mse"]), 1e-12)
  ok = 1. / tolerance <= ratio <= tolerance
  text = (f"consistency: eager MSE {float(eager['mse']):.4g} vs training step "
          f"{float(step_terms['mse']):.4g} (ratio {ratio:.3f})")
  if not ok:
    text += (" -- THE TRACED TRAINING STEP AND EAGER EVALUATION DISAGREE: "
             "the weights are being fitted to a function the codec does not run")
  return dict(text=text, eager_mse=float(eager["mse"]),
              step_mse=float(step_terms["mse"]), ratio=ratio, ok=ok)


def start_on_fresh_line(path):
  """A kill -9 during a write can leave a torn last line: appending after it
  would join the next record to it, so end the file with a newline first
  (readers skip the torn line)."""
  if os.path.exists(path) and os.path.getsize(path):
    with open(path, "rb") as f:
      f.seek(-1, os.SEEK_END)
      torn = f.read(1) != b"\n"
    if torn:
      with open(path, "a") as f:
        f.write("\n")


class RunLog:
  """Appends JSON events to log.jsonl and prints progress to stdout.

  Every record carries the session id and the session's wall and CPU seconds
  (`time.process_time()` counts every thread of this process), so the run's
  cost is the sum over sessions, including work a kill later threw away.
  """

  def __init__(self, path, echo=True):
    self.path = path
    self.echo = echo
    self.session = time.time()
    self._cpu_start = time.process_time()
    start_on_fresh_line(path)

  def __call__(self, event, text=None, **fields):
    now = time.time()
    record = dict(event=event, **fields, time=now, session=self.session,
                  session_wall=now - self.session,
                  session_cpu=time.process_time() - self._cpu_start)
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    if self.echo and text:
      print(text, flush=True)
    return record


def read_log(run_dir):
  """The parseable records of a run's log.jsonl (torn lines are skipped)."""
  path = os.path.join(run_dir, "log.jsonl")
  records = []
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        try:
          records.append(json.loads(line))
        except ValueError:
          continue
  return records


def _write_scalars(writer, step, prefix, values):
  with writer.as_default(step=step):
    for name, value in values.items():
      tf.summary.scalar(f"{prefix}/{name}", value)


def train(model_name, quality, metric="mse", lmbda=None, train_glob=None,
          val_glob=None, run_dir="runs/default", patch_size=128, batch_size=8,
          steps=10000, epochs=None, lr=1e-4, lr_milestones=(), lr_epochs=(),
          lr_gamma=0.1, clipnorm=1.0, precision="float32", checkpoint_every=500,
          eval_every=1000, log_every=50, finetune_from=None,
          warm_start_from=None, warm_start_parts=("g_a", "g_s"),
          warm_start_partial=False, widen_from=None, seed=None,
          model_kwargs=None, strategy="none", parallel_calls=None,
          summary_images=3, echo=True, keep_checkpoints=3,
          prior_lr_multiplier=1., conv_kernel_grad="auto", augment=()):
  """Trains (or resumes) a run and returns the model.

  `epochs`, when given, replaces `steps`: an epoch is one random crop of every
  training image, i.e. ceil(images / batch_size) steps; `lr_epochs` are
  milestones counted in epochs and join `lr_milestones` (counted in steps).
  `batch_size` is global: under a strategy each replica gets its share.
  `widen_from`: a narrower trained file of the same architecture that the
  new run starts from, computing what it computes (tfcodec.train.widen).
  `prior_lr_multiplier`: the factorized priors' parameters learn this many
  times faster than the rest (tfcodec.train.optimizer explains why).
  `conv_kernel_grad`: 'patches' computes convolution kernel gradients
  without oneDNN's backprop-filter kernel, 'native' with it, 'auto' picks
  'patches' on AMD CPUs (tfcodec.train.conv_grad explains why).
  `augment`: training-crop augmentations (tfcodec.train.data.AUGMENTATIONS).
  """
  # Multi-worker collectives must be configured before any other TF work.
  dist = distribute.create_strategy(strategy)
  use_inference_arithmetic_in_training()
  precision = resolve_precision(precision)
  tf.keras.mixed_precision.set_global_policy(precision)
  conv_kernel_grad = conv_grad.configure(conv_kernel_grad)
  if metric == "ms-ssim" and patch_size < 161:
    raise ValueError("MS-SSIM's five scales with an 11-tap window need crops of "
                     f"at least 161 pixels; --patch_size is {patch_size}")
  work_dir = distribute.worker_dir(run_dir, strategy)
  os.makedirs(work_dir, exist_ok=True)
  is_chief = work_dir == run_dir
  log = RunLog(os.path.join(work_dir, "log.jsonl"), echo=echo)

  num_images = len(data.list_images(train_glob))
  epoch_steps = data.steps_per_epoch(num_images, batch_size)
  if epochs is not None:
    steps = int(epochs) * epoch_steps
  milestones = sorted([int(m) for m in lr_milestones] +
                      [int(e) * epoch_steps for e in lr_epochs])

  if seed is not None:
    # Same seed, same initial weights: lets runs differing in one setting
    # (e.g. precision) be compared step for step.
    tf.keras.utils.set_random_seed(seed)
  overrides = dict(model_kwargs or {})
  if lmbda is not None:
    overrides["lmbda"] = lmbda
  with dist.scope():
    model = create_model(model_name, quality, metric=metric, **overrides)
    optimizer = Adam(lr, boosted=prior_variables(model),
                     multiplier=prior_lr_multiplier, global_clipnorm=clipnorm)
    model.compile(optimizer=optimizer)
    # Optimizer slots are created eagerly: inside the traced train step Keras
    # cannot colocate them with tfc's parameter variables.
    optimizer.build(model.trainable_variables)
  if patch_size % model.stride:
    raise ValueError(f"--patch_size {patch_size} must be a multiple of "
                     f"{model_name}'s stride {model.stride}")
  step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
  # Halved each time training diverges and is rolled back; checkpointed.
  backoff = tf.Variable(1., dtype=tf.float64, trainable=False, name="lr_backoff")
  ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step,
                             lr_backoff=backoff)
  manager = tf.train.CheckpointManager(ckpt, os.path.join(work_dir, "ckpt"),
                                       max_to_keep=keep_checkpoints)

  log("start", text=(
      f"{model_name} q{quality} {metric}, lambda {model.lmbda:g}, N={model.N} "
      f"M={model.M}; {precision}; conv kernel gradients {conv_kernel_grad}; "
      f"strategy {strategy} "
      f"({dist.num_replicas_in_sync} replica(s)); {num_images} training images, "
      f"{epoch_steps} steps/epoch; {steps} steps; run dir {work_dir}"),
      model=model_name, quality=quality, metric=metric, lmbda=model.lmbda,
      precision=precision, conv_kernel_grad=conv_kernel_grad,
      strategy=strategy, num_images=num_images,
      steps_per_epoch=epoch_steps, total_steps=steps, batch_size=batch_size,
      patch_size=patch_size, replicas=dist.num_replicas_in_sync,
      augment=list(augment))
  if manager.latest_checkpoint:
    ckpt.restore(manager.latest_checkpoint)
    log("resume", text=(f"resumed from {manager.latest_checkpoint} at step "
                        f"{int(step)} (optimizer iteration "
                        f"{int(optimizer.iterations.numpy())})"),
        checkpoint=manager.latest_checkpoint, step=int(step),
        optimizer_iterations=int(optimizer.iterations.numpy()))
  elif finetune_from:
    zoo.load_weights(model, finetune_from)
    log("finetune_from", text=f"initialised from {finetune_from}",
        path=finetune_from)
    log("parent", **lineage.parent_record("finetune_from", finetune_from))
  elif widen_from:
    widen.widen(model, widen_from)
    log("widen_from", text=(f"widened N={model.N} M={model.M} from "
                            f"{widen_from}"), path=widen_from)
    log("parent", **lineage.parent_record("widen_from", widen_from))
  if warm_start_from and not manager.latest_checkpoint:
    parts = zoo.warm_start(model, warm_start_from, warm_start_parts,
                           partial=warm_start_partial)
    log("warm_start_from", text=(f"copied {', '.join(parts)} from "
                                 f"{warm_start_from}"),
        path=warm_start_from, parts=parts)
    log("parent", **lineage.parent_record("warm_start_from", warm_start_from))

  # A resumed session reshuffles: with the run's own seed it would replay the
  # first session's crops from the start.
  data_seed = None if seed is None else seed + 7919 * int(step)
  dataset = data.distributed_train_dataset(
      dist, train_glob, patch_size, batch_size, seed=data_seed,
      parallel_calls=parallel_calls, augment=augment)
  val_images = data.eval_images(val_glob)[1] if val_glob and is_chief else []
  writer = (tf.summary.create_file_writer(os.path.join(work_dir, "tb"))
            if is_chief else tf.summary.create_noop_writer())

  @tf.function
  def train_step(batch):
    terms, grads, finite = dist.run(model.replica_gradients, args=(batch,))
    # Identical on every replica (see replica_gradients), so any copy decides.
    finite = dist.experimental_local_results(finite)[0]
    # The skip decision is taken here, in cross-replica context: applying
    # inside a per-replica tf.cond would hide the optimizer's merge_call in a
    # branch graph, which MirroredStrategy rejects.
    def apply():
      dist.run(model.apply_replica_gradients, args=(grads,))
      return tf.constant(0.)
    skipped = tf.cond(finite, apply, lambda: tf.constant(1.))
    terms = {k: dist.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
             for k, v in terms.items()}
    terms["skipped"] = skipped
    return terms

  def save():
    manager.save(checkpoint_number=int(step))

  # SIGTERM/SIGINT end the run cleanly at the next step boundary (checkpoint
  # written); kill -9 loses at most `checkpoint_every` steps.
  stop = {"requested": False}

  def request_stop(signum, frame):
    del frame
    stop["requested"] = True
    log("signal", text=f"signal {signum}: stopping after this step",
        signal=int(signum), step=int(step))

  previous = {sig: signal.signal(sig, request_stop)
              for sig in (signal.SIGTERM, signal.SIGINT)}
  last = time.time()
  sums, history, healthy = {}, [], True
  window_steps = 0
  try:
    for batch in dataset:
      if int(step) >= steps or stop["requested"]:
        break
      optimizer.learning_rate.assign(learning_rate(
          int(step), lr, milestones, lr_gamma, float(backoff.numpy())))
      terms = train_step(batch)
      step.assign_add(1)
      last_batch, last_terms = batch, terms
      window_steps += 1
      for k, v in terms.items():
        sums[k] = sums.get(k, 0.) + float(v)
      s = int(step)
      if _every(s, log_every) or s == steps:
        now = time.time()
        window = {k: v / window_steps for k, v in sums.items()}
        rate = window_steps / max(now - last, 1e-9)
        current_lr = float(optimizer.learning_rate.numpy())
        log("train", text=progress_line(s, steps, rate, window, current_lr),
            step=s, s_per_step=1. / rate, lr=current_lr, **window)
        _write_scalars(writer, s, "train",
                       dict(window, lr=current_lr, steps_per_second=rate))
        sums, last, window_steps = {}, now, 0
        healthy = not diverged(window["loss"], history)
        if healthy:
          history.append(window["loss"])
        elif manager.latest_checkpoint:
          # Roll back to the last healthy checkpoint at half the learning rate.
          ckpt.restore(manager.latest_checkpoint)
          backoff.assign(backoff * 0.5)
          history = history[:-1]
          log("diverged", text=(f"loss {window['loss']:.4g} diverged at step "
                                f"{s}: rolled back to step {int(step)}, "
                                f"lr back-off {float(backoff.numpy()):g}"),
              step=s, loss=window["loss"], restored=manager.latest_checkpoint,
              lr_backoff=float(backoff.numpy()))
          continue
      if _every(s, checkpoint_every) and healthy:
        save()
      if _every(s, eval_every) and dist.num_replicas_in_sync == 1:
        check = consistency(model, last_batch, last_terms)
        log("consistency", text=check.pop("text"), step=s, **check)
      if val_images and _every(s, eval_every):
        scores, reconstructions = evaluate(model, val_images,
                                           keep=summary_images)
        log("eval", text=f"eval at step {s}: {_scores_text(scores)}",
            step=s, **scores)
        _write_scalars(writer, s, "val", scores)
        with writer.as_default(step=s):
          for i, image in enumerate(reconstructions):
            tf.summary.image(f"val/reconstruction_{i}", image[None])
        if hasattr(model, "set_quality"):
          _evaluate_other_rungs(model, val_images, s, log, writer)
        writer.flush()
        last = time.time()
  finally:
    if healthy:
      save()
    writer.flush()
    for sig, handler in previous.items():
      signal.signal(sig, handler)
  log("done", text=(f"done at step {int(step)} (optimizer iteration "
                    f"{int(optimizer.iterations.numpy())})"),
      step=int(step), optimizer_iterations=int(optimizer.iterations.numpy()))
  return model


def restore(model_name, quality, run_dir, metric="mse", lmbda=None,
            model_kwargs=None, average_from_step=None):
  """(model, step, averaged steps): the model of a run's newest checkpoint
  (without the optimizer).

  `average_from_step`: instead, the mean of the weights of every checkpoint
  in the run dir at or after that step (stochastic weight averaging, Izmailov
  et al. 2018: late in a run, averaging points of the trajectory lands nearer
  the middle of the basin than any one of them). `step` is then the newest
  averaged checkpoint's; keep enough checkpoints with --keep_checkpoints."""
  overrides = dict(model_kwargs or {})
  if lmbda is not None:
    overrides["lmbda"] = lmbda
  model = create_model(model_name, quality, metric=metric, **overrides)
  step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
  ckpt = tf.train.Checkpoint(model=model, step=step)
  ckpt_dir = os.path.join(run_dir, "ckpt")
  latest = tf.train.latest_checkpoint(ckpt_dir)
  if latest is None:
    raise FileNotFoundError(f"no checkpoint in {ckpt_dir}")
  if average_from_step is None:
    ckpt.restore(latest).expect_partial()
    return model, int(step), []
  state = tf.train.get_checkpoint_state(ckpt_dir)
  chosen, total = [], None
  for prefix in state.all_model_checkpoint_paths:
    ckpt.restore(prefix).expect_partial()
    if int(step) < average_from_step:
      continue
    values = [v.numpy().astype(np.float64) for v in model.trainable_weights]
    total = values if total is None else [t + v for t, v in zip(total, values)]
    chosen.append(int(step))
  if not chosen:
    raise FileNotFoundError(f"no checkpoint at or after step "
                            f"{average_from_step} in {ckpt_dir}")
  for variable, value in zip(model.trainable_weights, total):
    variable.assign((value / len(chosen)).astype(np.float32))
  return model, max(chosen), sorted(chosen)


def run_summary(run_dir):
  """Steps, wall and CPU time of a run, summed over every resumed session.

  Sessions are told apart by the id each record carries; logs written before
  sessions were recorded fall back to summing `s_per_step` over train windows.
  """
  records = read_log(run_dir)
  wall_from_steps, last_step, evals = 0., 0, []
  sessions = {}
  previous_step = 0
  for r in records:
    if r["event"] == "resume":
      previous_step = r["step"]
    elif r["event"] == "train":
      wall_from_steps += r["s_per_step"] * (r["step"] - previous_step)
      previous_step = last_step = r["step"]
    elif r["event"] == "eval":
      evals.append({k: r[k] for k in ("step", "bpp", "psnr", "ms_ssim")
                    if k in r})
    if "session" in r:
      wall, cpu = sessions.get(r["session"], (0., 0.))
      sessions[r["session"]] = (max(wall, r["session_wall"]),
                                max(cpu, r["session_cpu"]))
  # No core-hours derived from wall time: runs here also train one thread
  # each, side by side, where 2 x wall overstated them twofold. `cpu_hours`
  # (process CPU time, every thread) is the measured figure.
  summary = dict(steps=last_step,
                 train_wall_hours=round(wall_from_steps / 3600, 4),
                 evals=evals[-3:])
  if sessions:
    summary.update(
        sessions=len(sessions),
        wall_hours=round(sum(w for w, _ in sessions.values()) / 3600, 4),
        cpu_hours=round(sum(c for _, c in sessions.values()) / 3600, 4))
  parents = lineage.parents(records)
  if parents:
    # The parents' files may since have been replaced under the same name:
    # their metadata is kept whole, as the log captured it at the start.
    summary["parents"] = parents
    summary["lineage_cpu_hours"] = round(
        summary.get("cpu_hours", 0.) + lineage.inherited_cpu_hours(parents), 4)
  return summary


def export(model, path, quality, recipe=None):
  """Writes the float16 weights the codec loads, with the run's recipe."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  zoo.save_weights(model, path, quality, extra=recipe)
