"""Shipped weights: where they live, how they are stored, how to load them.

Weights are stored as `.npz` files in float16 (half the size of a float32
checkpoint, and the quality loss is below what Kodak PSNR resolves at two
decimals; the shipped numbers are measured *after* the float16 round trip).
Each file carries its own architecture, quality, metric, N, M and lambda, so
loading needs nothing else. Variables are stored in the model's construction
order with their names and shapes, and loading checks both.
"""

import json
import os

import numpy as np

from tfcodec.models import create_model

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
DEFAULT_MODEL = "mbt2018-mean"


def weights_path(name, quality, metric="mse"):
  return os.path.join(WEIGHTS_DIR, f"{name}-{metric}-q{quality}.npz")


def available_weights():
  """[(name, metric, quality)] of every shipped weight file."""
  found = []
  if os.path.isdir(WEIGHTS_DIR):
    for fname in sorted(os.listdir(WEIGHTS_DIR)):
      if fname.endswith(".npz"):
        meta = read_metadata(os.path.join(WEIGHTS_DIR, fname))
        found.append((meta["model"], meta["metric"], int(meta["quality"])))
  return found


def _variable_key(index, variable):
  return f"{index:04d}:{variable.name}"


def save_weights(model, path, quality, extra=None, dtype=np.float16):
  """Writes every trained variable (not coding tables) plus metadata to `path` (atomically)."""
  meta = dict(model=model.model_name, quality=int(quality), metric=model.metric,
              N=int(model.N), M=int(model.M), lmbda=float(model.lmbda))
  if hasattr(model, "likelihood"):  # context models: gaussian or gmm
    meta["likelihood"] = model.likelihood
  meta.update(extra or {})
  arrays = {_variable_key(i, v): v.numpy().astype(dtype)
            for i, v in enumerate(model.trainable_weights)}
  arrays["__metadata__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
  tmp = path + ".tmp.npz"
  np.savez(tmp, **arrays)
  os.replace(tmp, path)


def read_metadata(path):
  with np.load(path) as data:
    return json.loads(bytes(data["__metadata__"]).decode())


def load_weights(model, path):
  """Assigns the stored variables to `model` (which must match the file)."""
  with np.load(path) as data:
    keys = sorted(k for k in data.files if k != "__metadata__")
    if len(keys) != len(model.trainable_weights):
      raise ValueError(f"{path}: holds {len(keys)} variables, model has "
                       f"{len(model.trainable_weights)}")
    for key, variable in zip(keys, model.trainable_weights):
      value = data[key]
      if tuple(value.shape) != tuple(variable.shape):
        raise ValueError(f"{path}: {key} has shape {value.shape}, model "
                         f"variable {variable.name} has {variable.shape}")
      variable.assign(value.astype(variable.dtype.as_numpy_dtype))


def load_model(name=DEFAULT_MODEL, quality=3, metric="mse", path=None,
               freeze=True):
  """A model with shipped (or given) weights, ready to compress."""
  if path is None:
    path = weights_path(name, quality, metric)
    if not os.path.exists(path):
      shipped = ", ".join(f"{n} {m} q{q}" for n, m, q in available_weights())
      raise FileNotFoundError(
          f"no shipped weights for {name} ({metric}) at quality {quality}; "
          f"shipped: {shipped or 'none'}")
  meta = read_metadata(path)
  extra = {"likelihood": meta["likelihood"]} if "likelihood" in meta else {}
  model = create_model(meta["model"], metric=meta["metric"], N=meta["N"],
                       M=meta["M"], lmbda=meta["lmbda"], **extra)
  load_weights(model, path)
  if freeze:
    model.freeze()
  return model
