"""Distortion of a decoded 8-bit image: PSNR, MS-SSIM, MS-SSIM in dB.

An evaluation scores thousands of decoded images (6 codecs x ~10 settings x
24 Kodak images), and `tfcodec.metrics.ms_ssim` (tf.image, an 11x11
depthwise convolution) takes ~2 s per 768x512 image on a shared 2-core
machine. `ms_ssim` here computes the same quantity as tf.image.ssim_multiscale
(same Gaussian window, constants, 2x2 average-pool pyramid, ReLU, per-channel
weighted product, mean over channels) with a separable filter, ~5x faster;
tests/test_eval.py checks it against `tfcodec.metrics.ms_ssim`. Images too
small for five scales go to `tfcodec.metrics.ms_ssim`, which pads them.
"""

import math

import numpy as np

from tfcodec import metrics

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
FILTER_SIZE = 11
FILTER_SIGMA = 1.5
K1, K2 = 0.01, 0.03
MAX_VAL = 255.
# Smallest side that survives 4 halvings with an 11-tap window left over.
MIN_SIDE = (FILTER_SIZE - 1) * 2 ** (len(WEIGHTS) - 1) + 1


def psnr(reference, decoded):
  """PSNR over all RGB samples, peak 255 (the project's definition)."""
  return metrics.psnr(reference, decoded)


def ms_ssim_db(value):
  """MS-SSIM as the field plots it: -10 log10(1 - MS-SSIM); inf at 1."""
  return float("inf") if value >= 1 else float(-10 * math.log10(1 - value))


def _gaussian_taps():
  coords = np.arange(FILTER_SIZE, dtype=np.float64) - (FILTER_SIZE - 1) / 2
  taps = np.exp(-coords ** 2 / (2 * FILTER_SIGMA ** 2))
  return taps / taps.sum()


_TAPS = _gaussian_taps()


def _filter_valid(x, axis):
  """Correlates with the Gaussian along `axis`, VALID borders (no padding).

  The taps are symmetric, so mirrored pairs are summed before the multiply
  (six multiplies per output sample instead of eleven), into reused buffers.
  """
  n = x.shape[axis] - FILTER_SIZE + 1
  half = FILTER_SIZE // 2
  lead = (slice(None),) * axis

  def window(k):
    return x[lead + (slice(k, k + n),)]

  taps = _TAPS.astype(x.dtype)
  out = np.multiply(window(half), taps[half])
  pair = np.empty_like(out)
  for k in range(half):
    np.add(window(k), window(FILTER_SIZE - 1 - k), out=pair)
    pair *= taps[k]
    out += pair
  return out


def _blur(x):
  """2-D Gaussian (separable) over axes 1 and 2 of a KxHxWxC stack."""
  return _filter_valid(_filter_valid(x, 1), 2)


def _ssim_terms(a, b):
  """Per-channel mean SSIM and mean contrast-structure term at one scale."""
  c1 = (K1 * MAX_VAL) ** 2
  c2 = (K2 * MAX_VAL) ** 2
  # SSIM needs only E[a], E[b], E[a^2 + b^2] and E[ab]: four local means,
  # stacked so that they share each filter pass.
  mu_a, mu_b, e_sq, e_ab = _blur(np.stack([a, b, a * a + b * b, a * b]))
  num0 = 2 * mu_a * mu_b
  den0 = mu_a ** 2 + mu_b ** 2
  luminance = (num0 + c1) / (den0 + c1)
  cs = (2 * e_ab - num0 + c2) / (e_sq - den0 + c2)
  return (luminance * cs).mean(axis=(0, 1)), cs.mean(axis=(0, 1))


def _halve(x):
  """2x2 average pooling; an odd side is first extended by mirroring its
  last row/column, as tf.image.ssim_multiscale does."""
  h, w = x.shape[:2]
  if h % 2 or w % 2:
    x = np.pad(x, ((0, h % 2), (0, w % 2), (0, 0)), mode="symmetric")
  h, w = x.shape[:2]
  return x.reshape(h // 2, 2, w // 2, 2, -1).mean(axis=(1, 3))


def ms_ssim(reference, decoded, dtype=np.float64):
  """MS-SSIM (RGB, 5 scales, Wang et al. 2003 weights), peak 255.

  float64 by default: tf.image works in float32, where E[x^2] - E[x]^2
  loses ~1e-4 of MS-SSIM on near-lossless images (>45 dB). `dtype=np.float32`
  reproduces tf.image's value and exists so tests can show the algorithms
  are the same.
  """
  a = np.asarray(reference, dtype)
  b = np.asarray(decoded, dtype)
  if a.shape != b.shape:
    raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
  if min(a.shape[:2]) < MIN_SIDE:
    return metrics.ms_ssim(reference, decoded)
  factors = []
  for scale in range(len(WEIGHTS)):
    if scale:
      a, b = _halve(a).astype(dtype), _halve(b).astype(dtype)
    ssim, cs = _ssim_terms(a, b)
    factors.append(np.maximum(cs, 0.))
  factors[-1] = np.maximum(ssim, 0.)
  per_channel = np.prod([f ** w for f, w in zip(factors, WEIGHTS)], axis=0)
  return float(per_channel.mean())
