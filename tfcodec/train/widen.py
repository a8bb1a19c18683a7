"""Start a wider mean-scale hyperprior from a trained narrower one.

Why: CompressAI's mbt2018-mean switches from N=128/M=192 to N=192/M=320 for
its high rates, and here a network of the wide size trained from scratch would
spend ~12 CPU-hours (the narrow q3 took 11.55) before it is back where the
narrow file already is. Instead the wide network starts computing exactly
what the narrow one does (Chen, Goodfellow, Shlens, "Net2Net", ICLR 2016,
"wider" with zero-initialised new units), and training only has to put the
new channels to use.

How, for `mbt2018-mean` and `mbt2018-mean-vr` (N -> N' >= N, M -> M' >= M):

  conv / deconv   the trained kernel fills the leading [in, out] block; the
                  new output channels get zero kernels and biases, so they
                  carry 0; the new input channels keep their fresh (random)
                  init, which reads those zeros and gives the new channels a
                  gradient as soon as training starts
  GDN             leading block copied, fresh init elsewhere: GDN maps 0 to 0
                  and an old channel's norm only adds terms of the new
                  (zero) channels
  h_s's last conv its 2M outputs are [scale indexes | means]: the old ones
                  move to the same places of the wider split; a new y
                  channel's scale index is 0 (the table's smallest scale,
                  0.11), at which its 0 costs ~0 bits, and its mean 0
  z prior         old channels copied; new ones start narrow
                  (`z_prior_init_scale`) with their median near 0, so
                  their zeros cost ~0 bits
  gains (-vr)     rungs mapped as zoo.load_weights does (a new rung starts
                  from the nearest stored one); new channels' gains are 1

So in evaluation the wide model reconstructs the same image at the same
bits (tests/test_widen.py measures both).
"""

import numpy as np
import tensorflow as tf

from tfcodec import zoo
from tfcodec.entropy import FactorizedPrior

WIDENABLE = ("mbt2018-mean", "mbt2018-mean-vr")


def _is_conv(layer):
  return isinstance(layer, tf.keras.layers.Conv2D)


def _out_axis(layer):
  # Keras stores a transposed convolution's kernel as [kh, kw, out, in].
  return 2 if isinstance(layer, tf.keras.layers.Conv2DTranspose) else 3


def _widen_conv(source, target, out_index=None):
  """Copies `source` into `target`; `out_index[j]` is where old output j
  goes (default: j). New outputs get zero kernels and biases."""
  out_axis = _out_axis(target)
  in_axis = 5 - out_axis
  old = source.kernel.numpy()
  new = target.kernel.numpy()
  old_out = old.shape[out_axis]
  if out_index is None:
    out_index = np.arange(old_out)
  fresh = np.ones(new.shape[out_axis], bool)
  fresh[out_index] = False
  index = [slice(None)] * 4
  index[out_axis] = fresh
  new[tuple(index)] = 0.
  index[out_axis] = out_index
  index[in_axis] = slice(0, old.shape[in_axis])
  new[tuple(index)] = old
  target.kernel.assign(new)
  if target.use_bias:
    bias = np.zeros(target.bias.shape, np.float32)
    bias[out_index] = source.bias.numpy()
    target.bias.assign(bias)


def _copy_leading(source_variable, target_variable):
  old = source_variable.numpy()
  new = target_variable.numpy()
  new[tuple(slice(0, n) for n in old.shape)] = old
  target_variable.assign(new)


def widen(model, path, z_prior_init_scale=0.1):
  """Initialises `model` (mbt2018-mean[-vr], unfrozen, N' >= N, M' >= M)
  from the narrower trained weights in `path`."""
  source = zoo.load_model(path=path, freeze=False)
  if model.model_name not in WIDENABLE or source.model_name != model.model_name:
    raise ValueError(f"{path}: widening is for {', '.join(WIDENABLE)} into "
                     f"the same architecture; got {source.model_name} into "
                     f"{model.model_name}")
  if model.N < source.N or model.M < source.M:
    raise ValueError(f"{path}: N={source.N}, M={source.M} cannot widen to "
                     f"N={model.N}, M={model.M}")
  for part in ("g_a", "g_s", "h_a", "h_s"):
    source_layers = getattr(source, part).layers
    target_layers = getattr(model, part).layers
    for i, (old, new) in enumerate(zip(source_layers, target_layers)):
      if not _is_conv(new):
        for a, b in zip(old.trainable_variables, new.trainable_variables):
          _copy_leading(a, b)
        continue
      out_index = None
      if part == "h_s" and i == len(target_layers) - 1:
        # [scale indexes (M) | means (M)] -> the same halves of 2M'.
        out_index = np.concatenate([np.arange(source.M),
                                    model.M + np.arange(source.M)])
      _widen_conv(old, new, out_index)

  new_z = model.N - source.N
  narrow = (FactorizedPrior(new_z, init_scale=z_prior_init_scale)
            if new_z else None)
  for i, (old, new) in enumerate(zip(source.z_prior.trainable_variables,
                                     model.z_prior.trainable_variables)):
    value = new.numpy()
    value[:source.N] = old.numpy()
    if narrow is not None:
      fresh = narrow.trainable_variables[i]
      # tfc draws each density's biases from U(-1/2, 1/2), which moves a
      # narrow density's median off 0 and a zero into its tail (measured:
      # 0.58 bits per zero at width 0.1). Shrunk 50-fold the median stays
      # within ~0.01 of 0. Not exactly 0: tfc's tail search never counts a
      # channel whose first guess is perfect, and beside channels that are
      # not it loops forever (measured: a hang in the first evaluation).
      value[source.N:] = (fresh.numpy() / 50.
                          if "bias" in fresh.name.split("/")[-1]
                          else fresh.numpy())
    new.assign(value)

  if hasattr(model, "log_gains"):
    remap = zoo._ladder_rows(zoo.read_metadata(path), model)
    for old, new, inverse in ((source.log_gains, model.log_gains, False),
                              (source.log_inverse_gains,
                               model.log_inverse_gains, True)):
      rows = old.numpy().astype(np.float64)
      if remap is not None:
        rows = remap(rows, inverse=inverse)
      value = np.zeros(new.shape, np.float64)
      value[:, :source.M] = rows
      new.assign(value.astype(np.float32))
  return model
