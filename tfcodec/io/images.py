"""Reading and writing images: mode checks, RGB conversion, atomic writes."""

import os
import tempfile
import warnings

import numpy as np
from PIL import Image


class ImageError(ValueError):
  """The file is not an image tfcodec can code (the message says why)."""


# Modes converted to RGB with a warning; anything else is refused.
_CONVERTIBLE = {"RGBA": "alpha channel dropped", "LA": "grayscale + alpha",
                "L": "grayscale", "P": "palette", "PA": "palette + alpha"}


def read_image(path):
  """uint8 HxWx3 array. RGBA/grayscale/palette become RGB with a warning."""
  if os.path.isfile(path) and os.path.getsize(path) == 0:
    # PIL only says "cannot identify image file" here, which hides the cause.
    raise ImageError(f"{path}: cannot read image (empty file, 0 bytes)")
  try:
    with Image.open(path) as im:
      im.load()
      mode = im.mode
      if mode == "RGB":
        rgb = im
      elif mode in _CONVERTIBLE:
        warnings.warn(f"{path}: {mode} image ({_CONVERTIBLE[mode]}) "
                      "converted to RGB")
        rgb = im.convert("RGBA").convert("RGB") if "A" in mode or mode == "P" \
            else im.convert("RGB")
      else:
        raise ImageError(f"{path}: unsupported image mode {mode!r} (8-bit RGB, "
                         "RGBA, grayscale or palette images only)")
      array = np.asarray(rgb, dtype=np.uint8)
  except ImageError:
    raise
  except FileNotFoundError:
    raise
  except Exception as e:  # PIL raises many types for broken files.
    raise ImageError(f"{path}: cannot read image ({e})") from e
  if array.ndim != 3 or array.shape[2] != 3 or array.size == 0:
    raise ImageError(f"{path}: decoded to shape {array.shape}, expected HxWx3")
  return array


def atomic_write(path, data):
  """Writes bytes to a temp file next to `path`, then renames it into place."""
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_png(path, array):
  import io
  buffer = io.BytesIO()
  Image.fromarray(np.asarray(array, dtype=np.uint8), "RGB").save(buffer, "PNG")
  atomic_write(path, buffer.getvalue())
