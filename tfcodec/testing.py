"""Tiny, randomly initialised models for tests and reliability harnesses.

Every registered model is built with TINY widths from a fixed seed, so the
fuzzer, the determinism matrix and the test suite run on the same models no
matter which weights ship. Freezing a model builds its range-coding tables
(2-4 s per model on 2 cores, plus tracing its coding functions), so
`load_tiny_models` caches weights and tables in a folder and worker
subprocesses restore them in about a second each.
"""

import collections.abc
import hashlib
import os
import tempfile

import numpy as np

TINY = dict(N=8, M=8)
# TCM needs M to split into its 5 slices, head sizes that divide N, and
# smaller windows (4 on y, 2 in the hyper path: stride 64 instead of 128).
TINY_TCM = dict(N=8, M=40, window=4, hyper_window=2,
                head_dims=(4, 8, 8, 8, 8, 4), hyper_head_dim=8,
                hyper_channels=8, attention_channels=16,
                attention_head_dim=8, attention_window=4, slice_hidden=(16, 16))
# Informer: M carries 8 tokens of M/8 and 1x1 local z of M/16 channels;
# attention heads of 8 instead of 64.
TINY_INFORMER = dict(N=8, M=16, head_dim=8)
SEED = 0
# Part of the snapshot fingerprint: snapshots built before the Keras
# initializers were seeded hold arbitrary weights.
_SEEDING = "keras-utils-per-model;tcm-torch-init"


def tiny_config(name):
  """Constructor arguments of a tiny random model of a registered name."""
  if name.startswith("tcm-"):
    return TINY_TCM
  return TINY_INFORMER if name == "informer" else TINY


def build_tiny_models(names=None):
  """{name: frozen tiny model} for every registered model (or `names`)."""
  import tensorflow as tf
  from tfcodec.models import MODELS, create_model
  models = {}
  for name in sorted(names or MODELS):
    # Seeded per model, so its weights do not depend on which other models
    # are registered or built. Keras draws unseeded initializers from
    # Python's and NumPy's generators: tf.random.set_seed alone gave every
    # fresh build (CI) different weights.
    tf.keras.utils.set_random_seed(SEED)
    model = create_model(name, **tiny_config(name))
    model.freeze()
    models[name] = model
  return models


def _fingerprint(model):
  """Changes whenever the architecture, TINY or SEED changes, so snapshots of
  another version of a model (another branch, an edited layer) never load."""
  text = f"{tiny_config(model.model_name)}{SEED}{_SEEDING}" + ";".join(
      f"{v.name}{v.shape}" for v in model.trainable_weights)
  return hashlib.sha256(text.encode()).hexdigest()[:12]


def save_snapshot(model, path):
  """Writes a frozen model's weights and coding tables to one .npz file."""
  arrays = {f"w{i:04d}": v.numpy()
            for i, v in enumerate(model.trainable_weights)}
  for index, tables in model.coding_tables().items():
    for key, value in tables.items():
      arrays[f"t{index}:{key}"] = value
  # A unique temp name: several test runs may share the cache folder.
  fd, tmp = tempfile.mkstemp(suffix=".npz", dir=os.path.dirname(path))
  with os.fdopen(fd, "wb") as f:
    np.savez(f, **arrays)
  os.replace(tmp, path)


def restore_snapshot(model, path):
  """Assigns a snapshot's weights to `model` and freezes it with the saved
  coding tables (no table is recomputed)."""
  with np.load(path) as data:
    weights = sorted(k for k in data.files if k.startswith("w"))
    if len(weights) != len(model.trainable_weights):
      raise ValueError(f"{path}: {len(weights)} arrays for "
                       f"{len(model.trainable_weights)} variables")
    for key, variable in zip(weights, model.trainable_weights):
      variable.assign(data[key])
    tables = {}
    for key in data.files:
      if key.startswith("t"):
        index, table = key[1:].split(":", 1)
        tables.setdefault(int(index), {})[table] = data[key]
  model.freeze(tables)
  return model


class TinyModels(collections.abc.Mapping):
  """{name: frozen tiny model} for every registered model, each restored
  from its snapshot (`load_tiny_models`) the first time it is looked up, so
  a test process pays only for the models its tests use (restoring all
  twelve took ~90 s per pytest worker)."""

  def __init__(self, directory, names=None):
    from tfcodec.models import MODELS
    self._directory = directory
    self._names = sorted(names or MODELS)
    self._models = {}

  def __getitem__(self, name):
    if name not in self._names:
      raise KeyError(name)
    if name not in self._models:
      self._models[name] = load_tiny_models(self._directory, [name])[name]
    return self._models[name]

  def __iter__(self):
    return iter(self._names)

  def __len__(self):
    return len(self._names)


def load_tiny_models(directory, names=None):
  """{name: frozen tiny model}, restored from snapshots in `directory`;
  missing snapshots are built first (slow, once per architecture)."""
  from tfcodec.models import MODELS, create_model
  names = sorted(names or MODELS)
  models = {name: create_model(name, **tiny_config(name)) for name in names}
  paths = {name: os.path.join(directory, f"tiny-{name}-{_fingerprint(m)}.npz")
           for name, m in models.items()}
  missing = [name for name in names if not os.path.exists(paths[name])]
  if missing:
    os.makedirs(directory, exist_ok=True)
    for name, model in build_tiny_models(missing).items():
      save_snapshot(model, paths[name])
  return {name: restore_snapshot(models[name], paths[name]) for name in names}
