"""Shipped weights: where they live, how they are stored, how to load them.

Weights are stored as `.npz` files in float16 (half the size of a float32
checkpoint, and the quality loss is below what Kodak PSNR resolves at two
decimals; the shipped numbers are measured *after* the float16 round trip).
Each file carries its own architecture, quality, metric, N, M and lambda, so
loading needs nothing else. Variables are stored in the model's construction
order with their names and shapes, and loading checks both.

Shipped files also carry the factorized priors' range-coding tables (CDFs,
offsets, quantization offsets), built once here by `store_tables()`.
Building them runs tfc's float tail estimate, whose result depends on the
kernels (measured: TF_ENABLE_ONEDNN_OPTS=0 and =1 give different z CDFs and
quantization offsets for the same weights), so a decoder that rebuilt them
could disagree with the encoder that wrote a file; loaded tables cannot.
"""

import inspect
import json
import os

import numpy as np

from tfcodec.models import MODELS, VARIABLE_RATE, create_model
from tfcodec.models.registry import quality_lambda, variable_rate_group

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
# The best shipped codec (tfcodec/weights/README.md); encoder.py's default.
DEFAULT_MODEL = "mbt2018-mean-vr"


def weights_path(name, quality, metric="mse"):
  """A single-rate model has one file per quality; a variable-rate one has
  one file per network (registry.VARIABLE_RATE): `{name}-{metric}.npz` for
  the narrowest, `{name}-{metric}-N{N}.npz` for a wider one."""
  if name in VARIABLE_RATE:
    try:
      (n, _), _ = variable_rate_group(name, quality)
    except ValueError:  # no network serves it: a name no file has, so
      return os.path.join(  # callers report it as not shipped
          WEIGHTS_DIR, f"{name}-{metric}-q{quality}.npz")
    narrowest = VARIABLE_RATE[name][0][0][0]
    suffix = "" if n == narrowest else f"-N{n}"
    return os.path.join(WEIGHTS_DIR, f"{name}-{metric}{suffix}.npz")
  return os.path.join(WEIGHTS_DIR, f"{name}-{metric}-q{quality}.npz")


def available_weights():
  """[(name, metric, quality)] of every shipped weight file."""
  found = []
  if os.path.isdir(WEIGHTS_DIR):
    for fname in sorted(os.listdir(WEIGHTS_DIR)):
      if fname.endswith(".npz"):
        path = os.path.join(WEIGHTS_DIR, fname)
        meta = read_metadata(path)
        for quality in meta.get("qualities", [meta["quality"]]):
          # A variable-rate file's ladder may hold a rung another file
          # serves (the wide network trains q4 beside q5-q7 but serves
          # q5-q7): list only what weights_path routes to this file.
          if weights_path(meta["model"], int(quality),
                          meta["metric"]) == path:
            found.append((meta["model"], meta["metric"], int(quality)))
  return found


def _variable_key(index, variable):
  return f"{index:04d}:{variable.name}"


_TABLE_PREFIX = "__table__:"


def save_weights(model, path, quality, extra=None, dtype=np.float16,
                 tables=None):
  """Writes every trained variable plus metadata to `path` (atomically);
  `tables` (a frozen model's `coding_tables()`) are stored exactly."""
  meta = dict(model=model.model_name, quality=int(quality), metric=model.metric,
              N=int(model.N), M=int(model.M), lmbda=float(model.lmbda))
  if hasattr(model, "likelihood"):  # context models: gaussian or gmm
    meta["likelihood"] = model.likelihood
  if hasattr(model, "lmbdas"):  # variable rate: the file serves every rung
    meta.update(qualities=list(model.qualities), lmbdas=list(model.lmbdas),
                reference_quality=model.reference_quality)
  meta.update(extra or {})
  arrays = {_variable_key(i, v): v.numpy().astype(dtype)
            for i, v in enumerate(model.trainable_weights)}
  arrays["__metadata__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
  for index, module_tables in (tables or {}).items():
    for key, value in module_tables.items():
      arrays[f"{_TABLE_PREFIX}{index}:{key}"] = np.asarray(value)
  tmp = path + ".tmp.npz"
  np.savez(tmp, **arrays)
  os.replace(tmp, path)


def read_metadata(path):
  with np.load(path) as data:
    return json.loads(bytes(data["__metadata__"]).decode())


def read_tables(path):
  """{entropy module index: {name: array}} stored in `path`, or None."""
  tables = {}
  with np.load(path) as data:
    for key in data.files:
      if key.startswith(_TABLE_PREFIX):
        index, name = key[len(_TABLE_PREFIX):].split(":", 1)
        tables.setdefault(int(index), {})[name] = data[key]
  return tables or None


def store_tables(path):
  """Builds the coding tables of the weights in `path` and adds them to the
  file (done once, when a weight file is shipped)."""
  model = load_model(path=path, freeze=False)
  model.freeze()
  meta = read_metadata(path)
  quality = meta.pop("quality")
  for key in ("model", "metric", "N", "M", "lmbda", "qualities", "lmbdas",
              "reference_quality"):
    meta.pop(key, None)
  with np.load(path) as data:
    dtype = data[next(k for k in data.files if not k.startswith("__"))].dtype
  save_weights(model, path, quality, extra=meta, dtype=dtype,
               tables=model.coding_tables())
  return model


def _ladder_rows(meta, model):
  """For a variable-rate `model` loaded from a file (metadata `meta`) whose
  ladder is another one: a function mapping a stored per-rung array (log
  gains or log inverse gains, [rungs, M]) to the model's ladder, else None.

  Rungs both ladders have are copied; a new rung starts from the stored rung
  nearest in log(lambda), shifted by the model's initial rule (gains go as
  sqrt(lambda)), so a ladder can be extended by fine-tuning. A file of
  another metric (an MSE ladder fine-tuned for MS-SSIM) is matched by quality
  number: its rungs are read as the model metric's lambdas of the same
  qualities, whose scales have nothing in common with the stored ones."""
  stored = meta.get("lmbdas")
  if not hasattr(model, "lmbdas") or stored is None:
    return None
  stored = [float(l) for l in stored]
  if meta.get("metric", model.metric) != model.metric:
    stored = [quality_lambda(model.metric, int(q)) for q in meta["qualities"]]
  if stored == list(model.lmbdas):
    return None

  def remap(rows, inverse):
    out = []
    for lmbda in model.lmbdas:
      nearest = min(range(len(stored)),
                    key=lambda i: abs(np.log(lmbda / stored[i])))
      shift = 0.5 * np.log(lmbda / stored[nearest])
      out.append(rows[nearest] + (-shift if inverse else shift))
    return np.stack(out)
  return remap


def load_weights(model, path):
  """Assigns the stored variables to `model` (which must match the file,
  except that a variable-rate model may have another ladder: see
  `_ladder_rows`)."""
  with np.load(path) as data:
    meta = json.loads(bytes(data["__metadata__"]).decode())
    remap = _ladder_rows(meta, model)
    keys = sorted(k for k in data.files if not k.startswith("__"))
    if len(keys) != len(model.trainable_weights):
      raise ValueError(f"{path}: holds {len(keys)} variables, model has "
                       f"{len(model.trainable_weights)}")
    for key, variable in zip(keys, model.trainable_weights):
      value = data[key]
      if remap is not None and variable is model.log_gains:
        value = remap(value.astype(np.float64), inverse=False)
      elif remap is not None and variable is model.log_inverse_gains:
        value = remap(value.astype(np.float64), inverse=True)
      if tuple(value.shape) != tuple(variable.shape):
        raise ValueError(f"{path}: {key} has shape {value.shape}, model "
                         f"variable {variable.name} has {variable.shape}")
      variable.assign(value.astype(variable.dtype.as_numpy_dtype))


def warm_start(model, path, parts=("g_a", "g_s"), partial=False):
  """Copies the weights of the sub-transforms `parts` (attribute names, e.g.
  the analysis and synthesis transforms) from the model stored in `path`
  into `model`; the rest of `model` keeps its initialisation. Both models
  must have each part with the same variable shapes.

  `partial`: copy, within each part, every variable whose place inside the
  part (its chain of layers) and shape are the same in both models, and keep
  the initialisation of the rest (e.g. cheng2020-attn from the paper's Cheng
  2020, whose g_a has no last bias and whose g_s shortcuts are 1x1). Returns
  the parts, each with "(copied/total)" when partial."""
  source = load_model(path=path, freeze=False)
  copied_parts = []
  for part in parts:
    source_part, target_part = getattr(source, part, None), getattr(
        model, part, None)
    if source_part is None or target_part is None:
      raise ValueError(f"{path}: '{part}' is not a part of both "
                       f"{source.model_name} and {model.model_name}")
    # trainable_variables: parts may be Keras layers or tf.Modules (priors).
    source_weights = source_part.trainable_variables
    target_weights = target_part.trainable_variables
    if partial:
      by_path = {(p, tuple(v.shape)): v for p, v in _paths_in_part(source_part)}
      pairs = [(by_path[key], v) for p, v in _paths_in_part(target_part)
               if (key := (p, tuple(v.shape))) in by_path]
      if not pairs:
        raise ValueError(f"{path}: no variable of '{part}' of "
                         f"{source.model_name} matches {model.model_name}")
      copied_parts.append(f"{part} ({len(pairs)}/{len(target_weights)})")
    else:
      source_shapes = [tuple(v.shape) for v in source_weights]
      target_shapes = [tuple(v.shape) for v in target_weights]
      if source_shapes != target_shapes:
        raise ValueError(f"{path}: '{part}' of {source.model_name} (N="
                         f"{source.N}, M={source.M}) does not match "
                         f"{model.model_name} (N={model.N}, M={model.M})")
      pairs = list(zip(source_weights, target_weights))
      copied_parts.append(part)
    for source_variable, target_variable in pairs:
      target_variable.assign(source_variable)
  return copied_parts


def _paths_in_part(part):
  """[(path, variable)] of a part's trainable variables, each path the chain
  of attributes and list indices that reaches it from the part (Keras names
  are not unique: several sub-layers name their variables 'conv/kernel:0').

  Inside a Sequential the chain goes through each layer's name rather than
  its index, so a model that leaves out a layer (cheng2020-anchor: the
  attention modules of cheng2020-attn) still matches the layers after it."""
  import tensorflow as tf
  found, seen = [], set()

  def visit(prefix, module):
    if isinstance(module, tf.keras.Sequential):
      for layer in module.layers:
        visit(prefix + (layer.name,), layer)
      return
    for path, variable in module._flatten(  # pylint: disable=protected-access
        predicate=lambda v: isinstance(v, tf.Variable) and v.trainable,
        with_path=True):
      if variable.ref() not in seen:
        seen.add(variable.ref())
        found.append((prefix + tuple(path), variable))

  visit((), part)
  return found


def load_model(name=DEFAULT_MODEL, quality=3, metric="mse", path=None,
               freeze=True, exact_transforms=True):
  """A model with shipped (or given) weights, ready to compress.

  `exact_transforms`: see CompressionModel.freeze."""
  path_given = path is not None
  if path is None:
    path = weights_path(name, quality, metric)
    if not os.path.exists(path):
      shipped = ", ".join(f"{n} {m} q{q}" for n, m, q in available_weights())
      raise FileNotFoundError(
          f"no shipped weights for {name} ({metric}) at quality {quality}; "
          f"shipped: {shipped or 'none'}")
  meta = read_metadata(path)
  # Context models record their likelihood; only some constructors take it
  # (Informer is Gaussian only).
  takes_likelihood = "likelihood" in inspect.signature(
      MODELS[meta["model"]].__init__).parameters
  extra = ({"likelihood": meta["likelihood"]}
           if "likelihood" in meta and takes_likelihood else {})
  if "lmbdas" in meta:
    extra.update(lmbdas=meta["lmbdas"],
                 reference_quality=meta["reference_quality"])
  model = create_model(meta["model"], metric=meta["metric"], N=meta["N"],
                       M=meta["M"], lmbda=meta["lmbda"], **extra)
  load_weights(model, path)
  if hasattr(model, "set_quality"):
    # One file, every rung: the caller's quality picks the gains (a file
    # given by path opens at the quality it was saved at).
    model.set_quality(meta["quality"] if path_given else quality)
  if freeze:
    model.freeze(read_tables(path), exact_transforms=exact_transforms)
  return model


def graft_rungs(base_path, donor_path, qualities, out_path):
  """A variable-rate file: `base_path`'s network on `donor_path`'s ladder,
  with the gain and inverse-gain vectors of `qualities` taken from the donor
  (every other weight, so every other rung, stays the base's). How the
  flagship's q0 shipped: its run trained the whole network on the q0-q4
  ladder, did not improve q1-q4, and only rung 0's gains were kept.
  Writes float16 weights with the base's provenance plus the donor's under
  `grafted`; run store_tables on the result before shipping it."""
  donor = load_model(path=donor_path, freeze=False)
  base_meta, donor_meta = read_metadata(base_path), read_metadata(donor_path)
  model = create_model(base_meta["model"], metric=base_meta["metric"],
                       N=base_meta["N"], M=base_meta["M"],
                       lmbdas=donor.lmbdas,
                       reference_quality=donor.reference_quality)
  load_weights(model, base_path)  # new rungs start as _ladder_rows says
  gains, inverse = model.log_gains.numpy(), model.log_inverse_gains.numpy()
  for quality in qualities:
    row = donor.qualities.index(int(quality))
    gains[row] = donor.log_gains.numpy()[row]
    inverse[row] = donor.log_inverse_gains.numpy()[row]
  model.log_gains.assign(gains)
  model.log_inverse_gains.assign(inverse)
  extra = {k: base_meta[k] for k in ("flags", "command", "run")
           if k in base_meta}
  extra["grafted"] = dict(qualities=[int(q) for q in qualities],
                          **{k: donor_meta[k] for k in ("flags", "command",
                                                        "run")
                             if k in donor_meta})
  save_weights(model, out_path, base_meta["quality"], extra=extra)
