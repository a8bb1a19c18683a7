"""train.py's loop end to end on a tiny model: train, resume, export, load, code."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import random_image
from tfcodec import codec, zoo
from tfcodec.models import create_model
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


def test_warm_start_copies_the_named_transforms_only(tmp_path):
  """--warm_start_from: Informer starts from mbt2018-mean's g_a and g_s (same
  N and M); its own hyperpriors keep their initialisation."""
  from tfcodec import zoo
  from tfcodec.testing import TINY_INFORMER
  tf.keras.utils.set_random_seed(11)
  source = create_model("mbt2018-mean", N=TINY_INFORMER["N"],
                        M=TINY_INFORMER["M"])
  path = str(tmp_path / "source.npz")
  zoo.save_weights(source, path, quality=3, dtype=np.float32)
  target = create_model("informer", **TINY_INFORMER)
  before = [v.numpy() for v in target.local_h_a.trainable_weights]
  assert zoo.warm_start(target, path) == ["g_a", "g_s"]
  for part in ("g_a", "g_s"):
    for got, want in zip(getattr(target, part).trainable_weights,
                         getattr(source, part).trainable_weights):
      np.testing.assert_array_equal(got.numpy(), want.numpy())
  for got, want in zip(target.local_h_a.trainable_weights, before):
    np.testing.assert_array_equal(got.numpy(), want)
  wider = create_model("informer", **dict(TINY_INFORMER, N=16))
  with pytest.raises(ValueError, match="does not match"):
    zoo.warm_start(wider, path)
  with pytest.raises(ValueError, match="not a part"):
    zoo.warm_start(target, path, parts=("h_a",))


def test_partial_warm_start_copies_what_matches_by_place_and_shape(tmp_path):
  """--warm_start_partial: cheng2020-attn from the paper's Cheng 2020, whose
  g_a lacks the last bias and whose g_s shortcuts are 1x1, not 3x3."""
  from tfcodec import zoo
  from tfcodec.testing import TINY
  tf.keras.utils.set_random_seed(13)
  source = create_model("cheng2020-gmm", **TINY)
  path = str(tmp_path / "gmm.npz")
  zoo.save_weights(source, path, quality=1, dtype=np.float32)
  target = create_model("cheng2020-attn", **TINY)
  with pytest.raises(ValueError, match="does not match"):
    zoo.warm_start(target, path)
  before = {v.ref(): v.numpy() for v in target.trainable_variables}
  parts = zoo.warm_start(target, path, partial=True)
  assert parts == ["g_a (113/114)", "g_s (115/118)"]
  # g_a: all but the last convolution's bias, which the paper's model lacks.
  last_bias = target.g_a.get_layer("conv_out").bias
  got = [v for v in target.g_a.trainable_variables if v is not last_bias]
  for v, want in zip(got, source.g_a.trainable_variables, strict=True):
    np.testing.assert_array_equal(v.numpy(), want.numpy(), err_msg=v.name)
  np.testing.assert_array_equal(last_bias.numpy(), before[last_bias.ref()])
  # g_s: the same list; the 3x3 shortcuts where the paper's are 1x1 are new.
  for v, want in zip(target.g_s.trainable_variables,
                     source.g_s.trainable_variables, strict=True):
    expected = want.numpy() if v.shape == want.shape else before[v.ref()]
    np.testing.assert_array_equal(v.numpy(), expected, err_msg=v.name)
  # Nothing outside the parts moved.
  for v in target.h_a.trainable_variables:
    np.testing.assert_array_equal(v.numpy(), before[v.ref()])


def test_partial_warm_start_matches_sequential_layers_by_name(tmp_path):
  """cheng2020-anchor from cheng2020-attn: the anchor's g_a and g_s are the
  attention model's without the attention modules, so every one of the
  anchor's transform variables has a counterpart, though list positions
  shift after the first missing module."""
  from tfcodec import zoo
  from tfcodec.testing import TINY
  tf.keras.utils.set_random_seed(14)
  source = create_model("cheng2020-attn", **TINY)
  path = str(tmp_path / "attn.npz")
  zoo.save_weights(source, path, quality=1, dtype=np.float32)
  target = create_model("cheng2020-anchor", **TINY)
  n_g_a = len(target.g_a.trainable_variables)
  n_g_s = len(target.g_s.trainable_variables)
  parts = zoo.warm_start(target, path, parts=("g_a", "g_s", "h_s"),
                         partial=True)
  assert parts == [f"g_a ({n_g_a}/{n_g_a})", f"g_s ({n_g_s}/{n_g_s})",
                   "h_s (10/10)"]
  for name in ("rb_1", "rbs_2", "conv_out"):  # after attention_0 in g_a
    for v, want in zip(target.g_a.get_layer(name).trainable_variables,
                       source.g_a.get_layer(name).trainable_variables,
                       strict=True):
      np.testing.assert_array_equal(v.numpy(), want.numpy(), err_msg=v.name)
  for name in ("rb_0", "subpel_out"):
    for v, want in zip(target.g_s.get_layer(name).trainable_variables,
                       source.g_s.get_layer(name).trainable_variables,
                       strict=True):
      np.testing.assert_array_equal(v.numpy(), want.numpy(), err_msg=v.name)


def test_saved_informer_weights_load_back(tmp_path):
  """Context models record their likelihood in the file; Informer's
  constructor has no such argument, and loading must still work."""
  tf.keras.utils.set_random_seed(12)
  # The paper's head width (64): the file does not record test-only widths.
  model = create_model("informer", N=8, M=64)
  path = str(tmp_path / "informer.npz")
  zoo.save_weights(model, path, quality=3, dtype=np.float32)
  assert zoo.read_metadata(path)["likelihood"] == "gaussian"
  loaded = zoo.load_model(path=path, freeze=False)
  for got, want in zip(loaded.trainable_weights, model.trainable_weights):
    np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_export_averages_the_kept_checkpoints(tmp_path):
  """--average_from_step: the exported weights are the mean of the kept
  checkpoints' weights at or after that step, and say which they were."""
  images = tmp_path / "images"
  images.mkdir()
  for i in range(2):
    Image.fromarray(random_image(64, 64, seed=i)).save(images / f"{i}.png")
  run_dir = str(tmp_path / "run")
  loop.train("mbt2018-mean", 3, train_glob=str(images), val_glob="",
             run_dir=run_dir, patch_size=64, batch_size=2, lr=1e-2,
             steps=4, checkpoint_every=1, eval_every=0, log_every=0,
             model_kwargs=dict(N=8, M=8), keep_checkpoints=5, echo=False)
  # Each kept checkpoint, read on its own.
  weights = {}
  state = tf.train.get_checkpoint_state(os.path.join(run_dir, "ckpt"))
  for prefix in state.all_model_checkpoint_paths:
    model = create_model("mbt2018-mean", 3, N=8, M=8)
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    tf.train.Checkpoint(model=model, step=step).restore(prefix).expect_partial()
    weights[int(step)] = [v.numpy() for v in model.trainable_weights]
  assert sorted(weights) == [1, 2, 3, 4]
  averaged_model, step, averaged = loop.restore(
      "mbt2018-mean", 3, run_dir, model_kwargs=dict(N=8, M=8),
      average_from_step=2)
  assert (step, averaged) == (4, [2, 3, 4])
  for i, variable in enumerate(averaged_model.trainable_weights):
    expected = np.mean([weights[s][i].astype(np.float64) for s in (2, 3, 4)], 0)
    np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-6, atol=1e-8)
  # Training moved the weights, so the mean is not any one checkpoint.
  assert any(not np.allclose(weights[2][i], weights[4][i])
             for i in range(len(weights[4])))
  newest, step, averaged = loop.restore("mbt2018-mean", 3, run_dir,
                                        model_kwargs=dict(N=8, M=8))
  assert (step, averaged) == (4, [])
  for a, b in zip(newest.trainable_weights, weights[4]):
    np.testing.assert_array_equal(a.numpy(), b)
  with pytest.raises(FileNotFoundError, match="at or after step 9"):
    loop.restore("mbt2018-mean", 3, run_dir, model_kwargs=dict(N=8, M=8),
                 average_from_step=9)


def test_prior_lr_multiplier_scales_only_the_priors_steps(tmp_path):
  from tfcodec.train.optimizer import Adam, prior_variables
  model = create_model("mbt2018-mean", 3, N=8, M=8)
  priors = prior_variables(model)
  assert priors and {v.ref() for v in priors} == {
      v.ref() for v in model.z_prior.trainable_variables}
  start = [v.numpy() for v in model.trainable_variables]
  x = tf.constant(random_image(64, 64)[None], tf.float32) / 255.
  with tf.GradientTape() as tape:
    loss = model.rd_loss(x, model(x, training=True))["loss"]
  grads = tape.gradient(loss, model.trainable_variables)
  grads = [tf.zeros_like(v) if g is None else g
           for g, v in zip(grads, model.trainable_variables)]

  steps = {}
  for multiplier in (1., 10.):
    for variable, value in zip(model.trainable_variables, start):
      variable.assign(value)
    optimizer = Adam(1e-3, boosted=priors, multiplier=multiplier)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    steps[multiplier] = [v.numpy() - s
                         for v, s in zip(model.trainable_variables, start)]
  boosted = {v.ref() for v in priors}
  moved = 0
  for variable, plain, fast in zip(model.trainable_variables, steps[1.],
                                   steps[10.]):
    if variable.ref() in boosted:
      np.testing.assert_allclose(fast, 10. * plain, rtol=1e-3, atol=1e-7)
      moved += int(np.abs(plain).max() > 5e-4)  # Adam's first step ~ lr
    else:
      np.testing.assert_array_equal(fast, plain)
  assert moved >= 1

  # A plain Keras Adam checkpoint (the runs before the multiplier) restores.
  plain = tf.keras.optimizers.Adam(1e-3)
  plain.apply_gradients(zip(grads, model.trainable_variables))
  path = tf.train.Checkpoint(optimizer=plain).save(str(tmp_path / "ckpt"))
  restored = Adam(1e-3, boosted=priors, multiplier=10.)
  restored.build(model.trainable_variables)
  tf.train.Checkpoint(optimizer=restored).restore(path).assert_consumed()
  assert int(restored.iterations.numpy()) == 1
  for a, b in zip(plain.variables, restored.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_an_export_keeps_its_parent_after_the_parent_file_is_replaced(tmp_path):
  """A fine-tuned export names its parent by content and keeps the parent's
  recipe, even when the parent's path later holds another file (a re-shipped
  weight keeps its name); lineage CPU-hours add the parent's own."""
  import hashlib
  from tfcodec.train import lineage
  images = tmp_path / "images"
  images.mkdir()
  for i in range(2):
    Image.fromarray(random_image(72, 72, seed=i)).save(images / f"{i}.png")
  parent = create_model("mbt2018-mean", 3, N=8, M=8)
  parent_path = str(tmp_path / "shipped.npz")
  zoo.save_weights(parent, parent_path, 3,
                   extra={"run": {"steps": 1234, "cpu_hours": 2.5}})
  with open(parent_path, "rb") as f:
    parent_sha = hashlib.sha256(f.read()).hexdigest()
  run_dir = str(tmp_path / "run")
  kwargs = dict(train_glob=str(images), run_dir=run_dir, patch_size=64,
                batch_size=2, lr=1e-5, log_every=1, eval_every=100,
                finetune_from=parent_path, model_kwargs=dict(N=8, M=8),
                echo=False)
  child = loop.train("mbt2018-mean", 3, steps=1, **kwargs)
  # The run's export replaces the parent under its name, then the run resumes
  # (a resume reads no parent and logs none).
  loop.export(child, parent_path, 3, recipe={"run": loop.run_summary(run_dir)})
  loop.train("mbt2018-mean", 3, steps=2, **kwargs)

  summary = loop.run_summary(run_dir)
  assert [p["how"] for p in summary["parents"]] == ["finetune_from"]
  recorded = summary["parents"][0]
  assert recorded["sha256"] == parent_sha
  assert recorded["metadata"]["run"] == {"steps": 1234, "cpu_hours": 2.5}
  assert summary["lineage_cpu_hours"] == pytest.approx(
      summary["cpu_hours"] + 2.5, abs=1e-4)
  assert summary["cpu_hours"] > 0

  # A grandchild counts the whole chain once (its run's log is written by
  # hand: the event is the same one training writes, tested above).
  grandchild_path = str(tmp_path / "grandchild.npz")
  loop.export(child, grandchild_path, 3, recipe={"run": summary})
  run2 = tmp_path / "run2"
  run2.mkdir()
  (run2 / "log.jsonl").write_text(json.dumps(dict(
      event="train", step=1, s_per_step=1., session=1., session_wall=1.,
      session_cpu=36.)) + "\n")
  lineage.record_parent(str(run2), "finetune_from", grandchild_path)
  summary2 = loop.run_summary(str(run2))
  assert summary2["lineage_cpu_hours"] == pytest.approx(
      summary2["cpu_hours"] + summary["lineage_cpu_hours"], abs=1e-4)
  assert (summary2["parents"][0]["metadata"]["run"]["parents"][0]["sha256"]
          == parent_sha)


def test_a_parent_can_be_recorded_for_an_older_run(tmp_path):
  from tfcodec.train import lineage
  run_dir = tmp_path / "run"
  run_dir.mkdir()
  (run_dir / "log.jsonl").write_text(json.dumps(dict(
      event="train", step=10, s_per_step=1., session=1., session_wall=10.,
      session_cpu=3600.)) + "\n")
  path = str(tmp_path / "old.npz")
  zoo.save_weights(create_model("mbt2018-mean", 3, N=8, M=8), path, 3,
                   extra={"run": {"cpu_hours": 1.0}})
  lineage.main(["--run_dir", str(run_dir), "--how", "finetune_from",
                "--parent", path])
  summary = loop.run_summary(str(run_dir))
  # The appended event is not a session: one session, one CPU-hour of its own.
  assert summary["sessions"] == 1 and summary["cpu_hours"] == 1.0
  assert summary["lineage_cpu_hours"] == 2.0
  with pytest.raises(ValueError, match="how must be one of"):
    lineage.parent_record("copied_from", path)
  with pytest.raises(FileNotFoundError, match="no such run log"):
    lineage.record_parent(str(tmp_path / "nowhere"), "finetune_from", path)
