"""Bounded-time, verified range decoding (tfcodec.entropy.guard)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tfcodec.entropy.models import FactorizedPrior, GaussianConditional

# A one-byte y string that sends tfc's own decoder into its endless Elias-gamma
# prefix loop (found by a random search over short strings, scale index 5).
HANG_STRING = "0c"
HANG_SCALE_INDEX = 5

_SCRIPT = textwrap.dedent("""
    import sys
    import tensorflow as tf
    from tensorflow_compression.python.ops import gen_ops
    from tfcodec.entropy.models import GaussianConditional
    conditional = GaussianConditional()
    conditional.freeze()
    string = tf.constant([bytes.fromhex(sys.argv[1])])
    indexes = tf.fill([1, 4, 4, 8], int(sys.argv[2]))
    if sys.argv[3] == "tfc":
      handle = gen_ops.create_range_decoder(string, conditional.coder.cdf)
      gen_ops.entropy_decode_index(handle, indexes, [4, 4, 8], tf.int32)
      print("returned")
    else:
      try:
        conditional.decompress(string, indexes)
        print("returned")
      except tf.errors.InvalidArgumentError as error:
        print("error:", error.message.splitlines()[0])
""")


def _run(mode, timeout):
  return subprocess.run(
      [sys.executable, "-c", _SCRIPT, HANG_STRING, str(HANG_SCALE_INDEX), mode],
      capture_output=True, text=True, timeout=timeout)


def test_damaged_string_that_hangs_tfc_gets_a_clean_error():
  with pytest.raises(subprocess.TimeoutExpired):
    _run("tfc", timeout=20)  # the case is a real hang of the unguarded op
  result = _run("guarded", timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "error: entropy-coded string is damaged" in result.stdout


def _frozen_conditional():
  conditional = GaussianConditional()
  conditional.freeze()
  return conditional


def test_guarded_decode_equals_tfc_including_escaped_values():
  conditional = _frozen_conditional()
  rng = np.random.default_rng(0)
  indexes = rng.integers(0, 64, size=(1, 6, 5, 8)).astype(np.int32)
  means = rng.normal(size=indexes.shape).astype(np.float32)
  latent = means + rng.normal(scale=3., size=indexes.shape).astype(np.float32)
  latent[0, 0, 0, :4] = [5000.4, -7000.2, 300., -1.]  # escape (gamma) codes
  strings = conditional.compress(latent, indexes, means)
  ours = conditional.decompress(strings, indexes, means).numpy()
  tfcs = conditional.coder.decompress(strings, indexes, loc=means).numpy()
  np.testing.assert_array_equal(ours, tfcs)
  np.testing.assert_array_equal(np.round(ours - means), np.round(latent - means))


def test_factorized_guarded_decode_equals_tfc():
  prior = FactorizedPrior(4)
  prior.freeze()
  rng = np.random.default_rng(1)
  latent = rng.normal(scale=4., size=(1, 3, 7, 4)).astype(np.float32)
  latent[0, 0, 0, 0] = 9000.
  strings = prior.compress(latent)
  ours = prior.decompress(strings, [3, 7]).numpy()
  np.testing.assert_array_equal(ours, prior.coder.decompress(strings, [3, 7]))
  assert ours[0, 0, 0, 0] == pytest.approx(9000., abs=1.)


@pytest.mark.parametrize("damage", ["extended", "flipped"])
def test_damaged_strings_do_not_pass_the_reencode_check(damage):
  conditional = _frozen_conditional()
  rng = np.random.default_rng(2)
  indexes = np.full((1, 8, 8, 4), 20, np.int32)
  latent = rng.normal(scale=2., size=indexes.shape).astype(np.float32)
  string = conditional.compress(latent, indexes).numpy()[0]
  if damage == "extended":
    string += b"\x5a"
  else:
    string = string[:3] + bytes([string[3] ^ 0x10]) + string[4:]
  with pytest.raises(tf.errors.InvalidArgumentError, match="damaged"):
    conditional.decompress(tf.constant([string]), indexes)


def test_encoder_refuses_values_tfc_cannot_code():
  conditional = _frozen_conditional()
  indexes = np.zeros((1, 2, 2, 1), np.int32)
  latent = np.zeros((1, 2, 2, 1), np.float32)
  latent[0, 0, 0, 0] = 2. ** 30  # tfc's encoder would never return
  with pytest.raises(tf.errors.InvalidArgumentError, match="too large"):
    conditional.compress(latent, indexes)
