"""The training system around the loop: flags, data edge cases, precision,
non-finite losses, TensorBoard, kill -9 resume and two-worker training.

Everything runs tiny models (N = M = 8) on 32x32 crops for a handful of steps;
the subprocess tests pay TensorFlow's start-up once or twice each.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import ROOT, random_image
from tfcodec import zoo
from tfcodec.train import data, loop, precision, seed_flags

TRAIN_PY = os.path.join(ROOT, "train.py")


def write_images(folder, sizes):
  os.makedirs(folder, exist_ok=True)
  for i, (h, w) in enumerate(sizes):
    Image.fromarray(random_image(h, w, seed=i)).save(
        os.path.join(folder, f"{i:02d}.png"))
  return str(folder)


def subprocess_env(**extra):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
             PYTHONUNBUFFERED="1")
  env.pop("TF_CONFIG", None)
  env.update(extra)
  return env


def tiny_command(images, run_dir, steps, *extra):
  """A train.py command line for a tiny factorized model, in seed spellings."""
  return [sys.executable, TRAIN_PY, "--model=bmshj2018-factorized",
          "--N", "8", "--M", "8", "-d", images, "--val_glob=",
          "--patch_size=32", "--batch_size=2", f"--steps={steps}", "-lr",
          "1e-3", "--precision=float32", f"--run_dir={run_dir}", *extra]


# -- flags -----------------------------------------------------------------
def test_multi_word_flag_values_are_joined():
  argv = ["train.py", "--lr_epoch", "45", "48", "-e", "50", "--lr_milestones",
          "10,20", "30", "--seed", "1"]
  assert seed_flags.join_multi_word_values(argv) == [
      "train.py", "--lr_epoch=45,48", "-e", "50", "--lr_milestones=10,20,30",
      "--seed", "1"]
  assert seed_flags.join_multi_word_values(["--lr_epoch=4,5"]) == [
      "--lr_epoch=4,5"]


def test_dataset_split_picks_compressai_subfolders(tmp_path):
  (tmp_path / "train").mkdir()
  assert seed_flags.dataset_split(str(tmp_path), "train") == str(
      tmp_path / "train")
  assert seed_flags.dataset_split(str(tmp_path), "test") == str(tmp_path)
  assert seed_flags.dataset_split("", "test") == ""


def test_precision_follows_cpu_flags():
  assert precision.resolve_precision("auto", {"avx2", "avx512_bf16"}) == (
      "mixed_bfloat16")
  assert precision.resolve_precision("auto", {"amx_bf16"}) == "mixed_bfloat16"
  assert precision.resolve_precision("auto", {"avx2", "avx512f"}) == "float32"
  assert precision.resolve_precision("float32", {"amx_bf16"}) == "float32"
  with pytest.raises(ValueError):
    precision.resolve_precision("float16")


def test_every_flagfile_names_a_known_model_and_flags():
  from tfcodec.models import MODELS
  configs = os.path.join(ROOT, "configs")
  flagfiles = [os.path.join(d, f) for d, _, fs in os.walk(configs)
               for f in fs if f.endswith(".flags")]
  assert len(flagfiles) >= 4
  with open(TRAIN_PY) as f:
    source = f.read()
  for path in flagfiles:
    with open(path) as f:
      lines = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    values = dict(l[2:].split("=", 1) for l in lines)
    assert values["model"] in MODELS, path
    assert os.path.basename(os.path.dirname(path)) == values["model"], path
    for name in values:
      assert f'"{name}"' in source, f"{path}: unknown flag --{name}"


# -- data ------------------------------------------------------------------
def test_small_images_give_finite_full_crops(tmp_path):
  folder = write_images(tmp_path / "small", [(1, 1), (5, 3), (31, 40), (2, 90)])
  ds = data.train_dataset(folder, patch_size=32, batch_size=4, seed=0)
  for batch in ds.take(3):
    assert batch.shape == (4, 32, 32, 3) and batch.dtype == tf.float32
    values = batch.numpy()
    assert np.all(np.isfinite(values))
    assert values.min() >= 0. and values.max() <= 1.
  assert data.steps_per_epoch(659, 8) == 83
  assert data.steps_per_epoch(3, 8) == 1


def _ramp_folder(folder, height, width):
  """A folder holding one PNG whose red is the column index, green the row
  and blue 77 everywhere; returns the folder's path."""
  columns = np.broadcast_to(np.arange(width), (height, width))
  rows = np.broadcast_to(np.arange(height)[:, None], (height, width))
  ramp = np.stack([columns, rows, np.full((height, width), 77)], -1)
  folder.mkdir()
  Image.fromarray(ramp.astype(np.uint8)).save(folder / "ramp.png")
  return str(folder)


def test_rescale_shrinks_the_content_and_stays_8_bit(tmp_path):
  # A ramp rising 1 per pixel: a crop at scale s rises 1/s per pixel, so
  # with s in [0.5, 1] the mean step is in [1, 2] and exceeds 1 on average.
  folder = _ramp_folder(tmp_path / "ramp", 200, 240)
  ds = data.train_dataset(folder, patch_size=48, batch_size=16, seed=0,
                          augment=["rescale"])
  batch = next(iter(ds)).numpy() * 255.
  assert batch.shape == (16, 48, 48, 3)
  assert np.allclose(batch, np.round(batch), atol=1e-3)  # 8-bit values
  # Away from the antialiasing filter's edge effects.
  steps = np.diff(batch[:, 8:-8, 8:-8, 0], axis=2).mean(axis=(1, 2))
  assert np.all(steps > .95) and np.all(steps < 2.05), steps
  assert steps.mean() > 1.2, steps
  assert np.allclose(batch[..., 2], 77., atol=.5)  # flat stays flat
  # Images smaller than the largest region are rescaled as far as they allow.
  small = _ramp_folder(tmp_path / "small", 50, 60)
  tiny = next(iter(data.train_dataset(small, patch_size=48, batch_size=4,
                                      seed=0, augment=["rescale"])))
  assert tiny.shape == (4, 48, 48, 3)


def test_flip_mirrors_about_half_the_crops(tmp_path):
  folder = _ramp_folder(tmp_path / "ramp", 40, 40)
  ds = data.train_dataset(folder, patch_size=40, batch_size=64, seed=0,
                          augment=["flip"])
  red = next(iter(ds)).numpy()[:, 0, :, 0] * 255.
  rising = np.all(np.diff(red, axis=1) > 0, axis=1)
  falling = np.all(np.diff(red, axis=1) < 0, axis=1)
  assert np.all(rising | falling)
  assert 16 <= rising.sum() <= 48, rising.sum()
  plain = next(iter(data.train_dataset(folder, patch_size=40,
                                       batch_size=8, seed=0)))
  assert np.all(np.diff(plain.numpy()[:, 0, :, 0], axis=1) > 0)


def test_unknown_augmentation_is_refused_by_name():
  with pytest.raises(ValueError, match="'mirror'.*flip, rescale"):
    data.check_augment(["flip", "mirror"])
  assert data.check_augment(["flip", " ", "rescale"]) == ("flip", "rescale")
  run = subprocess.run([sys.executable, TRAIN_PY, "--augment=mirror",
                        "--steps=1"], capture_output=True, text=True,
                       timeout=300)
  assert run.returncode != 0 and "--augment" in run.stderr, run.stderr[-500:]


def test_ms_ssim_needs_large_enough_crops(tmp_path):
  with pytest.raises(ValueError, match="161"):
    loop.train("bmshj2018-factorized", 3, metric="ms-ssim", patch_size=64,
               run_dir=str(tmp_path / "run"), train_glob=str(tmp_path))


# -- non-finite losses -----------------------------------------------------
def test_non_finite_batches_never_reach_the_weights(tmp_path, monkeypatch):
  """A NaN batch is skipped and logged, and the loop rolls back."""
  folder = write_images(tmp_path / "images", [(40, 40)] * 4)
  real_train_dataset = data.train_dataset

  def poisoned(*args, **kwargs):
    ds = real_train_dataset(*args, **kwargs)
    nan = float("nan")
    return ds.enumerate().map(
        lambda i, x: tf.where(tf.equal(i, 4), tf.fill(tf.shape(x), nan), x))

  monkeypatch.setattr(data, "train_dataset", poisoned)
  run_dir = str(tmp_path / "run")
  model = loop.train("bmshj2018-factorized", 3, train_glob=folder, val_glob="",
                     run_dir=run_dir, patch_size=32, batch_size=2, steps=8,
                     lr=1e-3, precision="float32", checkpoint_every=2,
                     log_every=1, model_kwargs=dict(N=8, M=8), echo=False)
  records = loop.read_log(run_dir)
  skipped = [r["step"] for r in records
             if r["event"] == "train" and r["skipped"] > 0]
  assert skipped == [5]
  diverged = [r for r in records if r["event"] == "diverged"]
  assert len(diverged) == 1 and diverged[0]["lr_backoff"] == 0.5
  assert records[-1]["event"] == "done" and records[-1]["step"] == 8
  for variable in model.trainable_variables:
    assert np.all(np.isfinite(variable.numpy())), variable.name


# -- observability -----------------------------------------------------------
def test_tensorboard_scalars_and_images(tmp_path):
  folder = write_images(tmp_path / "images", [(40, 48), (36, 36)])
  run_dir = str(tmp_path / "run")
  loop.train("bmshj2018-factorized", 3, train_glob=folder, val_glob=folder,
             run_dir=run_dir, patch_size=32, batch_size=2, steps=4,
             precision="float32", log_every=2, eval_every=4,
             checkpoint_every=4, summary_images=2, model_kwargs=dict(N=8, M=8),
             echo=False)
  tags = set()
  tb = os.path.join(run_dir, "tb")
  for name in os.listdir(tb):
    for event in tf.compat.v1.train.summary_iterator(os.path.join(tb, name)):
      tags.update(v.tag for v in event.summary.value)
  assert {"train/loss", "train/bpp", "train/psnr", "train/steps_per_second",
          "val/bpp", "val/psnr", "val/reconstruction_0",
          "val/reconstruction_1"} <= tags
  line = loop.progress_line(50, 200, 2., dict(loss=1.5, bpp=.25, psnr=30.),
                            1e-4)
  assert "step 50/200" in line and "ETA 1m15s" in line and "PSNR 30.00" in line


def test_in_run_evaluation_reports_ms_ssim_for_ms_ssim_models():
  """An MS-SSIM run's evaluation gives the MS-SSIM of the reconstruction it
  keeps, next to bpp and PSNR; an MSE run's gives no MS-SSIM."""
  from tfcodec import metrics
  from tfcodec.models import create_model
  image = random_image(40, 56, seed=4)
  tf.keras.utils.set_random_seed(2)
  model = create_model("bmshj2018-factorized", 3, metric="ms-ssim", N=8, M=8)
  scores, (kept,) = loop.evaluate(model, [image], keep=1)
  # The factorized model's only latent is y: its share is the whole rate.
  assert set(scores) == {"bpp", "psnr", "ms_ssim", "bpp_y"}
  assert scores["bpp_y"] == pytest.approx(scores["bpp"], rel=1e-12)
  assert scores["ms_ssim"] == metrics.ms_ssim(image, kept)
  assert scores["psnr"] == pytest.approx(metrics.psnr(image, kept), abs=1e-5)
  assert 0 < scores["ms_ssim"] < 1
  mse_model = create_model("bmshj2018-factorized", 3, N=8, M=8)
  assert set(loop.evaluate(mse_model, [image])[0]) == {"bpp", "psnr", "bpp_y"}
  # A hyperprior model's split adds up to its rate.
  hyper = create_model("mbt2018-mean", 3, N=8, M=8)
  scores = loop.evaluate(hyper, [image])[0]
  assert scores["bpp_y"] + scores["bpp_z"] == pytest.approx(scores["bpp"])


# -- kill -9 and resume ------------------------------------------------------
def test_kill_9_then_rerun_resumes_from_the_last_checkpoint(tmp_path):
  # Generous timeouts: on a loaded machine TensorFlow alone can take minutes
  # to start; the steps themselves take seconds.
  images = write_images(tmp_path / "images", [(48, 40)] * 3 + [(20, 20)])
  run_dir = str(tmp_path / "run")
  steps = 100
  command = tiny_command(images, run_dir, steps, "--checkpoint_every=5",
                         "--log_every=10", "--seed", "3")
  index = os.path.join(run_dir, "ckpt", "checkpoint")
  first = subprocess.Popen(command, env=subprocess_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  deadline = time.time() + 900
  while not os.path.exists(index) and time.time() < deadline:
    assert first.poll() is None, first.stdout.read().decode()
    time.sleep(0.02)
  first.send_signal(signal.SIGKILL)
  first.wait()
  assert first.returncode == -signal.SIGKILL
  saved = tf.train.latest_checkpoint(os.path.join(run_dir, "ckpt"))
  saved_step = int(saved.rsplit("-", 1)[1])
  assert 0 < saved_step < steps

  second = subprocess.run(command, env=subprocess_env(), capture_output=True,
                          text=True, timeout=900)
  assert second.returncode == 0, second.stdout + second.stderr
  assert f"resumed from {saved} at step {saved_step}" in second.stdout
  records = loop.read_log(run_dir)
  resume = [r for r in records if r["event"] == "resume"]
  assert len(resume) == 1
  assert resume[0]["step"] == saved_step
  assert resume[0]["optimizer_iterations"] == saved_step
  done = records[-1]
  assert done["event"] == "done"
  assert done["step"] == steps and done["optimizer_iterations"] == steps
  recipe = zoo.read_metadata(os.path.join(run_dir, "export.npz"))
  assert recipe["run"]["sessions"] == 2 and recipe["run"]["cpu_hours"] > 0
  assert recipe["flags"]["N"] == 8 and recipe["flags"]["steps"] == steps


# -- two workers ---------------------------------------------------------------
def free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def test_two_workers_end_with_identical_weights(tmp_path):
  images = write_images(tmp_path / "images", [(48, 40)] * 4)
  run_dir = str(tmp_path / "run")
  steps = 4
  cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
  workers = []
  for index in range(2):
    config = json.dumps({"cluster": cluster,
                         "task": {"type": "worker", "index": index}})
    workers.append(subprocess.Popen(
        tiny_command(images, run_dir, steps, "--strategy=multi_worker",
                     "--checkpoint_every=2", "--log_every=1", "--seed=5"),
        env=subprocess_env(TF_CONFIG=config), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True))
  outputs = []
  try:
    for worker in workers:
      outputs.append(worker.communicate(timeout=900)[0])
  finally:
    for worker in workers:
      if worker.poll() is None:
        worker.kill()
  for worker, output in zip(workers, outputs):
    assert worker.returncode == 0, output
  exports = [os.path.join(run_dir, "export.npz"),
             os.path.join(run_dir, "worker-1", "export.npz")]
  logs = [loop.read_log(run_dir), loop.read_log(os.path.join(run_dir,
                                                             "worker-1"))]
  for records in logs:
    assert records[0]["replicas"] == 2
    assert [r["step"] for r in records if r["event"] == "train"] == [1, 2, 3, 4]
    assert records[-1]["optimizer_iterations"] == steps
  # The workers saw different crops (one shuffle seed each), so equal weights
  # mean the gradients really were all-reduced.
  with np.load(exports[0]) as a, np.load(exports[1]) as b:
    keys = [k for k in a.files if k != "__metadata__"]
    assert keys == [k for k in b.files if k != "__metadata__"]
    for key in keys:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  first_losses = [[r["loss"] for r in records if r["event"] == "train"][0]
                  for records in logs]
  assert first_losses[0] == first_losses[1]  # the loss is the global mean
