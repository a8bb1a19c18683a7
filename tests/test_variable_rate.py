"""mbt2018-mean-vr: one network, a quality ladder through gain units."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import random_image
from tfcodec import codec, zoo
from tfcodec.io.bitstream import Bitstream, FormatError
from tfcodec.models import (LAMBDAS, create_model, ladder_lambdas, qualities,
                            quality_config)
from tfcodec.models.registry import LOW_LAMBDAS
from tfcodec.models.base import pad_to_multiple

NAME = "mbt2018-mean-vr"
PARTS = ("g_a", "g_s", "h_a", "h_s", "z_prior", "y_conditional")


def test_ladders_are_mbt2018_means_rungs_narrow_then_wide():
  # Two networks, widening where mbt2018-mean does (q5); the narrow one also
  # serves the low rung q0, below CompressAI's table.
  assert qualities(NAME) == (0, 1, 2, 3, 4, 5, 6, 7)
  for quality in qualities(NAME)[1:]:
    assert quality_config(NAME, quality) == quality_config(
        "mbt2018-mean", quality)
  assert quality_config(NAME, 0) == (128, 192, 0.0005)
  assert quality_config(NAME, 0, "ms-ssim") == (128, 192, 0.66)
  with pytest.raises(ValueError, match="0..7"):
    quality_config(NAME, 8)
  with pytest.raises(ValueError, match="quality must be in 1..8"):
    quality_config("mbt2018-mean", 0)  # single-rate models have no q0
  model = create_model(NAME, quality=2, N=8, M=8)
  assert model.quality == 2 and model.lmbda == LAMBDAS["mse"][1]
  assert model.qualities == (0, 1, 2, 3, 4)
  # Gains start at sqrt(lambda_q / lambda_3).
  np.testing.assert_allclose(
      np.exp(model.log_gains.numpy()[:, 0]),
      np.sqrt(np.array((LOW_LAMBDAS["mse"],) + LAMBDAS["mse"][:4])
              / LAMBDAS["mse"][2]), rtol=1e-6)
  assert create_model(NAME, quality=0, N=8, M=8).lmbda == 0.0005
  # A high quality builds the wide network's ladder, gains relative to q5.
  wide = create_model(NAME, quality=6, N=8, M=8)
  assert wide.qualities == (5, 6, 7) and wide.quality == 6
  np.testing.assert_allclose(
      np.exp(wide.log_gains.numpy()[:, 0]),
      np.sqrt(np.array(LAMBDAS["mse"][4:7]) / LAMBDAS["mse"][4]), rtol=1e-6)


def test_reference_quality_starts_as_the_single_rate_model():
  tf.keras.utils.set_random_seed(4)
  single = create_model("mbt2018-mean", N=8, M=8)
  gained = create_model(NAME, quality=3, N=8, M=8)
  for part in PARTS:
    for source, target in zip(getattr(single, part).trainable_variables,
                              getattr(gained, part).trainable_variables):
      target.assign(source)
  x = tf.constant(random_image(64, 128, seed=1), tf.float32)[None] / 255.
  expected, actual = single(x, training=False), gained(x, training=False)
  np.testing.assert_array_equal(actual["x_hat"].numpy(),
                                expected["x_hat"].numpy())
  for key in ("y", "z"):
    np.testing.assert_array_equal(actual["bits"][key].numpy(),
                                  expected["bits"][key].numpy())
  # Elsewhere on the ladder the gains change the rate.
  gained.set_quality(1)
  assert float(gained(x, training=False)["bits"]["y"][0]) < float(
      expected["bits"]["y"][0])


def test_training_loss_uses_each_images_own_lambda():
  tf.keras.utils.set_random_seed(5)
  model = create_model(NAME, quality=3, N=8, M=8)
  x = tf.random.uniform([6, 64, 64, 3])
  outputs = model(x, training=True)
  lmbda = outputs["lmbda"].numpy()
  assert lmbda.shape == (6,) and set(lmbda) <= set(
      np.float32((LOW_LAMBDAS["mse"],) + LAMBDAS["mse"][:4]))
  terms = model.rd_loss(x, outputs)
  bpp = (sum(b.numpy() for b in outputs["bits"].values()) / (64 * 64))
  mse = np.mean((x.numpy() - outputs["x_hat"].numpy()) ** 2,
                axis=(1, 2, 3)) * 255. ** 2
  np.testing.assert_allclose(float(terms["loss"]), np.mean(bpp + lmbda * mse),
                             rtol=1e-5)


def test_every_quality_round_trips_bit_exactly(tiny_models):
  model = tiny_models[NAME]
  image = random_image(70, 90, seed=3)
  x = pad_to_multiple(tf.constant(image, tf.float32)[None] / 255., model.stride)
  sizes = []
  for quality in model.qualities:
    model.set_quality(quality)
    strings, shapes = model.compress(image)
    np.testing.assert_array_equal(
        model.decompress_latents(strings, shapes).numpy(),
        model(x, training=False)["x_hat"].numpy())
    sizes.append(sum(len(s.numpy()) for s in strings))
  # Larger gains, more bits (untrained weights, so only the order is checked).
  assert sizes == sorted(sizes) and sizes[0] < sizes[-1], sizes


def test_header_quality_selects_the_gains(tiny_models, tmp_path):
  model = tiny_models[NAME]
  image = random_image(40, 72, seed=6)
  files = {q: codec.encode_image(model, image, q) for q in (1, 4)}
  # Decoding with the model left at another quality still uses the file's.
  for quality, data in files.items():
    model.set_quality(5 - quality)
    decoded = codec.decode_bytes(data, model=model)
    model.set_quality(quality)
    strings, shapes = model.compress(image)
    expected = model.decompress(strings, shapes, image.shape[:2]).numpy()
    np.testing.assert_array_equal(decoded, expected)
  stream = Bitstream.from_bytes(files[4])
  stream.quality = 5
  with pytest.raises(FormatError, match="quality 5 outside 0..4"):
    codec.decode_bytes(stream.to_bytes(), model=model)


def test_one_weight_file_serves_every_quality(tiny_models, tmp_path,
                                              monkeypatch):
  model = tiny_models[NAME]
  monkeypatch.setattr(zoo, "WEIGHTS_DIR", str(tmp_path))
  model.set_quality(2)
  path = zoo.weights_path(NAME, 2)
  assert path == str(tmp_path / f"{NAME}-mse.npz")
  zoo.save_weights(model, path, 2, tables=model.coding_tables(),
                   dtype=np.float32)
  assert [q for n, _, q in zoo.available_weights() if n == NAME] == [
      0, 1, 2, 3, 4]
  image = random_image(64, 64, seed=2)
  for quality in (0, 1, 3):
    loaded = zoo.load_model(NAME, quality)
    assert loaded.quality == quality
    model.set_quality(quality)
    assert codec.encode_image(loaded, image, quality) == codec.encode_image(
        model, image, quality)


def test_each_quality_routes_to_the_file_of_its_network(tmp_path,
                                                        monkeypatch):
  """The narrow file serves q1-q4 and the wide one q5-q7 (its ladder may
  also hold q4, which it trained beside them and does not serve): listing,
  loading and coding follow the quality to its file."""
  monkeypatch.setattr(zoo, "WEIGHTS_DIR", str(tmp_path))
  tf.keras.utils.set_random_seed(8)
  narrow = create_model(NAME, quality=2, N=8, M=8)
  wide = create_model(NAME, quality=5, N=8, M=12,
                      lmbdas=ladder_lambdas("4,5,6,7"))
  for model, quality in ((narrow, 2), (wide, 5)):
    model.freeze()
    model.set_quality(quality)
    path = zoo.weights_path(NAME, quality)
    zoo.save_weights(model, path, quality, tables=model.coding_tables(),
                     dtype=np.float32)
  assert zoo.weights_path(NAME, 4) == str(tmp_path / f"{NAME}-mse.npz")
  assert zoo.weights_path(NAME, 5) == str(tmp_path / f"{NAME}-mse-N192.npz")
  assert sorted(q for n, _, q in zoo.available_weights()
                if n == NAME) == [0, 1, 2, 3, 4, 5, 6, 7]
  image = random_image(64, 64, seed=2)
  for quality, source in ((4, narrow), (6, wide)):
    loaded = zoo.load_model(NAME, quality)
    assert (loaded.M, loaded.quality) == (source.M, quality)
    source.set_quality(quality)
    data = codec.encode_image(loaded, image, quality)
    assert data == codec.encode_image(source, image, quality)
    np.testing.assert_array_equal(
        codec.decode_bytes(data, model=loaded),
        codec.decode_bytes(data, model=source))


@pytest.mark.parametrize("name", ["mbt2018-mean", NAME])
def test_ste_synthesis_sees_rounded_latents_with_identity_gradient(name):
  """synthesis_quantization="ste": in training g_s gets round(y - mu) + mu
  (what decoding gives it), and the distortion's gradient still reaches g_a
  through the rounding; the default ("noise") gives g_s non-integer offsets."""
  tf.keras.utils.set_random_seed(5)
  model = create_model(name, quality=3, N=8, M=8,
                       synthesis_quantization="ste")
  captured = {}
  entropy_parameters, g_s = model.entropy_parameters, model.g_s

  def spy_parameters(*args):
    captured["scale_indexes"], captured["means"] = entropy_parameters(*args)
    return captured["scale_indexes"], captured["means"]

  def spy_synthesis(y_hat, **kwargs):
    captured["g_s_input"] = y_hat
    return g_s(y_hat, **kwargs)

  model.entropy_parameters, model.g_s = spy_parameters, spy_synthesis
  if name == NAME:
    # Pin the training rung to quality 1 (gain != 1) to undo it below.
    model._rung_indexes = lambda batch, training: tf.zeros([batch], tf.int32)
  # Untrained tiny transforms give |y| << 1; an unnormalised input spreads
  # y over several quantization bins.
  x = tf.constant(random_image(64, 64, seed=2), tf.float32)[None]

  def offsets_from_means():
    seen = captured["g_s_input"]
    if name == NAME:
      seen = seen / model.gains(tf.constant([0]))[1]
    return (seen - captured["means"]).numpy()

  with tf.GradientTape() as tape:
    out = model(x, training=True)
    distortion = tf.reduce_mean(tf.square(out["x_hat"] - x))
  offsets = offsets_from_means()
  np.testing.assert_allclose(offsets, np.round(offsets), atol=1e-4)
  assert np.abs(offsets).max() >= 1  # some latents really were coded
  g_a_grads = tape.gradient(distortion, model.g_a.trainable_variables)
  assert all(float(tf.reduce_max(tf.abs(g))) > 0 for g in g_a_grads)
  model.synthesis_quantization = "noise"
  model(x, training=True)
  offsets = offsets_from_means()
  assert np.abs(offsets - np.round(offsets)).max() > 0.05
  with pytest.raises(ValueError, match="synthesis_quantization"):
    create_model(name, quality=3, N=8, M=8, synthesis_quantization="round")


def test_a_ladder_keeps_compressai_quality_numbers():
  ladder = LAMBDAS["mse"][:6]
  model = create_model(NAME, quality=3, N=8, M=8, lmbdas=ladder)
  assert model.qualities == (1, 2, 3, 4, 5, 6) and model.quality == 3
  model.set_quality(6)
  assert model.lmbda == LAMBDAS["mse"][5] and model.quality == 6
  with pytest.raises(ValueError, match="qualities 1..6, got 7"):
    model.set_quality(7)
  sparse = create_model(NAME, quality=3, N=8, M=8,
                        lmbdas=[LAMBDAS["mse"][q - 1] for q in (1, 3, 5)])
  assert sparse.qualities == (1, 3, 5)
  sparse.set_quality(5)
  assert sparse.lmbda == LAMBDAS["mse"][4]
  with pytest.raises(ValueError, match="not in it"):
    create_model(NAME, quality=3, N=8, M=8, lmbdas=[0.001, 0.0067])
  with pytest.raises(ValueError, match="must increase"):
    create_model(NAME, quality=3, N=8, M=8,
                 lmbdas=[LAMBDAS["mse"][2], LAMBDAS["mse"][0]])


def test_ladder_flag_values():
  assert ladder_lambdas("1,2,3,4,5,6") == LAMBDAS["mse"][:6]
  assert ladder_lambdas([2, 4], "ms-ssim") == (LAMBDAS["ms-ssim"][1],
                                                LAMBDAS["ms-ssim"][3])
  assert ladder_lambdas("0,1") == (0.0005, 0.0018)
  assert ladder_lambdas("0,2", "ms-ssim") == (0.66, 4.58)
  for bad in ("-1,1", "1,9", "3,2", "1,1", "a,b", ""):
    with pytest.raises(ValueError, match="increasing qualities in 0..8"):
      ladder_lambdas(bad)


def _saved_random_ladder(tmp_path, seed):
  """A tiny 4-rung (q1-q4) MSE model with random gains, saved: (model,
  path)."""
  tf.keras.utils.set_random_seed(seed)
  model = create_model(NAME, quality=3, N=8, M=8, lmbdas=LAMBDAS["mse"][:4])
  model.log_gains.assign(tf.random.normal(model.log_gains.shape))
  model.log_inverse_gains.assign(tf.random.normal(model.log_gains.shape))
  path = str(tmp_path / "ladder.npz")
  zoo.save_weights(model, path, 3, dtype=np.float32)
  return model, path


def test_finetuning_onto_a_longer_ladder_keeps_the_trained_rungs(tmp_path):
  """A 4-rung file loads into a 6-rung model: rungs 1-4 unchanged, each new
  rung starts from rung 4's gains scaled by sqrt(lambda / lambda_4)."""
  short, path = _saved_random_ladder(tmp_path, 8)
  long = create_model(NAME, quality=3, N=8, M=8, lmbdas=LAMBDAS["mse"][:6])
  zoo.load_weights(long, path)
  gains, inverse = long.log_gains.numpy(), long.log_inverse_gains.numpy()
  np.testing.assert_array_equal(gains[:4], short.log_gains.numpy())
  np.testing.assert_array_equal(inverse[:4], short.log_inverse_gains.numpy())
  for rung in (4, 5):
    shift = 0.5 * np.log(LAMBDAS["mse"][rung] / LAMBDAS["mse"][3])
    np.testing.assert_allclose(gains[rung], gains[3] + shift, rtol=1e-6)
    np.testing.assert_allclose(inverse[rung], inverse[3] - shift, rtol=1e-6)
  for source, target in zip(short.g_s.trainable_variables,
                            long.g_s.trainable_variables):
    np.testing.assert_array_equal(source.numpy(), target.numpy())
  # The same file into the same ladder is a plain load.
  same = create_model(NAME, quality=3, N=8, M=8, lmbdas=LAMBDAS["mse"][:4])
  zoo.load_weights(same, path)
  np.testing.assert_array_equal(same.log_gains.numpy(),
                                short.log_gains.numpy())


def test_a_q1_q4_file_grows_the_low_rung(tmp_path):
  """configs/mbt2018-mean-vr/mse-q0.flags: the shipped q1-q4 file loads into
  the default q0-q4 ladder, q1-q4 as stored and q0 from q1's gains scaled by
  sqrt(0.0005 / 0.0018); the saved result serves q0 and codes it."""
  short, path = _saved_random_ladder(tmp_path, 10)
  grown = create_model(NAME, quality=1, N=8, M=8)
  assert grown.qualities == (0, 1, 2, 3, 4)
  zoo.load_weights(grown, path)
  gains, inverse = grown.log_gains.numpy(), grown.log_inverse_gains.numpy()
  np.testing.assert_array_equal(gains[1:], short.log_gains.numpy())
  shift = 0.5 * np.log(0.0005 / 0.0018)
  np.testing.assert_allclose(gains[0], gains[1] + shift, rtol=1e-6)
  np.testing.assert_allclose(inverse[0], inverse[1] - shift, rtol=1e-6)
  grown.freeze()
  grown.set_quality(0)
  image = random_image(48, 64, seed=11)
  data = codec.encode_image(grown, image, 0)
  assert Bitstream.from_bytes(data).quality == 0
  np.testing.assert_array_equal(
      codec.decode_bytes(data, model=grown),
      grown.decompress(*grown.compress(image), image.shape[:2]).numpy())
  grown.set_quality(1)
  assert len(data) < len(codec.encode_image(grown, image, 1))


def test_an_mse_ladder_finetunes_for_ms_ssim_by_quality_number(tmp_path):
  """MS-SSIM lambdas (2.40..) share no scale with MSE ones (0.0018..): an MSE
  file's rung q must start the MS-SSIM model's rung q, not the stored rung
  nearest in lambda (which would be the highest for every rung)."""
  mse, path = _saved_random_ladder(tmp_path, 9)
  msssim = create_model(NAME, quality=3, metric="ms-ssim", N=8, M=8,
                        lmbdas=LAMBDAS["ms-ssim"][:4])
  zoo.load_weights(msssim, path)
  np.testing.assert_array_equal(msssim.log_gains.numpy(),
                                mse.log_gains.numpy())
  np.testing.assert_array_equal(msssim.log_inverse_gains.numpy(),
                                mse.log_inverse_gains.numpy())
  # A longer MS-SSIM ladder: rung 5 starts from rung 4, shifted by the
  # MS-SSIM lambdas' ratio.
  longer = create_model(NAME, quality=3, metric="ms-ssim", N=8, M=8,
                        lmbdas=LAMBDAS["ms-ssim"][:5])
  zoo.load_weights(longer, path)
  shift = 0.5 * np.log(LAMBDAS["ms-ssim"][4] / LAMBDAS["ms-ssim"][3])
  np.testing.assert_allclose(longer.log_gains.numpy()[4],
                             mse.log_gains.numpy()[3] + shift, rtol=1e-6)


def test_graft_rungs_takes_only_the_named_rungs_gains(tmp_path):
  base, base_path = _saved_random_ladder(tmp_path, 12)
  tf.keras.utils.set_random_seed(13)
  donor = create_model(NAME, quality=3, N=8, M=8)  # q0-q4, other weights
  donor.log_gains.assign(tf.random.normal(donor.log_gains.shape))
  donor_path = str(tmp_path / "donor.npz")
  zoo.save_weights(donor, donor_path, 3, dtype=np.float32)
  out = str(tmp_path / "grafted.npz")
  zoo.graft_rungs(base_path, donor_path, [0], out)
  grafted = zoo.load_model(path=out, freeze=False)
  assert grafted.qualities == (0, 1, 2, 3, 4)
  np.testing.assert_allclose(grafted.log_gains.numpy()[0],
                             donor.log_gains.numpy()[0], rtol=1e-3)
  np.testing.assert_allclose(grafted.log_gains.numpy()[1:],
                             base.log_gains.numpy(), rtol=1e-3)
  for source, target in zip(base.g_s.trainable_variables,
                            grafted.g_s.trainable_variables):
    np.testing.assert_allclose(target.numpy(), source.numpy(), rtol=1e-3,
                               atol=1e-4)
  assert zoo.read_metadata(out)["grafted"]["qualities"] == [0]
