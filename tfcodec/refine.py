"""Encoder-side latent refinement: spend encode time, not training, on RD.

Campos, Meierhans, Djelouah, Schroers: "Content adaptive optimization for
neural image compression", CVPRW 2019; Yang, Bamler, Mandt: "Improving
inference for neural image compression", NeurIPS 2020.

An amortized encoder (g_a, h_a) gives latents that are good on average, not
the best ones for this image under this decoder. Refinement starts from them
and takes Adam steps on the latents themselves to lower this image's
rate + lambda * distortion, with the decoder side (h_s, the priors, g_s)
fixed:

  y, z = g_a(x), h_a(y)                        (the model's latents)
  repeat `steps` times:
    relaxed loss: bits of z + u_z and y + u_y under the priors (u uniform in
    [-1/2, 1/2), drawn from a per-step seed), distortion of
    g_s(round(y - mu) + mu) (straight-through), as mixed-quantization
    training sees it
    Adam step on (y, z)
  keep (y, z) or the refined ones, whichever has the lower loss with hard
  rounding (the bits the coder will spend, the pixels the decoder will make)

Nothing changes for the decoder: the refined latents are coded by the same
exact entropy path, so files decode anywhere, bit for bit. What is given up
is speed (each step is a forward and backward pass of g_s and h_s, in
float32) and byte-reproducibility across machines (the float32 gradient
sums, like `--noexact_transforms`).

A model opts in with `supports_refinement = True` and four hooks:
`initial_latents(x)`, `latent_rd_terms(x, latents, noise, valid_shape)`,
`coding_lambda()` and `code_latents(latents)`; MeanScaleHyperpriorModel
(and so the variable-rate model) provides them.
"""

import tensorflow as tf

# Adam's step size on the latents (in quantization bins), decayed linearly
# to a tenth over the steps. Chosen on 256x256 crops of kodim04 and kodim13
# with the shipped mbt2018-mean-vr at q1, q3 and q4: 0.003 lowered the hard
# RD loss by 1.6-2.3% in 30 steps and 2.1-2.7% in 60; 0.01 and 0.03
# overshot (30 steps at 0.03 ended above the start). Rounding with a
# straight-through gradient in the rate as well (instead of noise) stalled
# at -1.8%.
LEARNING_RATE = 0.003
_BETA_1, _BETA_2, _EPSILON = 0.9, 0.999, 1e-8


def uniform_noise(latents, step, seed=0):
  """{name: U[-1/2, 1/2) noise shaped like each latent}, a function of the
  step only, so an image's file does not depend on what was coded before."""
  noise = {}
  for index, name in enumerate(sorted(latents)):
    noise[name] = tf.random.stateless_uniform(
        tf.shape(latents[name]), seed=tf.stack([seed + index, step]),
        minval=-.5, maxval=.5)
  return noise


def rd_loss(model, x, latents, noise, valid_shape):
  """bits per valid pixel + lambda * distortion (a scalar float32)."""
  bits, distortion = model.latent_rd_terms(x, latents, noise, valid_shape)
  pixels = tf.cast(valid_shape[0] * valid_shape[1], tf.float32)
  return bits / pixels + model.coding_lambda() * distortion


def refine_latents(model, x, latents, steps, valid_shape, learning_rate=None):
  """Returns (latents, diagnostics): the lower-loss of the initial and the
  refined latents, and a dict of float32 scalars (`initial_loss`,
  `refined_loss`, both with hard rounding, and `kept_refined`, 0 or 1).

  x: the padded float image [1, H, W, 3]; valid_shape: the image's own
  (height, width), so padding costs no distortion; steps: int32 scalar.
  """
  if learning_rate is None:
    learning_rate = LEARNING_RATE
  names = sorted(latents)
  start = [tf.convert_to_tensor(latents[n], tf.float32) for n in names]
  steps = tf.convert_to_tensor(steps, tf.int32)
  total = tf.cast(tf.maximum(steps, 1), tf.float32)

  def loss(values, noise_step=None):
    current = dict(zip(names, values))
    noise = None if noise_step is None else uniform_noise(current, noise_step)
    return rd_loss(model, x, current, noise, valid_shape)

  def body(step, values, first, second):
    with tf.GradientTape() as tape:
      tape.watch(values)
      relaxed = loss(values, noise_step=step)
    grads = tape.gradient(relaxed, values)
    t = tf.cast(step + 1, tf.float32)
    rate = learning_rate * (1. - 0.9 * tf.cast(step, tf.float32) / total)
    rate *= tf.sqrt(1. - _BETA_2 ** t) / (1. - _BETA_1 ** t)
    first = [_BETA_1 * m + (1. - _BETA_1) * g for m, g in zip(first, grads)]
    second = [_BETA_2 * v + (1. - _BETA_2) * tf.square(g)
              for v, g in zip(second, grads)]
    values = [value - rate * m / (tf.sqrt(v) + _EPSILON)
              for value, m, v in zip(values, first, second)]
    return step + 1, values, first, second

  zeros = [tf.zeros_like(v) for v in start]
  _, refined, _, _ = tf.while_loop(
      lambda step, *_: step < steps, body,
      (tf.constant(0), start, zeros, list(zeros)))
  initial_loss, refined_loss = loss(start), loss(refined)
  keep = refined_loss < initial_loss
  chosen = [tf.where(keep, r, s) for r, s in zip(refined, start)]
  return dict(zip(names, chosen)), dict(
      initial_loss=initial_loss, refined_loss=refined_loss,
      kept_refined=tf.cast(keep, tf.float32))
