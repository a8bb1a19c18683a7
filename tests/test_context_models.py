"""Context models (mbt2018, Cheng 2020, Informer): wavefront coding, mixtures,
exactness.

Tiny random models (N = M = 8) from the `tiny_models` fixture; the parameter
counts of the full-size models are in test_models.py.
"""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT, kodak_image, random_image, tiny_config
from tfcodec import codec
from tfcodec.entropy import mixture
from tfcodec.entropy.context import WavefrontSchedule, run_wavefront
from tfcodec.layers.masked import MaskedConv2D, causal_taps
from tfcodec.models import create_model
from tfcodec.models.base import pad_to_multiple

CONTEXT_MODELS = ["mbt2018", "cheng2020-anchor", "cheng2020-attn",
                  "cheng2020-gmm", "informer"]


def _kodak_crop():
  return kodak_image()[200:328, 300:492]  # 128 x 192


_ENCODERS = {}


def _encoder_side(model, image):
  """y_hat and reconstruction of the encoder's own coding pass, in a graph
  (like model.compress), so they can be compared with the decoder's."""
  if model not in _ENCODERS:
    _ENCODERS[model] = tf.function(
        lambda x: model.encode_latents(x)[2],
        input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
  x = pad_to_multiple(tf.constant(image, tf.float32)[None] / 255., model.stride)
  return _ENCODERS[model](x)


# -- the masked convolution and the wavefront schedule --------------------------

def test_masked_convolution_never_sees_current_or_future_positions():
  layer = MaskedConv2D(6, 5)
  rng = np.random.default_rng(0)
  y = rng.normal(size=(1, 7, 9, 4)).astype(np.float32)
  base = layer(y).numpy()
  raster = np.arange(7 * 9).reshape(7, 9)
  for h, w in [(0, 0), (3, 4), (6, 8), (2, 0), (4, 8)]:
    # Every position from the current one onwards, in raster order, at once...
    changed = y + 100. * (raster >= raster[h, w])[None, :, :, None]
    np.testing.assert_array_equal(layer(changed).numpy()[0, h, w], base[0, h, w])
    # ...and the masked taps of the window one at a time.
    for i in range(5):
      for j in range(5):
        fh, fw = h + i - 2, w + j - 2
        if (i, j) in causal_taps(5) or not (0 <= fh < 7 and 0 <= fw < 9):
          continue
        changed = y.copy()
        changed[0, fh, fw] += 100.
        np.testing.assert_array_equal(layer(changed).numpy()[0, h, w],
                                      base[0, h, w])
  # ...while every causal neighbour does matter.
  for i, j in causal_taps(5):
    changed = y.copy()
    changed[0, 3 + i - 2, 4 + j - 2] += 100.
    assert not np.allclose(layer(changed).numpy()[0, 3, 4], base[0, 3, 4])


def test_wavefront_steps_only_depend_on_earlier_steps():
  height, width = 32, 48
  schedule = WavefrontSchedule(height, width)
  assert int(schedule.num_steps) == 141  # a 512 x 768 Kodak image
  step = np.zeros((height, width), int)
  seen = set()
  for t in range(int(schedule.num_steps)):
    for p in schedule.positions(t).numpy():
      step[p // width, p % width] = t
      seen.add(int(p))
  assert len(seen) == height * width
  for h in range(height):
    for w in range(width):
      for i, j in causal_taps(5):
        nh, nw = h + i - 2, w + j - 2
        if 0 <= nh < height and 0 <= nw < width:
          assert step[nh, nw] < step[h, w]


def test_wavefront_gather_equals_the_masked_convolution():
  layer = MaskedConv2D(6, 5)
  y = tf.random.normal((1, 5, 7, 4), seed=2)
  expected = layer(y).numpy()[0]
  flat_y = tf.reshape(y[0], (-1, 4))
  kernel = layer.causal_kernel()
  rows = []

  def params(positions, neighbours):
    rows.append((positions.numpy(), (neighbours @ kernel + layer.bias).numpy()))
    return tf.zeros((tf.shape(positions)[0], 1), tf.float32)

  def code_step(state, positions, raw):
    return state, tf.gather(flat_y, positions)  # "decode" the true y

  y_hat, _ = run_wavefront(WavefrontSchedule(5, 7), 4, params, code_step,
                           tf.constant(0))
  np.testing.assert_array_equal(y_hat.numpy(), y.numpy())
  for positions, context in rows:
    np.testing.assert_allclose(context, expected.reshape(-1, 6)[positions],
                               rtol=1e-5, atol=1e-5)


# -- the Gaussian mixture --------------------------------------------------------

def _random_mixture_raw(rng, positions, channels):
  raw = np.zeros((positions, 3, 3, channels))
  raw[:, :, 0] = rng.normal(0, 3, size=(positions, 3, channels))  # logits
  raw[:, :, 1] = rng.normal(0, 20, size=(positions, 3, channels))  # means
  raw[:, :, 2] = np.exp(rng.uniform(-4, 6, size=(positions, 3, channels)))
  return tf.constant(raw.reshape(positions, 9 * channels))


def test_mixture_bin_counts_follow_the_mixture_and_none_is_zero():
  rng = np.random.default_rng(1)
  raw = _random_mixture_raw(rng, 50, 8)
  weights, means, scales = mixture.coding_parameters(raw, 8)
  np.testing.assert_allclose(tf.reduce_sum(weights, -1).numpy(), 1., atol=1e-12)
  assert np.all(scales.numpy() >= mixture.SCALE_MIN * 0.99)
  centre = mixture.centres(weights, means)
  counts = mixture.bin_counts(weights, means, scales, centre).numpy()
  num_bins = 2 * mixture.SUPPORT + 2
  assert counts.shape == (50, 8, num_bins)
  assert counts.min() >= 1  # no symbol, and no escape, has probability zero
  # Total probability 1: the counts add up to 2^30 plus at most one per bin.
  total = counts.sum(-1)
  assert np.all(total >= 2 ** 30) and np.all(total <= 2 ** 30 + num_bins)
  values = centre.numpy()[..., None] + np.arange(-mixture.SUPPORT,
                                                 mixture.SUPPORT + 1)
  from scipy.stats import norm
  w, m, s = (t.numpy()[..., None, :] for t in (weights, means, scales))
  pmf = np.sum(w * (norm.cdf((values[..., None] + .5 - m) / s)
                    - norm.cdf((values[..., None] - .5 - m) / s)), -1)
  np.testing.assert_allclose(counts[..., :-1] / 2 ** 30, pmf, rtol=0,
                             atol=2 ** -29)
  np.testing.assert_allclose(counts[..., -1] / 2 ** 30, 1 - pmf.sum(-1),
                             rtol=0, atol=1e-9)


def test_binary_search_decisions_are_valid_16_bit_probabilities():
  # Bins with counts 1 (the floor) next to 2^30: every decision keeps both
  # outcomes possible and follows the counts to within 2^-16.
  counts = np.ones((3, 32), np.int64)
  counts[0, 15] = 2 ** 30
  counts[1] = np.arange(1, 33) ** 4
  counts[2, 31] = 2 ** 30  # all mass on the escape
  cumulative = tf.pad(tf.cumsum(tf.constant(counts), axis=-1), [[0, 0], [1, 0]])
  low, high = tf.zeros(3, tf.int32), tf.fill([3], 32)
  for symbol in range(32):
    low, high = tf.zeros(3, tf.int32), tf.fill([3], 32)
    bits = 0.
    for _ in range(mixture.binary_search_levels(32)):
      active, mid, row = mixture.search_decision(cumulative, low, high)
      q = (row.numpy() + 1) / 2 ** 16
      assert np.all(active.numpy()) and np.all((q > 0) & (q < 1))
      upper = symbol >= mid.numpy()
      bits = bits - np.log2(np.where(upper, 1 - q, q))
      low = tf.where(upper, mid, low)
      high = tf.where(upper, high, mid)
    np.testing.assert_array_equal(low.numpy(), symbol)
    np.testing.assert_array_equal(high.numpy(), symbol + 1)
    ideal = -np.log2(counts[:, symbol] / counts.sum(-1))
    # The likely symbols cost what the counts say; the unlikely ones at most
    # the 16-bit floor of each of the 5 decisions.
    likely = ideal < 8
    np.testing.assert_allclose(bits[likely], ideal[likely], atol=1e-3)
    assert np.all(bits <= np.maximum(ideal, 0) + 5 * 16 + 1e-9)


class _OneStep:
  num_steps = tf.constant(1)


def test_mixture_coder_round_trips_with_escapes():
  rng = np.random.default_rng(2)
  coder = mixture.MixtureStepCoder(channels=8)
  raw = _random_mixture_raw(rng, 30, 8)
  y = rng.normal(0, 30, size=(30, 8)).astype(np.float32)
  y[0, 0], y[5, 3], y[7, 7] = 40000., -1000., 31.  # far outside the support
  state, y_hat = coder.encode_step(coder.encoder_state(), raw, tf.constant(y))
  string = coder.encoder_finish(state)
  expected = np.clip(np.round(y), -mixture.ESCAPE_LIMIT, mixture.ESCAPE_LIMIT)
  np.testing.assert_array_equal(y_hat.numpy(), expected)
  escaped = int(state[1].concat().shape[0])
  assert escaped >= 3
  decoder = coder.decoder_state(string, _OneStep(), 8)
  decoder, decoded = coder.decode_step(decoder, raw)
  np.testing.assert_array_equal(decoded.numpy(), expected)
  coder.decoder_finish(decoder)
  # The count and the escaped values (int16) lead the string.
  assert string.numpy()[0] == escaped
  assert len(string.numpy()) > 1 + 2 * escaped


def test_mixture_coder_costs_what_the_mixture_says_over_many_steps():
  """All steps share one range coder, so many small steps cost no framing:
  the string is within 0.3% + 8 bytes of -log2 P under the snapped mixture."""
  rng = np.random.default_rng(3)
  coder = mixture.MixtureStepCoder(channels=16)
  state, ideal, steps = coder.encoder_state(), 0., []
  for step in range(60):  # ~60 symbols a step, like a small latent's steps
    raw = _random_mixture_raw(rng, 4, 16).numpy()
    raw = raw.reshape(4, 3, 3, 16)
    raw[:, :, 2] = np.exp(rng.uniform(-2, 1.5, size=(4, 3, 16)))  # low rate
    raw[:, :, 1] = rng.normal(0, 2, size=(4, 3, 16))
    raw = tf.constant(raw.reshape(4, 9 * 16))
    weights, means, scales = mixture.coding_parameters(raw, 16)
    pick = np.argmax(weights.numpy(), -1)  # a component that has weight
    mu = np.take_along_axis(means.numpy(), pick[..., None], -1)[..., 0]
    sigma = np.take_along_axis(scales.numpy(), pick[..., None], -1)[..., 0]
    y = (mu + sigma * rng.normal(size=(4, 16))).astype(np.float32)
    from scipy.stats import norm
    w, m, s = (t.numpy() for t in (weights, means, scales))
    v = np.round(y)[..., None]
    p = np.sum(w * (norm.cdf((v + .5 - m) / s) - norm.cdf((v - .5 - m) / s)),
               -1)
    ideal -= np.log2(p).sum()
    state, _ = coder.encode_step(state, raw, tf.constant(y))
    steps.append((raw, y))
  string = coder.encoder_finish(state).numpy()
  assert string[0] == 0  # nothing escaped
  assert 8 * len(string) <= 1.003 * ideal + 64, (8 * len(string), ideal)
  assert 8 * len(string) >= ideal - 64
  decoder = coder.decoder_state(tf.constant(string), _OneStep(), 16)
  for raw, y in steps:
    decoder, decoded = coder.decode_step(decoder, raw)
    np.testing.assert_array_equal(decoded.numpy(), np.round(y))
  coder.decoder_finish(decoder)


def test_varints_round_trip():
  values = tf.constant([0, 1, 127, 128, 300, 16383, 16384, 2 ** 27 + 5])
  data = mixture.varint_bytes(values)
  assert data.numpy().tolist()[:5] == [0, 1, 127, 128, 1]
  parsed, used = mixture.parse_varints(
      tf.concat([data, [7, 200, 3]], 0), tf.size(values))
  np.testing.assert_array_equal(parsed.numpy(), values.numpy())
  assert int(used) == int(tf.size(data))


# -- whole models ---------------------------------------------------------------

# A whole Kodak image in make test for the Gaussian and the mixture loop;
# every context model codes odd sizes below (test_tiny_images_round_trip).
@pytest.mark.parametrize("name", [
    name if name in ("mbt2018", "cheng2020-gmm")
    else pytest.param(name, marks=pytest.mark.slow)
    for name in CONTEXT_MODELS])
def test_decode_is_bit_exact_with_the_encoder(tiny_models, name):
  model = tiny_models[name]
  # A whole 768x512 Kodak image: 141 wavefront steps over a 32x48 latent.
  for image in (random_image(65, 97, seed=11), kodak_image()):
    shape = image.shape[:2]
    strings, shapes = model.compress(image)
    decoded = model.decompress(strings, shapes, shape).numpy()
    y_hat = _encoder_side(model, image)
    # The latent the decoder rebuilt, exactly the encoder's:
    y_decoded = tf.function(model.decode_latents)(strings, shapes)
    np.testing.assert_array_equal(y_decoded.numpy(), y_hat.numpy())
    reconstruction = model._to_image(model.g_s(y_hat), shape).numpy()
    np.testing.assert_array_equal(decoded, reconstruction)
    # Through the .tfci container, as decoder.py does it.
    data = codec.encode_image(model, image, quality=1)
    np.testing.assert_array_equal(codec.decode_bytes(data, model=model), decoded)


@pytest.mark.parametrize("name", CONTEXT_MODELS)
def test_tiny_images_round_trip(tiny_models, name):
  model = tiny_models[name]
  image = random_image(1, 1, seed=4)
  data = codec.encode_image(model, image, quality=1)
  assert codec.decode_bytes(data, model=model).shape == (1, 1, 3)


@pytest.mark.parametrize("name", CONTEXT_MODELS[:-1])
@pytest.mark.parametrize("likelihood", ["gaussian", "gmm"])
def test_every_architecture_takes_both_likelihoods(name, likelihood):
  model = create_model(name, N=8, M=8, likelihood=likelihood)
  assert model.likelihood == likelihood
  width = model.entropy_parameters.layers[-1].filters
  assert width == (9 * 8 if likelihood == "gmm" else 2 * 8)


# Coding the swapped likelihoods is make test-all's: make test codes the
# Gaussian wavefront with Cheng's transforms in test_tiny_images_round_trip
# (cheng2020-anchor, -attn) and holds the Gaussian and mixture decoders to
# their encoders bit for bit above (mbt2018, cheng2020-gmm).
@pytest.mark.slow
@pytest.mark.parametrize("name,likelihood", [
    ("cheng2020-anchor", "gmm"), ("cheng2020-attn", "gmm"),
    ("cheng2020-gmm", "gaussian")])
def test_both_likelihoods_on_every_architecture(name, likelihood):
  tf.random.set_seed(1)
  model = create_model(name, N=8, M=8, likelihood=likelihood)
  assert model.likelihood == likelihood
  model.freeze()
  image = random_image(40, 70, seed=5)
  strings, shapes = model.compress(image)
  decoded = model.decompress(strings, shapes, image.shape[:2]).numpy()
  expected = model._to_image(model.g_s(_encoder_side(model, image)),
                             image.shape[:2]).numpy()
  np.testing.assert_array_equal(decoded, expected)


@pytest.mark.parametrize("name", CONTEXT_MODELS)
def test_training_forward_and_step(name):
  # A fresh, unfrozen model, and gradients in a traced function as train.py
  # takes them: frozen models switch to exact float64 coding arithmetic, and
  # eager convolution gradients crashed TF 2.14 here (SIGSEGV in
  # imperative_grad) while the traced training step does not.
  tf.random.set_seed(0)
  model = create_model(name, **tiny_config(name))
  x = tf.random.uniform((2, 64, 64, 3), seed=3)
  out = model(x, training=True)
  assert out["x_hat"].shape == x.shape
  assert set(out["bits"]) == set(model.string_names)
  for bits in out["bits"].values():
    assert bits.shape == (2,) and np.all(np.isfinite(bits.numpy()))

  @tf.function
  def context_gradients(x):
    with tf.GradientTape() as tape:
      loss = model.rd_loss(x, model(x, training=True))["loss"]
    return tape.gradient(loss, model.context.trainable_variables)

  # Gradients reach the context model through the noisy y.
  grads = context_gradients(x)
  assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in grads)
  assert float(tf.reduce_sum(tf.abs(grads[0]))) > 0


def test_estimated_and_file_bits(tiny_models):
  """File bits over the evaluation forward's estimate, per model (printed).

  Untrained tiny models are a harsh case: few bits, so fixed costs show, and
  the evaluation forward feeds round(y) to the context where coding feeds the
  decoded y_hat. The numbers are printed; only gross errors fail.
  """
  image = _kodak_crop()
  x = pad_to_multiple(tf.constant(image, tf.float32)[None] / 255., 64)
  for name in CONTEXT_MODELS:
    model = tiny_models[name]
    strings, _ = model.compress(image)
    file_bits = 8 * sum(len(s.numpy()) for s in strings)
    estimate = sum(float(b[0]) for b in model(x, training=False)["bits"].values())
    ratio = file_bits / estimate
    print(f"{name} ({model.likelihood}): file {file_bits} bits, estimated "
          f"{estimate:.0f}, ratio {ratio:.3f}")
    if model.likelihood == "gaussian":
      assert 0.5 < ratio < 1.5, (name, ratio)


# -- determinism across thread counts and oneDNN ----------------------------------

_DETERMINISM_SCRIPT = r"""
import hashlib, os, sys
sys.path.insert(0, {root!r})
import numpy as np, tensorflow as tf
threads = int(os.environ["TFCODEC_THREADS"])
tf.config.threading.set_intra_op_parallelism_threads(threads)
tf.config.threading.set_inter_op_parallelism_threads(threads)
sys.path.insert(0, os.path.join({root!r}, "tests"))
from conftest import random_image
from tfcodec.models import create_model
from tfcodec.testing import TINY_INFORMER
out = []
for name, likelihood in [({name!r}, {likelihood!r})]:
  # Keras draws unseeded initializers from Python's and NumPy's generators.
  tf.keras.utils.set_random_seed(0)
  model = create_model(name, **dict(TINY_INFORMER) if name == "informer"
                       else dict(N=8, M=8, likelihood=likelihood))
  weights = hashlib.sha256(b"".join(v.numpy().tobytes() for v in model.weights))
  # The first configuration builds the factorized prior's tables, the others
  # load them, as a decoder loads a shipped file's tables (tfcodec.zoo): tfc
  # builds them with float kernels that differ with oneDNN on and off.
  tables_path = os.path.join({tmp!r}, name + likelihood + "-tables.npz")
  if os.path.exists(tables_path):
    with np.load(tables_path) as data:
      tables = {{}}
      for key in data.files:
        index, table = key.split(":", 1)
        tables.setdefault(int(index), {{}})[table] = data[key]
    model.freeze(tables)
  else:
    model.freeze()
    np.savez(tables_path, **{{f"{{i}}:{{k}}": v for i, module in
                              model.coding_tables().items()
                              for k, v in module.items()}})
  image = random_image(70, 130, seed=7)
  strings, shapes = model.compress(image)
  data = [s.numpy() for s in strings]
  reference = os.path.join({tmp!r}, name + likelihood + ".npy")
  if not os.path.exists(reference):
    np.save(reference, np.array(data, dtype=object), allow_pickle=True)
  ref_strings = [tf.constant(s) for s in
                 np.load(reference, allow_pickle=True).tolist()]
  data = b"".join(len(s).to_bytes(4, "big") + s for s in data)
  decoded = model.decompress(ref_strings, shapes, image.shape[:2]).numpy()
  out.append(" ".join([name, likelihood, "weights", weights.hexdigest()[:16],
                       "bytes/pixels",
                       hashlib.sha256(data).hexdigest()[:16],
                       hashlib.sha256(decoded.tobytes()).hexdigest()[:16]]))
print("RESULT", ";".join(out))
"""


# The Gaussian and the mixture wavefront in make test; Informer (whose loop
# adds exact.RowDense attention, per-row tested in test_exact_rows.py) under
# make test-all.
@pytest.mark.parametrize("name,likelihood", [
    ("mbt2018", "gaussian"), ("cheng2020-gmm", "gmm"),
    pytest.param("informer", "gaussian", marks=pytest.mark.slow)])
def test_decoding_is_identical_across_threads_and_onednn(tmp_path, name,
                                                         likelihood):
  """Encodes in each configuration, decodes the first one's files in each:
  the bytes and the decoded images must not depend on the configuration."""
  script = tmp_path / "run.py"
  script.write_text(_DETERMINISM_SCRIPT.format(
      root=ROOT, tmp=str(tmp_path), name=name, likelihood=likelihood))
  results = {}
  # Both settings change between the two runs (threads 1 -> 2, oneDNN on ->
  # off): each alone changed float32 sums before the exact arithmetic
  # (README, "Determinism"). A third run to tell the causes apart cost a
  # third of this test's time; `make determinism` runs the whole matrix on
  # shipped weights and names the configuration of any mismatch.
  for threads, onednn in [(1, "1"), (2, "0")]:
    env = dict(os.environ, TFCODEC_THREADS=str(threads),
               TF_ENABLE_ONEDNN_OPTS=onednn, TF_CPP_MIN_LOG_LEVEL="3")
    run = subprocess.run([sys.executable, str(script)], env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    line = [l for l in run.stdout.splitlines() if l.startswith("RESULT")][0]
    results[(threads, onednn)] = line
  assert len(set(results.values())) == 1, "\n".join(
      f"threads {t}, oneDNN {o}: {line}" for (t, o), line in results.items())
