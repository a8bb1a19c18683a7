"""A bounded fuzz run of the decoder (make fuzz runs 10,000+ cases).

The worker subprocess decodes with the same tiny random models as the rest
of the suite, so the run does not depend on which weights ship.
"""

import io
import struct

import pytest

from tfcodec import fuzz
from tfcodec.io.bitstream import Bitstream


FAST_MODELS = ("bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean")


def test_every_strategy_changes_a_seed(tiny_models):
  # Seeds of the fast architectures only: encoding three files with each of
  # the twelve tiny models took ~370 s of make test; the mutators do not
  # care which model wrote the bytes (make fuzz seeds with every model).
  import random
  fast = {name: tiny_models[name] for name in FAST_MODELS}
  seeds = fuzz.seed_bitstreams(fast)
  assert len(seeds) == 3 * len(fast)
  assert any(Bitstream.from_bytes(s).tiled for s in seeds)
  rng = random.Random(1)
  for name, (mutator, _) in sorted(fuzz.STRATEGIES.items()):
    changed = sum(mutator(rng, seed, seeds) != seed for seed in seeds)
    assert changed > 0, name


def test_bounded_fuzz_run_has_no_crash_hang_or_traceback(tiny_models,
                                                         tiny_snapshots):
  log = io.StringIO()
  # Seeds from the architectures whose decode takes milliseconds: the
  # wavefront context models and TCM take seconds per tiny file, which 2,000
  # cases cannot afford in make test (make fuzz covers every model).
  fast = {name: tiny_models[name] for name in FAST_MODELS}
  counts, by_strategy, seconds, starts = fuzz.run_fuzz(
      2000, seed=0, timeout=30, snapshot_dir=tiny_snapshots, max_side=256,
      log=log, models=fast)
  assert counts["uncaught"] == 0 and counts["crash"] == 0, log.getvalue()
  assert sum(counts.values()) == 2000
  # Both outcomes occur: header damage is caught, and mutations that keep a
  # consistent header (CRC recomputed) reach the range decoder and decode.
  assert counts["error"] > 0 and counts["decoded"] > 0
  assert set(by_strategy) == set(fuzz.STRATEGIES)
  if counts["hang"]:
    # Known open problem (README, Reliability): tfc's range decoder can spin
    # on some damaged strings whose CRC was recomputed. Reported, not hidden;
    # this turns into a pass once the decoder is guarded.
    pytest.xfail(f"{counts['hang']} hang(s) in tfc's range decoder: "
                 f"{log.getvalue().strip()}")
  assert starts == 1


# make fuzz case 1162 (byte edits of a tiny cheng2020-gmm file): TF raised
# UnicodeDecodeError instead of the op's error, which escaped decode_bytes.
_UNDECODABLE_ERROR_CASE = (
    "54464349010d6368656e67323032302d676d6d01000000002800000038020200"
    "0000040000000402000000010000000102000000ec0e0e101e0f0f1e0e0e160d"
    "7f09fff1000cfff1ffe201bbfe1dfe5ffff0000afff0fff0fff30024fd19fff1"
    "000afff100aff873f5f0082d0508001cfe8c020c02c002b1ffd8003fff00006f"
    "ff87ff7ffe6001a001800180ffee0020ffd2ffd2ffdc002d26ac27fd9c0df7dd"
    "14199be40fdac01e440c000f07d1cd2ac558c54c2b6201a0fefd0737f793f600"
    "f82e073807d20738ffaa0237fb9012944f9cb064bf28e6307dcfef947cccec36"
    "7cdb13d20027fffffe4ffdf4bbae3c1a67087063d426007e26d5000c0011d929"
    "ecd70cc6109bb8000a000b53b0730079d04cb6ffa24d0009000702e1708ca5ff"
    "ef0000000698bf191ca9175cc1e631"
)


def _as_current_version(data, weights_id):
  """The version 1 file the fuzzer found, rewritten in today's layout with
  the tiny model's weights id: its strings are kept byte for byte. The case
  is a mixture (cheng2020-gmm) string, which does not use the Gaussian scale
  table whose indexing changed in version 3, so it decodes the same way."""
  assert data[:5] == b"TFCI\x01"
  end = 6 + data[5]
  name = data[6:end].decode("ascii")
  quality, metric, height, width = struct.unpack(">BBII", data[end:end + 10])
  pos = end + 10
  for _ in range(data[pos]):  # latent shapes: u8 rank, rank x u32
    pos += 1 + 4 * data[pos + 1]
  pos += 1
  strings = []
  for _ in range(data[pos]):
    length = struct.unpack(">I", data[pos + 1:pos + 5])[0]
    strings.append(data[pos + 5:pos + 5 + length])
    pos += 4 + length
  assert pos + 1 == len(data) - 4
  return Bitstream(name, quality, ("mse", "ms-ssim")[metric], height, width,
                   strings, weights_id=weights_id).to_bytes()


def test_op_error_with_undecodable_message_is_a_format_error(tiny_models):
  from tfcodec import codec
  from tfcodec.io.bitstream import FormatError
  data = _as_current_version(bytes.fromhex(_UNDECODABLE_ERROR_CASE),
                       tiny_models["cheng2020-gmm"].weights_id)
  with pytest.raises(FormatError, match="entropy-coded data is invalid"):
    codec.decode_bytes(data, loader=lambda name, quality, metric: tiny_models[name])
