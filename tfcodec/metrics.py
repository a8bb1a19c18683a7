"""Distortion metrics on 8-bit RGB images, as the field reports them."""

import numpy as np
import tensorflow as tf


def psnr(reference, decoded):
  """PSNR in dB over all RGB samples (peak 255); inf for identical images."""
  a = np.asarray(reference, np.float64)
  b = np.asarray(decoded, np.float64)
  mse = np.mean((a - b) ** 2)
  return float("inf") if mse == 0 else float(10 * np.log10(255. ** 2 / mse))


def ms_ssim(reference, decoded):
  """MS-SSIM (RGB, 5 scales, Wang et al. 2003 weights) via tf.image.

  Images smaller than 161 px on a side (too small for 5 scales of an 11x11
  window) are edge-padded, which is what is needed to give them a value at all.
  """
  a = tf.convert_to_tensor(np.asarray(reference, np.float32))[None]
  b = tf.convert_to_tensor(np.asarray(decoded, np.float32))[None]
  min_side = 161
  h, w = a.shape[1], a.shape[2]
  if h < min_side or w < min_side:
    ph, pw = max(0, min_side - h), max(0, min_side - w)
    a = tf.pad(a, [[0, 0], [0, ph], [0, pw], [0, 0]], mode="SYMMETRIC") if (
        ph <= h and pw <= w) else _edge_pad(a, min_side)
    b = tf.pad(b, [[0, 0], [0, ph], [0, pw], [0, 0]], mode="SYMMETRIC") if (
        ph <= h and pw <= w) else _edge_pad(b, min_side)
  return float(tf.image.ssim_multiscale(a, b, 255.)[0])


def _edge_pad(x, size):
  h, w = x.shape[1], x.shape[2]
  rows = tf.minimum(tf.range(max(h, size)), h - 1)
  cols = tf.minimum(tf.range(max(w, size)), w - 1)
  return tf.gather(tf.gather(x, rows, axis=1), cols, axis=2)
