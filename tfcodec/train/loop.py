"""The training loop: resumable checkpoints, periodic Kodak evaluation, export.

A run lives in one directory (`--run_dir`):
  ckpt/         tf.train checkpoints (model, optimizer, step), written every
                `checkpoint_every` steps and at exit; the newest is resumed.
  log.jsonl     one JSON line per log/eval event (step, loss, bpp, PSNR, time).
  export.npz    float16 weights with metadata, ready for tfcodec.zoo.
Re-running the same command after an interruption continues from the last
checkpoint with the optimizer state intact.
"""

import json
import os
import signal
import time

import numpy as np
import tensorflow as tf

from tfcodec import zoo
from tfcodec.models import create_model
from tfcodec.train import data


def learning_rate(step, lr, milestones, gamma, backoff):
  """Milestone schedule times the divergence back-off factor."""
  passed = sum(1 for m in milestones if step >= int(m))
  return lr * gamma ** passed * backoff


def diverged(window_loss, history, factor=3.):
  """A log window whose loss is non-finite or far above the recent best."""
  if not np.isfinite(window_loss):
    return True
  return len(history) >= 3 and window_loss > factor * min(history[-5:])


def evaluate(model, images):
  """Mean estimated bpp and PSNR on whole images, with real rounding."""
  bpps, psnrs = [], []
  for image in images:
    x = tf.convert_to_tensor(image[None], tf.float32) / 255.
    from tfcodec.models.base import pad_to_multiple
    x_pad = pad_to_multiple(x, model.stride)
    out = model(x_pad, training=False)
    bits = sum(float(tf.reduce_sum(b)) for b in out["bits"].values())
    h, w = image.shape[:2]
    x_hat = out["x_hat"][0, :h, :w, :]
    x_hat = tf.round(tf.clip_by_value(tf.cast(x_hat, tf.float32), 0., 1.) * 255.)
    mse = float(tf.reduce_mean(tf.math.squared_difference(
        x_hat, tf.cast(image, tf.float32))))
    bpps.append(bits / (h * w))
    psnrs.append(10 * np.log10(255. ** 2 / mse))
  return float(np.mean(bpps)), float(np.mean(psnrs))


def train(model_name, quality, metric="mse", lmbda=None, train_glob=None,
          val_glob=None, run_dir="runs/default", patch_size=128, batch_size=8,
          steps=10000, lr=1e-4, lr_milestones=(), lr_gamma=0.1, clipnorm=1.0,
          precision="float32", checkpoint_every=500, eval_every=1000,
          log_every=50, finetune_from=None, seed=None, model_kwargs=None):
  """Trains (or resumes) a run and exports its weights; returns the model."""
  if precision != "float32":
    tf.keras.mixed_precision.set_global_policy(precision)
  overrides = dict(model_kwargs or {})
  if lmbda is not None:
    overrides["lmbda"] = lmbda
  model = create_model(model_name, quality, metric=metric, **overrides)
  optimizer = tf.keras.optimizers.Adam(lr, global_clipnorm=clipnorm)
  model.compile(optimizer=optimizer)
  # Optimizer slots are created eagerly: inside the traced train step Keras
  # cannot colocate them with tfc's parameter variables.
  optimizer.build(model.trainable_variables)
  step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
  # Halved each time training diverges and is rolled back; checkpointed.
  backoff = tf.Variable(1., dtype=tf.float64, trainable=False, name="lr_backoff")
  os.makedirs(run_dir, exist_ok=True)
  ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step,
                             lr_backoff=backoff)
  manager = tf.train.CheckpointManager(ckpt, os.path.join(run_dir, "ckpt"),
                                       max_to_keep=3)
  log_path = os.path.join(run_dir, "log.jsonl")

  def log(**record):
    record["time"] = time.time()
    line = json.dumps(record)
    print(line, flush=True)
    with open(log_path, "a") as f:
      f.write(line + "\n")

  if manager.latest_checkpoint:
    ckpt.restore(manager.latest_checkpoint)
    log(event="resume", checkpoint=manager.latest_checkpoint, step=int(step))
  elif finetune_from:
    zoo.load_weights(model, finetune_from)
    log(event="finetune_from", path=finetune_from)

  dataset = data.train_dataset(train_glob, patch_size, batch_size, seed=seed)
  val_images = data.eval_images(val_glob)[1] if val_glob else []
  train_step = tf.function(model.train_step)

  def save():
    manager.save(checkpoint_number=int(step))

  # SIGTERM/SIGINT end the run cleanly at the next step boundary (checkpoint
  # written); kill -9 loses at most `checkpoint_every` steps.
  stop = {"requested": False}

  def request_stop(signum, frame):
    del frame
    stop["requested"] = True
    log(event="signal", signal=int(signum), step=int(step))

  previous = {sig: signal.signal(sig, request_stop)
              for sig in (signal.SIGTERM, signal.SIGINT)}
  started, last = time.time(), time.time()
  sums, history, healthy = {}, [], True
  try:
    for x in dataset:
      if int(step) >= steps or stop["requested"]:
        break
      optimizer.learning_rate.assign(learning_rate(
          int(step), lr, lr_milestones, lr_gamma, float(backoff.numpy())))
      terms = train_step(x)
      step.assign_add(1)
      for k, v in terms.items():
        sums[k] = sums.get(k, 0.) + float(v)
      s = int(step)
      if s % log_every == 0:
        now = time.time()
        window = {k: v / log_every for k, v in sums.items()}
        log(event="train", step=s, s_per_step=(now - last) / log_every,
            lr=float(optimizer.learning_rate.numpy()), **window)
        sums, last = {}, now
        healthy = not diverged(window["loss"], history)
        if healthy:
          history.append(window["loss"])
        elif manager.latest_checkpoint:
          # Roll back to the last healthy checkpoint at half the learning rate.
          ckpt.restore(manager.latest_checkpoint)
          backoff.assign(backoff * 0.5)
          history = history[:-1]
          log(event="diverged", step=s, loss=window["loss"],
              restored=manager.latest_checkpoint, lr_backoff=float(backoff.numpy()))
          continue
      if s % checkpoint_every == 0 and healthy:
        save()
      if val_images and s % eval_every == 0:
        bpp, psnr = evaluate(model, val_images)
        log(event="eval", step=s, bpp=bpp, psnr=psnr)
        last = time.time()
  finally:
    if healthy:
      save()
    for sig, handler in previous.items():
      signal.signal(sig, handler)
  log(event="done", step=int(step), seconds=time.time() - started)
  return model


def restore(model_name, quality, run_dir, metric="mse", lmbda=None,
            model_kwargs=None):
  """The model of a run's newest checkpoint (without the optimizer)."""
  overrides = dict(model_kwargs or {})
  if lmbda is not None:
    overrides["lmbda"] = lmbda
  model = create_model(model_name, quality, metric=metric, **overrides)
  step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
  ckpt = tf.train.Checkpoint(model=model, step=step)
  latest = tf.train.latest_checkpoint(os.path.join(run_dir, "ckpt"))
  if latest is None:
    raise FileNotFoundError(f"no checkpoint in {run_dir}/ckpt")
  ckpt.restore(latest).expect_partial()
  return model, int(step)


def run_summary(run_dir):
  """Steps and training time of a run, summed over every resumed session."""
  wall, last_step, evals = 0., 0, []
  path = os.path.join(run_dir, "log.jsonl")
  if os.path.exists(path):
    with open(path) as f:
      records = [json.loads(line) for line in f if line.strip()]
    previous_step = 0
    for r in records:
      if r["event"] == "resume":
        previous_step = r["step"]
      elif r["event"] == "train":
        wall += r["s_per_step"] * (r["step"] - previous_step)
        previous_step = last_step = r["step"]
      elif r["event"] == "eval":
        evals.append({k: r[k] for k in ("step", "bpp", "psnr")})
  return dict(steps=last_step, train_wall_hours=round(wall / 3600, 3),
              # Both cores are busy during a step, so core-hours = 2 x wall.
              train_core_hours=round(2 * wall / 3600, 3), evals=evals[-3:])


def export(model, path, quality, recipe=None):
  zoo.save_weights(model, path, quality, extra=recipe)
