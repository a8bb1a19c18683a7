"""Image <-> .tfci bytes, and folder-level encode/decode used by the CLIs.

  encode: image (uint8 HxWx3) -> model.compress -> Bitstream -> bytes
  decode: bytes -> Bitstream (magic, version, CRC checked) -> the model named
          in the header, with its shipped weights -> model.decompress -> image
"""

import dataclasses
import os
import sys
import time
import warnings

import numpy as np
import tensorflow as tf

from tfcodec import zoo
from tfcodec.io.bitstream import Bitstream, FormatError
from tfcodec.io.images import ImageError, atomic_write, read_image, write_png
from tfcodec.models import MODELS

_MODEL_CACHE = {}


def get_model(name, quality, metric="mse"):
  """A frozen model with shipped weights, loaded once per process."""
  key = (name, int(quality), metric)
  if key not in _MODEL_CACHE:
    _MODEL_CACHE[key] = zoo.load_model(name, quality, metric)
  return _MODEL_CACHE[key]


def encode_image(model, image, quality):
  """uint8 HxWx3 -> .tfci bytes."""
  image = np.asarray(image, dtype=np.uint8)
  strings, shapes = model.compress(tf.constant(image))
  return Bitstream(
      model=model.model_name, quality=int(quality), metric=model.metric,
      height=image.shape[0], width=image.shape[1],
      shapes=[[int(d) for d in s.numpy()] for s in shapes],
      strings=[s.numpy() for s in strings]).to_bytes()


def _expected_shapes(model, height, width):
  """Latent shapes a model produces for an image of this size."""
  padded_h = -(-height // model.stride) * model.stride
  padded_w = -(-width // model.stride) * model.stride
  shapes = []
  for name in model.shape_names:
    factor = {"y": 16, "z": 64}[name]
    shapes.append([padded_h // factor, padded_w // factor])
  return shapes


def decode_bytes(data, model=None):
  """.tfci bytes -> uint8 HxWx3. Raises FormatError on an invalid file."""
  stream = Bitstream.from_bytes(data)
  if stream.model not in MODELS:
    raise FormatError(f"model {stream.model!r} is not known to this tfcodec "
                      f"(known: {', '.join(sorted(MODELS))})")
  if model is None:
    try:
      model = get_model(stream.model, stream.quality, stream.metric)
    except FileNotFoundError as e:
      raise FormatError(str(e)) from e
  expected = _expected_shapes(model, stream.height, stream.width)
  if stream.shapes != expected:
    raise FormatError(f"latent shapes {stream.shapes} do not match a "
                      f"{stream.height}x{stream.width} image (expected {expected})")
  if len(stream.strings) != len(model.string_names):
    raise FormatError(f"{len(stream.strings)} strings, {stream.model} needs "
                      f"{len(model.string_names)}")
  try:
    image = model.decompress(
        [tf.constant(s) for s in stream.strings],
        [tf.constant(s, tf.int32) for s in stream.shapes],
        tf.constant([stream.height, stream.width], tf.int32))
  except tf.errors.OpError as e:
    raise FormatError(f"entropy-coded data is invalid ({e.message.splitlines()[0]})") from e
  return image.numpy()


# -- folder-level operations (encoder.py / decoder.py) ------------------------

@dataclasses.dataclass
class Result:
  name: str
  ok: bool
  message: str = ""
  bpp: float = float("nan")
  psnr: float = float("nan")
  ms_ssim: float = float("nan")
  seconds: float = 0.


def _list_files(directory, extensions):
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"input directory {directory!r} does not exist")
  return sorted(f for f in os.listdir(directory)
                if f.lower().endswith(extensions) and not f.startswith("."))


def encode_folder(input_dir, output_dir, model_name, quality, metric="mse",
                  out=sys.stdout):
  """Encodes every image; one bad file is reported and skipped."""
  files = _list_files(input_dir, (".png", ".jpg", ".jpeg", ".bmp", ".ppm",
                                  ".tif", ".tiff", ".webp"))
  os.makedirs(output_dir, exist_ok=True)
  model = get_model(model_name, quality, metric)
  results = []
  for fname in files:
    path = os.path.join(input_dir, fname)
    start = time.time()
    try:
      with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = read_image(path)
      for w in caught:
        print(f"warning: {w.message}", file=out)
      data = encode_image(model, image, quality)
      stem = os.path.splitext(fname)[0]
      atomic_write(os.path.join(output_dir, stem + ".tfci"), data)
      bpp = len(data) * 8 / (image.shape[0] * image.shape[1])
      result = Result(fname, True, bpp=bpp, seconds=time.time() - start)
      print(f"{fname}: {image.shape[1]}x{image.shape[0]}, {len(data)} bytes, "
            f"{bpp:.4f} bpp, {result.seconds:.2f} s", file=out)
    except (ImageError, OSError, ValueError) as e:
      result = Result(fname, False, message=str(e))
      print(f"error: {fname}: {e}", file=out)
    results.append(result)
  good = [r for r in results if r.ok]
  if good:
    print(f"mean: {np.mean([r.bpp for r in good]):.4f} bpp over {len(good)} "
          f"image(s) ({model_name} {metric} q{quality})", file=out)
  return results


def decode_folder(input_dir, output_dir, reference_dir=None, out=sys.stdout):
  """Decodes every .tfci file; one bad file is reported and skipped."""
  from tfcodec import metrics
  files = _list_files(input_dir, (".tfci",))
  os.makedirs(output_dir, exist_ok=True)
  results = []
  for fname in files:
    path = os.path.join(input_dir, fname)
    stem = os.path.splitext(fname)[0]
    start = time.time()
    try:
      with open(path, "rb") as f:
        data = f.read()
      image = decode_bytes(data)
      write_png(os.path.join(output_dir, stem + ".png"), image)
      result = Result(fname, True, bpp=len(data) * 8 / image[..., 0].size,
                      seconds=time.time() - start)
      line = f"{fname}: {image.shape[1]}x{image.shape[0]}, {result.bpp:.4f} bpp"
      if reference_dir:
        ref = _find_reference(reference_dir, stem)
        if ref is None:
          line += " (no reference image found)"
        else:
          reference = read_image(ref)
          if reference.shape != image.shape:
            line += f" (reference {ref} has shape {reference.shape})"
          else:
            result.psnr = metrics.psnr(reference, image)
            result.ms_ssim = metrics.ms_ssim(reference, image)
            line += f", PSNR {result.psnr:.2f} dB, MS-SSIM {result.ms_ssim:.4f}"
      print(line + f", {result.seconds:.2f} s", file=out)
    except (FormatError, ImageError, OSError, ValueError) as e:
      result = Result(fname, False, message=str(e))
      print(f"error: {fname}: {e}", file=out)
    results.append(result)
  good = [r for r in results if r.ok]
  if good:
    line = f"mean: {np.mean([r.bpp for r in good]):.4f} bpp"
    scored = [r for r in good if not np.isnan(r.psnr)]
    if scored:
      line += (f", PSNR {np.mean([r.psnr for r in scored]):.2f} dB, MS-SSIM "
               f"{np.mean([r.ms_ssim for r in scored]):.4f}")
    print(line + f" over {len(good)} image(s)", file=out)
  return results


def _find_reference(directory, stem):
  for ext in (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp"):
    for candidate in (stem + ext, stem + ext.upper()):
      path = os.path.join(directory, candidate)
      if os.path.exists(path):
        return path
  return None
