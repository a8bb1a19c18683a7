"""Minnen, Ballé, Toderici: "Joint autoregressive and hierarchical priors for
learned image compression", NeurIPS 2018. https://arxiv.org/abs/1809.02736

mbt2018-mean (the mean-scale hyperprior, without the context model):

  x -> g_a -> y -> h_a -> z          (h_a sees y itself, not |y|)
                    Q, factorized prior (z)
  z_hat -> h_s -> [scale indexes | means]      (2M channels, split in half)
  y: Q around the mean, Gaussian conditional (mean-scale)
  y_hat -> g_s -> x_hat

g_a / g_s are Ballé 2018's; h_a / h_s use LeakyReLU (slope 0.01, as in
CompressAI) and h_s widens M -> 3M/2 -> 2M.

mbt2018 (the joint autoregressive and hierarchical model, ARCHITECTURES.md 4):

  x -> g_a -> y -> h_a -> z, Q, factorized prior (z)
  z_hat -> h_s -> psi (2M channels, not split)
  y_hat -> masked 5x5 conv (type A, M -> 2M) -> ctx
  concat(psi, ctx) (4M) -> 1x1: 10M/3 -> 8M/3 -> 2M = [scale indexes | means]
  y: Gaussian conditional (mean-scale); y_hat -> g_s -> x_hat

`JointContextModel` holds what every context model shares (the forward pass
with noisy y for the context in training, and wavefront coding, see
tfcodec.entropy.context); Cheng 2020 (cheng2020.py) subclasses it.
"""

import functools

import tensorflow as tf

from tfcodec.entropy import (
    FactorizedPrior, GaussianConditional, NUM_SCALES, coding_scale_indexes,
    scale_from_index)
from tfcodec.entropy.context import (
    GaussianStepCoder, LIKELIHOOD_BOUND, NETWORK_DTYPE, WavefrontSchedule,
    gaussian_likelihood, lower_bound, run_wavefront)
from tfcodec.entropy.mixture import MixtureStepCoder, mixture_likelihood
from tfcodec.layers import conv, deconv, digits
from tfcodec.layers.masked import MaskedConv2D
from tfcodec.models.base import CompressionModel
from tfcodec.models.bmshj2018 import AnalysisTransform, SynthesisTransform
from tfcodec.models.registry import register_model

leaky_relu = functools.partial(tf.nn.leaky_relu, alpha=0.01)


class MeanScaleHyperAnalysis(tf.keras.Sequential):
  """h_a: y -> z (N channels, 1/64 resolution)."""

  def __init__(self, N, name="hyper_analysis"):
    super().__init__(name=name)
    self.add(conv(N, 3, 1, activation=leaky_relu, name="conv_0", dtype="float32"))
    self.add(conv(N, 5, 2, activation=leaky_relu, name="conv_1", dtype="float32"))
    self.add(conv(N, 5, 2, name="conv_2", dtype="float32"))


class MeanScaleHyperSynthesis(tf.keras.Sequential):
  """h_s: z_hat -> 2M channels: M scale indexes, then M means."""

  def __init__(self, N, M, name="hyper_synthesis"):
    super().__init__(name=name)
    self.add(deconv(M, 5, 2, activation=leaky_relu, name="deconv_0", dtype="float32"))
    self.add(deconv(M * 3 // 2, 5, 2, activation=leaky_relu, name="deconv_1",
                    dtype="float32"))
    self.add(conv(M * 2, 3, 1, name="conv_2", dtype="float32"))


@register_model("mbt2018-mean")
class MeanScaleHyperpriorModel(CompressionModel):
  """Mean-scale hyperprior (Minnen 2018 without context). Args: N, M."""

  stride = 64
  string_names = ("y", "z")
  shape_names = ("y", "z")

  def __init__(self, N=128, M=192, gdn_form="simplified",
               synthesis_quantization="noise", **kwargs):
    super().__init__(**kwargs)
    if synthesis_quantization not in ("noise", "ste"):
      raise ValueError("synthesis_quantization must be 'noise' or 'ste', got "
                       f"{synthesis_quantization!r}")
    self.N, self.M = N, M
    # What g_s sees in training: y plus uniform noise (Balle/Minnen, as
    # CompressAI trains), or "ste", y rounded around its mean with a
    # straight-through gradient (Minnen & Singh 2020's mixed quantization;
    # the rate term keeps the noise). Decoding always rounds, so "ste"
    # removes the train/test mismatch of the synthesis transform.
    self.synthesis_quantization = synthesis_quantization
    self.g_a = AnalysisTransform(N, M, gdn_form)
    self.g_s = SynthesisTransform(N, gdn_form)
    self.h_a = MeanScaleHyperAnalysis(N)
    self.h_s = MeanScaleHyperSynthesis(N, M)
    self.z_prior = FactorizedPrior(N, name="z_prior")
    self.y_conditional = GaussianConditional(name="y_conditional")
    self.build_variables()

  def entropy_parameters(self, z_hat, y_shape=None, training=None):
    params = self.h_s(z_hat, training=training)
    if y_shape is not None:
      params = params[:, :y_shape[0], :y_shape[1], :]
    scale_indexes, means = tf.split(params, 2, axis=-1)
    return scale_indexes, means

  def call(self, x, training=False):
    y = self.g_a(x)
    z = self.h_a(y)
    z_hat, z_bits = self.z_prior(z, training=training)
    scale_indexes, means = self.entropy_parameters(z_hat)
    y_hat, y_bits = self.y_conditional(y, scale_indexes, means,
                                       training=training)
    x_hat = self.g_s(self.synthesis_input(y, y_hat, means, training))
    return dict(x_hat=x_hat, bits=dict(y=y_bits, z=z_bits))

  def synthesis_input(self, y, y_hat, means, training):
    """The y that g_s sees: see `synthesis_quantization`."""
    if not training or self.synthesis_quantization == "noise":
      return y_hat
    # The coder's rounding around the mean, straight-through (as TCM's slices).
    return self.y_conditional.quantize(y, means)

  def entropy_modules(self):
    return [self.z_prior, self.y_conditional]

  # Coding hooks: the variable-rate model (gained.py) scales y in them.
  def analysis(self, x):
    """x -> the y that is coded."""
    return self.g_a(x)

  def synthesis(self, y_hat, training=False):
    """Decoded y -> reconstruction (`training=True`: the float32 path,
    differentiable, for tfcodec.refine)."""
    return self.g_s(y_hat, training=training)

  def compress_latents(self, x):
    return self.code_latents(self.initial_latents(x))

  def initial_latents(self, x):
    y = self.analysis(x)
    return dict(y=y, z=self.h_a(y))

  def code_latents(self, latents):
    y, z = latents["y"], latents["z"]
    y_shape, z_shape = tf.shape(y)[1:3], tf.shape(z)[1:3]
    z_string, z_hat = self.z_prior.compress_with_reconstruction(z)
    scale_indexes, means = self.entropy_parameters(z_hat, y_shape)
    y_string = self.y_conditional.compress(y, scale_indexes, means)
    return (y_string[0], z_string[0]), (y_shape, z_shape)

  # -- encoder-side latent refinement (tfcodec/refine.py) -----------------
  supports_refinement = True

  def coding_lambda(self):
    """The lambda of the quality being coded (float32 scalar)."""
    return tf.constant(self.lmbda, tf.float32)

  def latent_rd_terms(self, x, latents, noise, valid_shape):
    """(bits, MSE on the 0-255 scale) of coding `latents` for the padded
    image x, counting distortion only inside `valid_shape`. noise=None:
    hard rounding, as the coder does; else {"y", "z": uniform noise} for
    the rate (training's relaxation). g_s always sees y rounded around its
    mean, straight-through. Float32 networks throughout (differentiable)."""
    if self.metric != "mse":
      raise ValueError("latent refinement optimises MSE; "
                       f"this model was trained for {self.metric}")
    y, z = latents["y"], latents["z"]
    y_shape = tf.shape(y)[1:3]
    if noise is None:
      z_hat = self.z_prior.round_for_coding(z)
    else:
      z_hat = z + noise["z"]
    z_bits = self.z_prior.bits(z_hat)
    scale_indexes, means = self.entropy_parameters(z_hat, y_shape,
                                                   training=True)
    y_rounded = self.y_conditional.quantize(y, means)
    if noise is None:
      # The coder's table entry, straight-through.
      scale_indexes += tf.stop_gradient(
          coding_scale_indexes(scale_indexes) - scale_indexes)
      y_bits = self.y_conditional.bits(y_rounded, scale_indexes, means)
    else:
      y_bits = self.y_conditional.bits(y + noise["y"], scale_indexes, means)
    x_hat = self.synthesis(y_rounded, training=True)
    height, width = valid_shape[0], valid_shape[1]
    error = tf.math.squared_difference(
        x[:, :height, :width, :], tf.cast(x_hat, tf.float32)[:, :height, :width, :])
    return z_bits + y_bits, tf.reduce_mean(error) * 255. ** 2

  def decompress_latents(self, strings, latent_shapes):
    y_string, z_string = strings
    y_shape, z_shape = latent_shapes
    z_hat = self.z_prior.decompress(z_string[None], z_shape)
    scale_indexes, means = self.entropy_parameters(z_hat, y_shape)
    y_hat = self.y_conditional.decompress(y_string[None], scale_indexes, means)
    return self.synthesis(y_hat)


# -- mbt2018: the joint autoregressive and hierarchical model ------------------

class EntropyParameters(tf.keras.Sequential):
  """1x1 convolutions: concat(psi, context) -> raw entropy parameters.

  `coding_layers()` gives the same network as matrices for the
  wavefront coder, which applies it to a few positions at a time.
  """

  def __init__(self, hidden, out_channels, activation=leaky_relu,
               final_bias=True, name="entropy_parameters"):
    super().__init__(name=name)
    for i, width in enumerate(hidden):
      self.add(conv(width, 1, activation=activation, name=f"conv_{i}",
                    dtype="float32"))
    self.add(conv(out_channels, 1, use_bias=final_bias,
                  name=f"conv_{len(hidden)}", dtype="float32"))

  def coding_layers(self):
    """The network as `DigitRowDense` matrices for the wavefront coder: each
    position's parameters come out the same whichever positions share its
    step (tfcodec.layers.digits)."""
    return [digits.DigitRowDense(layer.kernel[0, 0],
                                 layer.bias if layer.use_bias else None,
                                 layer.activation)
            for layer in self.layers]


def apply_coding_layers(layers, inputs):
  for layer in layers:
    inputs = layer(inputs)
  return inputs


class JointContextModel(CompressionModel):
  """Hyperprior + 5x5 masked context model, decoded by wavefronts.

  Subclasses set the transforms (g_a, g_s, h_a, h_s; h_s emits psi with 2M
  channels) and call `_build_entropy(...)`. `likelihood` is "gaussian"
  (mean-scale, 2M raw parameters: scale indexes then means) or "gmm"
  (K = 3 discretized Gaussian mixture, 9M raw parameters). The hyperprior
  sits behind four hooks (`side_information`, `parameter_inputs`,
  `encode_side`/`decode_side`, `coding_side`), which Informer replaces.

  Training: the context model sees y + U(-1/2, 1/2), the same noisy sample the
  rate is measured on and g_s reconstructs. Evaluation forward: the context
  sees round(y); with the Gaussian, y_hat = round(y - mu) + mu (an estimate:
  coding uses the y_hat of the decoded neighbours, see tfcodec.entropy.context).
  """

  stride = 64
  string_names = ("y", "z")
  shape_names = ("y", "z")

  def _build_entropy(self, M, z_channels, hidden, likelihood="gaussian",
                     activation=leaky_relu, final_bias=True,
                     z_prior_init_scale=10.):
    if likelihood not in ("gaussian", "gmm"):
      raise ValueError(f"likelihood must be 'gaussian' or 'gmm', got "
                       f"{likelihood!r}")
    self.likelihood = likelihood
    out_channels = 2 * M if likelihood == "gaussian" else 9 * M
    self.context = MaskedConv2D(2 * M, 5, name="context")
    self.entropy_parameters = EntropyParameters(
        hidden, out_channels, activation=activation, final_bias=final_bias)
    if z_channels is not None:  # None: the subclass brings its own priors
      self.z_prior = FactorizedPrior(z_channels, init_scale=z_prior_init_scale,
                                     name="z_prior")
    if likelihood == "gaussian":
      self.y_conditional = GaussianConditional(name="y_conditional")
      self._step_coder = GaussianStepCoder(self.y_conditional)
    else:
      self._step_coder = MixtureStepCoder(M)

  def entropy_modules(self):
    modules = [self.z_prior]
    if self.likelihood == "gaussian":
      modules.append(self.y_conditional)
    return modules

  # -- forward (training and evaluation) ---------------------------------
  def call(self, x, training=False):
    y = tf.cast(self.g_a(x), tf.float32)
    side, side_bits = self.side_information(y, training)
    if training:
      y_tilde = y + tf.random.uniform(tf.shape(y), -.5, .5)
    else:
      y_tilde = tf.round(y)
    y_hat, y_bits = self._y_rate(y, y_tilde, side, training)
    x_hat = self.g_s(y_hat)
    return dict(x_hat=x_hat, bits=dict(y=y_bits, **side_bits))

  def _y_rate(self, y, y_context, side, training):
    """-> (y_hat, bits of y per image) with `y_context` fed to the context
    model: round(y) or noisy y in `call`, the coder's y_hat in `coded_bits`."""
    raw = self.entropy_parameters(
        self.parameter_inputs(side, self.context(y_context)))
    y_hat, likelihood = self._y_likelihood(y, y_context, raw, training)
    y_bits = tf.reduce_sum(-tf.math.log(likelihood), axis=(1, 2, 3))
    return y_hat, y_bits / tf.math.log(2.)

  # -- the hyperprior: the part Informer (informer2022.py) replaces ---------
  def side_information(self, y, training):
    """Training/evaluation forward of the hyperprior.

    -> (side: what `parameter_inputs` needs, {latent name: bits per image}).
    """
    z = self.h_a(y)
    z_hat, z_bits = self.z_prior(z, training=training)
    return tf.cast(self.h_s(z_hat), tf.float32), dict(z=z_bits)

  def parameter_inputs(self, psi, context):
    """Input of the entropy-parameter network at every position (training)."""
    return tf.concat([psi, context], axis=-1)

  def encode_side(self, y):
    """-> (side strings, side latent shapes, decoded side for `coding_side`)."""
    z = self.h_a(y)
    z_string, z_hat = self.z_prior.compress_with_reconstruction(z)
    return [z_string[0]], [tf.shape(z)[1:3]], z_hat

  def decode_side(self, strings, shapes):
    (z_string,), (z_shape,) = strings, shapes
    return self.z_prior.decompress(z_string[None], z_shape)

  def coding_side(self, z_hat, y_shape):
    """-> f(positions, context [P, 2M] NETWORK_DTYPE) -> the entropy-parameter
    inputs [P, 4M] of those positions, for the wavefront loop; whatever the
    function needs from the side information is computed here, once."""
    psi = self.h_s(z_hat)[0, :y_shape[0], :y_shape[1], :]
    psi = tf.reshape(tf.cast(psi, NETWORK_DTYPE), (-1, 2 * self.M))

    def inputs(positions, context):
      return tf.concat([tf.gather(psi, positions), context], axis=-1)
    return inputs

  def _y_likelihood(self, y, y_tilde, raw, training):
    raw = tf.cast(raw, tf.float32)
    if self.likelihood == "gmm":
      return y_tilde, mixture_likelihood(y_tilde, raw, self.M)
    scale_indexes, means = tf.split(raw, 2, axis=-1)
    top = NUM_SCALES - 1.
    if training:
      scale_indexes = -lower_bound(-lower_bound(scale_indexes, 0.), -top)
      y_hat = y_tilde
    else:
      # The table entry the coder uses, so the estimate tracks the file.
      scale_indexes = coding_scale_indexes(scale_indexes)
      y_hat = tf.round(y - means) + means
    likelihood = gaussian_likelihood(y_hat, means,
                                     scale_from_index(scale_indexes))
    return y_hat, lower_bound(likelihood, LIKELIHOOD_BOUND)

  # -- coding --------------------------------------------------------------
  def _wavefront(self, side, y_shape, code_step, state):
    """Runs the shared encoder/decoder loop; returns (y_hat, coder state)."""
    schedule = WavefrontSchedule(y_shape[0], y_shape[1])
    parameter_inputs = self.coding_side(side, y_shape)
    context = digits.DigitRowDense(self.context.causal_kernel(),
                                   self.context.bias)
    layers = self.entropy_parameters.coding_layers()

    def step_parameters(positions, neighbours):
      return apply_coding_layers(
          layers, parameter_inputs(positions, context(neighbours)))

    return run_wavefront(schedule, self.M, step_parameters, code_step, state)

  def encode_latents(self, x):
    """-> (strings, shapes, y_hat): y_hat is exactly what the decoder gets."""
    y = tf.cast(self.g_a(x), tf.float32)
    y_shape = tf.shape(y)[1:3]
    side_strings, side_shapes, side = self.encode_side(y)
    y_flat = tf.reshape(y[0], (-1, self.M))
    coder = self._step_coder

    def code_step(state, positions, raw):
      return coder.encode_step(state, raw, tf.gather(y_flat, positions))

    y_hat, state = self._wavefront(side, y_shape, code_step,
                                   coder.encoder_state())
    y_string = coder.encoder_finish(state)
    return (y_string, *side_strings), (y_shape, *side_shapes), y_hat

  def compress_latents(self, x):
    strings, shapes, _ = self.encode_latents(x)
    return strings, shapes

  def coded_bits(self, x):
    """Estimated bits per latent of what the coder codes for x [1, H, W, 3]
    (padded): the forward pass with the coder's own y_hat in the context.

    The plain forward pass feeds round(y) to the context, while the coder
    feeds the decoded round(y - mu) + mu; for mbt2018 the two estimates
    differ by ~1%, for the bundled Informer q3 by 8% (kodim23).
    """
    # One traced function per model: the wavefront loop is slow to trace.
    if getattr(self, "_encode_latents_fn", None) is None:
      self._encode_latents_fn = tf.function(self.encode_latents)
    _, _, coded_y_hat = self._encode_latents_fn(x)
    y = tf.cast(self.g_a(x), tf.float32)
    side, side_bits = self.side_information(y, False)
    _, y_bits = self._y_rate(y, coded_y_hat, side, False)
    return dict(y=y_bits, **side_bits)

  def decode_latents(self, strings, latent_shapes):
    y_string, y_shape = strings[0], latent_shapes[0]
    side = self.decode_side(list(strings[1:]), list(latent_shapes[1:]))
    coder = self._step_coder
    schedule = WavefrontSchedule(y_shape[0], y_shape[1])

    def code_step(state, positions, raw):
      del positions
      return coder.decode_step(state, raw)

    y_hat, state = self._wavefront(
        side, y_shape, code_step, coder.decoder_state(y_string, schedule, self.M))
    coder.decoder_finish(state)
    return y_hat

  def decompress_latents(self, strings, latent_shapes):
    return self.g_s(self.decode_latents(strings, latent_shapes))


@register_model("mbt2018")
class JointAutoregressiveHierarchicalModel(JointContextModel):
  """Minnen 2018 with its context model. Args: N, M, likelihood."""

  def __init__(self, N=192, M=192, gdn_form="simplified", likelihood="gaussian",
               **kwargs):
    super().__init__(**kwargs)
    self.N, self.M = N, M
    self.g_a = AnalysisTransform(N, M, gdn_form)
    self.g_s = SynthesisTransform(N, gdn_form)
    self.h_a = MeanScaleHyperAnalysis(N)
    self.h_s = MeanScaleHyperSynthesis(N, M)  # psi: 2M channels, not split
    self._build_entropy(M, N, hidden=(M * 10 // 3, M * 8 // 3),
                        likelihood=likelihood)
    self.build_variables()
