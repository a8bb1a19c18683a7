"""train.py's loop end to end on a tiny model: train, resume, export, load, code."""

import json
import os

import numpy as np
from PIL import Image

from conftest import random_image
from tfcodec import codec, zoo
from tfcodec.train import loop


def test_train_resume_export_and_code(tmp_path):
  images = tmp_path / "images"
  images.mkdir()
  for i in range(3):
    Image.fromarray(random_image(80 + 10 * i, 70, seed=i)).save(images / f"{i}.png")
  Image.fromarray(random_image(40, 30, seed=9)).save(images / "small.png")  # < crop
  run_dir = str(tmp_path / "run")
  kwargs = dict(train_glob=str(images), val_glob=str(images), run_dir=run_dir,
                patch_size=64, batch_size=2, lr=1e-3, checkpoint_every=2,
                eval_every=3, log_every=1, model_kwargs=dict(N=8, M=8))
  loop.train("mbt2018-mean", 3, steps=3, **kwargs)
  model = loop.train("mbt2018-mean", 3, steps=5, **kwargs)  # resumes at 3
  with open(os.path.join(run_dir, "log.jsonl")) as f:
    records = [json.loads(line) for line in f]
  resumes = [r for r in records if r["event"] == "resume"]
  assert len(resumes) == 1 and resumes[0]["step"] == 3
  train_steps = [r["step"] for r in records if r["event"] == "train"]
  assert train_steps == [1, 2, 3, 4, 5]
  assert all(np.isfinite(r["loss"]) for r in records if r["event"] == "train")
  evals = [r for r in records if r["event"] == "eval"]
  assert [r["step"] for r in evals] == [3] and evals[0]["bpp"] > 0
  # The traced step and eager evaluation compute the same function.
  checks = [r for r in records if r["event"] == "consistency"]
  assert [r["step"] for r in checks] == [3] and checks[0]["ok"], checks
  summary = loop.run_summary(run_dir)
  assert summary["steps"] == 5 and summary["train_wall_hours"] > 0

  path = str(tmp_path / "w.npz")
  loop.export(model, path, 3, recipe={"run": summary})
  meta = zoo.read_metadata(path)
  assert (meta["model"], meta["N"], meta["M"], meta["quality"]) == (
      "mbt2018-mean", 8, 8, 3)
  loaded = zoo.load_model(path=path)
  assert len(loaded.trainable_weights) == len(model.trainable_weights)
  for a, b in zip(model.trainable_weights, loaded.trainable_weights):
    np.testing.assert_array_equal(a.numpy().astype(np.float16).astype(np.float32),
                                  b.numpy())
  image = random_image(33, 47)
  decoded = codec.decode_bytes(codec.encode_image(loaded, image, 3), model=loaded)
  assert decoded.shape == image.shape


def test_divergence_detection_and_learning_rate():
  assert not loop.diverged(5., [])
  assert not loop.diverged(5., [4., 4.5, 4.2])
  assert loop.diverged(13., [4., 4.5, 4.2])
  assert loop.diverged(float("nan"), [])
  assert loop.learning_rate(0, 1e-3, ["10", "20"], 0.1, 1.) == 1e-3
  assert abs(loop.learning_rate(15, 1e-3, ["10", "20"], 0.1, 0.5) - 5e-5) < 1e-12
  assert abs(loop.learning_rate(25, 1e-3, ["10", "20"], 0.1, 1.) - 1e-5) < 1e-12
