"""The contract every tfcodec model follows.

  forward   `model(x, training)` -> {"x_hat": ..., "bits": {"y": ..., "z": ...}}
            x is a float batch in [0, 1], NHWC, H and W multiples of `stride`.
  compress  `model.compress(image)` for one uint8 HxWx3 image of any size ->
            (strings, latent_shapes): one scalar string per entropy-coded
            latent (named by `string_names`) and one int32 [h, w] per latent
            (named by `shape_names`).
  decompress `model.decompress(strings, latent_shapes, image_shape)` -> uint8
            HxWx3 image, cropped to `image_shape`.

Padding lives here, not in callers: the image is edge-padded to a multiple of
`stride` before analysis and the reconstruction is cropped after synthesis.
The rate-distortion loss, `train_step` and `test_step` are shared too.
"""

import zlib

import numpy as np
import tensorflow as tf


def image_to_unit(image):
  """uint8 pixels -> float32 in [0, 1], the same bits traced or eager.

  A lookup, not `x / 255.`: inside a tf.function that division came out
  differently in the last bit (378 of 768 test values), so the encoder's
  input differed from an eager forward pass's; with TCM's random tiny
  weights, which amplify ~1e6-fold, that moved roundings in later slices.
  The table holds the correctly rounded quotients, as eager division and
  numpy give them.
  """
  table = tf.constant(np.arange(256, dtype=np.float32) / np.float32(255.))
  return tf.gather(table, tf.cast(image, tf.int32))


def pad_to_multiple(x, multiple):
  """Edge-pads a NHWC batch (bottom/right) so H and W are multiples.

  Replicating the border (rather than zeros) costs almost no bits, and works
  for images of any size, down to 1x1, where reflection would not.
  """
  shape = tf.shape(x)
  height, width = shape[1], shape[2]
  padded_h = (height + multiple - 1) // multiple * multiple
  padded_w = (width + multiple - 1) // multiple * multiple
  rows = tf.minimum(tf.range(padded_h), height - 1)
  cols = tf.minimum(tf.range(padded_w), width - 1)
  return tf.gather(tf.gather(x, rows, axis=1), cols, axis=2)


def latent_shape(factor, padded_height, padded_width):
  """[h, w] of a latent downsampled by `factor` (None: a fixed 1x1 latent).

  Works on Python ints and on int32 tensors alike.
  """
  if factor is None:
    return [1, 1]
  return [padded_height // factor, padded_width // factor]


def weights_fingerprint(model):
  """CRC32 of a model's trainable weights as float16 (the shipped precision:
  a model in memory and the file it is exported to give the same id).
  Written into every .tfci file, so that weights retrained under the same
  name refuse old files instead of decoding them to a wrong image."""
  crc = 0
  for variable in model.trainable_weights:
    crc = zlib.crc32(
        np.ascontiguousarray(variable.numpy().astype(np.float16)).tobytes(),
        crc)
  return crc


def mse_to_psnr(mse, peak=255.):
  return 10. * tf.math.log(peak ** 2 / mse) / tf.math.log(10.)


class CompressionModel(tf.keras.Model):
  """Base class: loss, training step, padding and the coding contract."""

  stride = 64
  string_names = ()
  shape_names = ()
  # Downsampling factor of each latent named in `shape_names`, relative to
  # the image padded to `stride`; None marks a latent of fixed shape 1x1
  # (Informer's global hyperprior). Lets a header be validated from the
  # class alone, before any model is built.
  latent_factors = {"y": 16, "z": 64}
  # Whether `compress(image, refine_steps=N)` is offered (tfcodec/refine.py
  # lists the hooks such a model provides).
  supports_refinement = False

  def __init__(self, lmbda=0.01, metric="mse", **kwargs):
    super().__init__(**kwargs)
    if metric not in ("mse", "ms-ssim"):
      raise ValueError(f"metric must be 'mse' or 'ms-ssim', got {metric!r}")
    self.lmbda = float(lmbda)
    self.metric = metric
    self._frozen = False

  # -- to be provided by each model --------------------------------------
  def entropy_modules(self):
    """The entropy models whose tables `freeze()` must build."""
    raise NotImplementedError

  def compress_latents(self, x):
    """x: float [1, H, W, 3] in [0, 1] -> (strings, latent_shapes)."""
    raise NotImplementedError

  def decompress_latents(self, strings, latent_shapes):
    """-> float [1, H', W', 3] reconstruction of the padded image."""
    raise NotImplementedError

  # -- shared ------------------------------------------------------------
  def build_variables(self):
    """Creates every variable with one small eager forward pass.

    Keras' symbolic `build()` would create tfc.GDN's variables inside a graph,
    which their tensor-valued initialisers do not allow.
    """
    with tf.init_scope():
      self(tf.zeros((1, self.stride, self.stride, 3)), training=True)

  def freeze(self, tables=None, exact_transforms=True):
    """Builds range-coding tables from the current weights (after training).

    `tables` (from `coding_tables()`) restores previously built tables.
    `exact_transforms=False` runs g_a and g_s in plain float32 (oneDNN)
    instead of the exact integer arithmetic (tfcodec/layers/digits.py for
    their large convolutions), faster still (bench/codec_speed.py).
    Everything that decides the entropy parameters (h_a, h_s, context and
    parameter networks) stays exact, so files still decode on any machine
    to the latents the encoder coded; what is given up is that the decoded
    pixels (float32 g_s) and the written bytes (float32 g_a, whose y may round
    the other way) are the same whatever the threads, oneDNN or machine.
    """
    from tfcodec.layers import exact
    self.weights_id = weights_fingerprint(self)
    for index, module in enumerate(self.entropy_modules()):
      module.freeze(None if tables is None else tables.get(index, {}) or None)
    # Coding uses order-independent integer convolutions so that every
    # machine computes bit-identical latents and entropy parameters
    # (tfcodec/layers/exact.py explains why).
    # g_a and g_s decide neither the symbols' probabilities nor (g_a) what the
    # decoder computes, and cost most of the coding time: their convolutions
    # take the int8-digit form of the same exact arithmetic
    # (tfcodec/layers/digits.py), 14-bit instead of 20-bit.
    # The analysis transform, which no decoder runs, has all its
    # convolutions and GDNs on digits (faster; see exact.prepare_model).
    exact.prepare_model(
        self, skip=() if exact_transforms else self.transform_modules(),
        fast=self.transform_modules() if exact_transforms else (),
        analysis=self.analysis_modules() if exact_transforms else ())
    self.exact_transforms = bool(exact_transforms)
    self._frozen = True
    self._build_coding_functions()

  def transform_modules(self):
    """The analysis and synthesis transforms: the networks that decide
    neither the entropy parameters nor the coded symbols' probabilities."""
    return [getattr(self, name) for name in ("g_a", "g_s")
            if getattr(self, name, None) is not None]

  def analysis_modules(self):
    """The transforms only the encoder runs (g_a): their arithmetic is not
    part of the format."""
    return [self.g_a] if getattr(self, "g_a", None) is not None else []

  def coding_tables(self):
    """{entropy module index: {name: array}} of the frozen tables."""
    return {index: module.coding_tables()
            for index, module in enumerate(self.entropy_modules())}

  def rd_loss(self, x, outputs):
    """Rate (bits per pixel) + lambda * distortion, plus monitored terms.

    A variable-rate model's forward returns a lambda per image
    (`outputs["lmbda"]`, shape [B]); the loss is then the batch mean of each
    image's own rate + lambda * distortion.
    """
    image_pixels = tf.cast(tf.reduce_prod(tf.shape(x)[1:-1]), tf.float32)
    batch = tf.shape(x)[0]
    image_bits = tf.add_n([
        tf.reduce_sum(tf.reshape(tf.cast(b, tf.float32), [batch, -1]), axis=1)
        for b in outputs["bits"].values()])
    image_bpp = image_bits / image_pixels
    bpp = tf.reduce_mean(image_bpp)
    x_hat = tf.cast(outputs["x_hat"], tf.float32)
    image_mse = tf.reduce_mean(tf.math.squared_difference(x, x_hat),
                               axis=[1, 2, 3]) * 255. ** 2
    mse = tf.reduce_mean(image_mse)
    if self.metric == "mse":
      image_distortion = image_mse
    else:
      image_distortion = 1. - tf.image.ssim_multiscale(
          tf.clip_by_value(x_hat, 0., 1.), x, 1.)
    lmbda = outputs.get("lmbda", self.lmbda)
    loss = tf.reduce_mean(image_bpp + lmbda * image_distortion)
    return dict(loss=loss, bpp=bpp, mse=mse, psnr=mse_to_psnr(mse))

  def replica_gradients(self, x):
    """Loss terms and gradients of one replica's batch, averaged over replicas.

    Returns (terms, grads, finite). Under a tf.distribute strategy with several
    replicas the gradients are all-reduced here, so every replica holds the
    same gradients and takes the same apply-or-skip decision (`finite`); that
    decision must be identical everywhere or the collectives would deadlock.
    """
    replica = tf.distribute.get_replica_context()
    replicas = replica.num_replicas_in_sync if replica is not None else 1
    with tf.GradientTape() as tape:
      outputs = self(x, training=True)
      terms = self.rd_loss(x, outputs)
      # Each replica's share of the mean over the global batch.
      loss = terms["loss"] / replicas
    # bfloat16 has float32's exponent range, so no loss scaling is needed.
    grads = tape.gradient(loss, self.trainable_variables)
    grads = [tf.zeros_like(v) if g is None else g
             for g, v in zip(grads, self.trainable_variables)]
    bad = 1. - tf.cast(tf.math.is_finite(terms["loss"]), tf.float32)
    if replicas > 1:
      grads = replica.all_reduce(tf.distribute.ReduceOp.SUM, grads)
      bad = replica.all_reduce(tf.distribute.ReduceOp.SUM, bad)
    finite = tf.logical_and(
        tf.equal(bad, 0.),
        tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads]))
    return terms, grads, finite

  def apply_replica_gradients(self, grads):
    """Applies gradients from `replica_gradients` (already aggregated)."""
    self.optimizer.apply_gradients(zip(grads, self.trainable_variables),
                                   skip_gradients_aggregation=True)

  def train_step(self, x):
    """One optimisation step on a single replica; reports `skipped`."""
    terms, grads, finite = self.replica_gradients(x)
    # A non-finite loss or gradient skips the update instead of poisoning the
    # weights; the skip is reported as a metric so it never goes unnoticed.
    def apply():
      self.apply_replica_gradients(grads)
      return tf.constant(0.)
    terms["skipped"] = tf.cond(finite, apply, lambda: tf.constant(1.))
    return terms

  def test_step(self, x):
    outputs = self(x, training=False)
    return self.rd_loss(x, outputs)

  def predict_step(self, data):
    raise NotImplementedError("Use compress() / decompress().")

  def _build_coding_functions(self):
    # Traced once per model with fixed signatures, so a SavedModel can carry
    # them and every image size reuses the same graph.
    image_spec = tf.TensorSpec([None, None, 3], tf.uint8)
    strings_spec = [tf.TensorSpec([], tf.string)] * len(self.string_names)
    shapes_spec = [tf.TensorSpec([2], tf.int32)] * len(self.shape_names)
    self._compress_fn = tf.function(self._compress, input_signature=[image_spec])
    self._decompress_fn = tf.function(
        self._decompress,
        input_signature=[strings_spec, shapes_spec, tf.TensorSpec([2], tf.int32)])
    if self.supports_refinement:
      self._refined_compress_fn = tf.function(
          self._compress_refined,
          input_signature=[image_spec, tf.TensorSpec([], tf.int32)])
    self.last_refinement = None

  def compress(self, image, refine_steps=0):
    """uint8 [H, W, 3] -> (strings, latent_shapes).

    `refine_steps` > 0 refines the latents for this image first
    (tfcodec/refine.py); `last_refinement` then holds its diagnostics.
    """
    self._require_frozen()
    image = tf.convert_to_tensor(image, tf.uint8)
    if not refine_steps:
      return self._compress_fn(image)
    if not self.supports_refinement:
      raise ValueError(f"{getattr(self, 'model_name', type(self).__name__)} "
                       "does not support latent refinement")
    strings, shapes, diagnostics = self._refined_compress_fn(
        image, tf.constant(int(refine_steps), tf.int32))
    self.last_refinement = {k: float(v) for k, v in diagnostics.items()}
    return strings, shapes

  def decompress(self, strings, latent_shapes, image_shape):
    """Strings and latent shapes -> uint8 image cropped to `image_shape`."""
    self._require_frozen()
    return self._decompress_fn(
        [tf.convert_to_tensor(s, tf.string) for s in strings],
        [tf.convert_to_tensor(s, tf.int32) for s in latent_shapes],
        tf.convert_to_tensor(image_shape, tf.int32))

  def _require_frozen(self):
    if not self._frozen:
      raise RuntimeError("Call freeze() before compress()/decompress().")

  def _compress(self, image):
    image = tf.convert_to_tensor(image)
    x = image_to_unit(image)[None]
    x = pad_to_multiple(x, self.stride)
    return self.compress_latents(x)

  def _compress_refined(self, image, steps):
    from tfcodec import refine
    x = image_to_unit(tf.convert_to_tensor(image))[None]
    valid_shape = tf.shape(x)[1:3]
    x = pad_to_multiple(x, self.stride)
    latents, diagnostics = refine.refine_latents(
        self, x, self.initial_latents(x), steps, valid_shape)
    strings, shapes = self.code_latents(latents)
    return strings, shapes, diagnostics

  def _decompress(self, strings, latent_shapes, image_shape):
    x_hat = self.decompress_latents(strings, latent_shapes)
    return self._to_image(x_hat, image_shape)

  @staticmethod
  def _to_image(x_hat, image_shape):
    x_hat = x_hat[0, :image_shape[0], :image_shape[1], :]
    return tf.saturate_cast(tf.round(tf.cast(x_hat, tf.float32) * 255.),
                            tf.uint8)
