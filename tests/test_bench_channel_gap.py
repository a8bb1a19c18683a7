"""bench/channel_gap.py's measurements: the YCbCr split and the rate match."""

import importlib.util
import os

import numpy as np

from conftest import ROOT, random_image

_spec = importlib.util.spec_from_file_location(
    "channel_gap", os.path.join(ROOT, "bench", "channel_gap.py"))
channel_gap = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(channel_gap)


def test_ycbcr_puts_grey_on_the_chroma_midpoint_and_white_at_255():
  grey = np.full((2, 3, 3), 77, np.uint8)
  y, cb, cr = channel_gap.ycbcr(grey)
  np.testing.assert_allclose(y, 77, atol=1e-9)
  np.testing.assert_allclose(cb, 128, atol=1e-9)
  np.testing.assert_allclose(cr, 128, atol=1e-9)
  white = np.full((1, 1, 3), 255, np.uint8)
  np.testing.assert_allclose(channel_gap.ycbcr(white)[0], 255, atol=1e-9)


def test_a_pure_blue_error_shows_in_cb_more_than_in_y():
  image = random_image(16, 16, seed=1)
  decoded = image.copy()
  decoded[..., 2] = np.clip(decoded[..., 2].astype(int) + 8, 0, 255)
  y, cb, cr, rgb = channel_gap.channel_psnrs(image, decoded)
  # Blue enters Cb with weight 0.5, Y with 0.114 and Cr with 0.0813: the
  # PSNRs differ by 20 log10 of the weights' ratios (up to the clipping).
  assert abs((y - cb) - 20 * np.log10(0.5 / 0.114)) < 0.5
  assert abs((cr - cb) - 20 * np.log10(0.5 / 0.081312)) < 0.5
  assert cr > y > cb and np.isfinite(rgb)
  assert channel_gap.channel_psnrs(image, image)[0] == float("inf")


def test_webp_at_picks_the_size_closest_to_the_target():
  image = random_image(32, 48, seed=2)
  low_bits, _ = channel_gap.webp_at(image, 0)
  high_bits, decoded = channel_gap.webp_at(image, 10 ** 9)
  assert low_bits < high_bits and decoded.shape == image.shape
  middle = (low_bits + high_bits) // 2
  bits, _ = channel_gap.webp_at(image, middle)
  assert low_bits < bits < high_bits
