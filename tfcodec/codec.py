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
from tfcodec.entropy import guard
from tfcodec.io.bitstream import Bitstream, FormatError
from tfcodec.io.images import ImageError, atomic_write, read_image, write_png
from tfcodec.models import MODELS, qualities
from tfcodec.models.base import latent_shape

# Downsampling factor of each latent, for models that do not declare their own

_MODEL_CACHE = {}


def get_model(name, quality, metric="mse", exact_transforms=True):
  """A frozen model with shipped weights, loaded once per process.

  `exact_transforms=False`: g_a / g_s in float32, 2-3x faster; files still
  decode anywhere, but bytes and pixels may differ across machines and
  thread settings in the last bit (see CompressionModel.freeze)."""
  key = (name, int(quality), metric, bool(exact_transforms))
  if key not in _MODEL_CACHE:
    _MODEL_CACHE[key] = zoo.load_model(name, quality, metric,
                                       exact_transforms=exact_transforms)
  return _MODEL_CACHE[key]


# Images with more pixels than one tile are coded in independent square tiles
# of TILE_SIZE pixels (a multiple of every model's stride), so memory stays
# bounded by the tile, not the image: bench/memory.py measured 3.5 GiB peak
# for 8000x6000 in 1024^2 tiles, and 11.3 GiB for 2048x2048 untiled (the
# exact float64 arithmetic costs ~2.5 KB per pixel). Seams are not blended:
# each tile is edge-padded like a small image (bench/memory.py measures the
# cost). Untiled files up to the format's MAX_UNTILED_PIXELS still decode.
TILE_SIZE = 1024
TILE_THRESHOLD = TILE_SIZE * TILE_SIZE


def encode_image(model, image, quality, tile_size=None, refine_steps=0):
  """uint8 HxWx3 -> .tfci bytes.

  `refine_steps`: Adam steps of encoder-side latent refinement per image (or
  tile), 0 for none (tfcodec/refine.py).

  `tile_size`: None tiles only images above TILE_THRESHOLD pixels (in
  TILE_SIZE tiles); 0 never tiles; a positive side forces tiles of that side
  (a multiple of the model's stride).
  """
  image = np.asarray(image, dtype=np.uint8)
  height, width = image.shape[:2]
  if hasattr(model, "set_quality"):
    # A variable-rate model codes at the quality the header will name.
    model.set_quality(quality)
  if tile_size is None:
    tile_size = TILE_SIZE if height * width > TILE_THRESHOLD else 0
  if tile_size and tile_size % model.stride:
    raise ValueError(f"tile size {tile_size} is not a multiple of "
                     f"{model.model_name}'s stride {model.stride}")
  stream = Bitstream(model=model.model_name, quality=int(quality),
                     metric=model.metric, height=height, width=width,
                     strings=[], tile_size=int(tile_size),
                     weights_id=model.weights_id)
  payloads = []
  for top, left, tile_h, tile_w in stream.tile_boxes():
    tile = image[top:top + tile_h, left:left + tile_w]
    strings, shapes = model.compress(tf.constant(tile),
                                     refine_steps=refine_steps)
    # The file does not store latent shapes: the decoder derives them from
    # the size, so a model whose geometry disagrees must not write files.
    shapes = [[int(d) for d in s.numpy()] for s in shapes]
    # The instance's own stride: a TCM built with smaller windows pads to a
    # smaller multiple than its class.
    expected = expected_latent_shapes(model, tile_h, tile_w)
    if shapes != expected:
      raise RuntimeError(f"{model.model_name} produced latent shapes {shapes} "
                         f"for a {tile_h}x{tile_w} image; its stride and "
                         f"latent_factors say {expected}")
    payloads.append([s.numpy() for s in strings])
  if stream.tiled:
    stream.tiles = payloads
  else:
    stream.strings = payloads[0]
  return stream.to_bytes()


def expected_latent_shapes(geometry, height, width):
  """Latent shapes a model (class or instance) produces for an image of this
  size: the shapes the decoder codes with, since files do not store them.

  Computed from `stride`, `shape_names` and each latent's downsampling
  factor only, so with the class a header can be validated before any model
  is built or any weights are loaded.
  """
  padded_h = -(-height // geometry.stride) * geometry.stride
  padded_w = -(-width // geometry.stride) * geometry.stride
  factors = geometry.latent_factors
  shapes = []
  for name in geometry.shape_names:
    if name not in factors:
      raise FormatError(f"{geometry.model_name} does not say how latent "
                        f"{name!r} is downsampled (latent_factors)")
    shapes.append(latent_shape(factors[name], padded_h, padded_w))
  return shapes


def check_stream(stream, model=None):
  """Validates a parsed header against the registry; returns the latent
  shapes of every tile ([[h, w] per latent] per tile, row-major).

  Everything here uses class attributes only: a file is refused before a
  model is built, weights are loaded or a tensor is allocated. When the
  caller already holds the decoding `model`, its own stride is used instead
  (a TCM built with smaller windows pads to a smaller multiple).
  """
  if stream.model not in MODELS:
    raise FormatError(f"model {stream.model!r} is not known to this tfcodec "
                      f"(known: {', '.join(sorted(MODELS))})")
  allowed = qualities(stream.model)
  if stream.quality not in allowed:
    raise FormatError(f"quality {stream.quality} outside "
                      f"{allowed[0]}..{allowed[-1]} of {stream.model}")
  model_cls = MODELS[stream.model]
  geometry = model if model is not None else model_cls
  if stream.tiled and stream.tile_size % geometry.stride:
    raise FormatError(f"tile size {stream.tile_size} is not a multiple of "
                      f"{stream.model}'s stride {geometry.stride}")
  tile_shapes = []
  for index, ((_, _, tile_h, tile_w), strings) in enumerate(
      zip(stream.tile_boxes(), stream.payloads())):
    where = f"tile {index}: " if stream.tiled else ""
    if len(strings) != len(model_cls.string_names):
      raise FormatError(f"{where}{len(strings)} strings, {stream.model} needs "
                        f"{len(model_cls.string_names)}")
    tile_shapes.append(expected_latent_shapes(geometry, tile_h, tile_w))
  return tile_shapes


def _load_for_stream(stream, exact_transforms=True):
  try:
    return get_model(stream.model, stream.quality, stream.metric,
                     exact_transforms)
  except FileNotFoundError as e:
    raise FormatError(str(e)) from e


def decode_bytes(data, model=None, loader=None, exact_transforms=True):
  """.tfci bytes -> uint8 HxWx3. Raises FormatError on an invalid file.

  The header is parsed and validated completely (CRC, bounds, model, latent
  shapes of every tile) before a model is loaded or anything is allocated.
  `model` forces the model to use; `loader(name, quality, metric)` replaces
  the shipped-weights lookup (the fuzzer uses tiny random models).
  """
  stream = Bitstream.from_bytes(data)
  if model is None and loader is not None and stream.model in MODELS:
    # A caller-supplied loader (tests, the fuzzer) may build models whose
    # geometry differs from the registered class (e.g. tiny TCM windows), so
    # the header is checked against the model it returns.
    model = loader(stream.model, stream.quality, stream.metric)
  tile_shapes = check_stream(stream, model)
  if model is None:
    model = _load_for_stream(stream, exact_transforms)
  if model.model_name != stream.model:
    raise FormatError(f"file made by {stream.model}, decoder holds "
                      f"{model.model_name}")
  if stream.weights_id != model.weights_id:
    raise FormatError(
        f"the file was coded with other {stream.model} weights (weights id "
        f"{stream.weights_id:08x}, this decoder has {model.weights_id:08x}): "
        "decode it with the tfcodec version that wrote it")
  if hasattr(model, "set_quality"):
    # A variable-rate network serves only its own rungs of the registry's.
    served = model.qualities
    if stream.quality not in served:
      raise FormatError(f"quality {stream.quality} outside "
                        f"{served[0]}..{served[-1]} of this decoder's "
                        f"{stream.model} network")
    model.set_quality(stream.quality)
  image = np.empty((stream.height, stream.width, 3), np.uint8)
  for (top, left, tile_h, tile_w), strings, shapes in zip(
      stream.tile_boxes(), stream.payloads(), tile_shapes):
    try:
      tile = model.decompress(
          [tf.constant(s) for s in strings],
          [tf.constant(s, tf.int32) for s in shapes],
          tf.constant([tile_h, tile_w], tf.int32))
    except tf.errors.OpError as e:
      raise FormatError(f"entropy-coded data is invalid ({_op_error(e)})") from e
    except UnicodeDecodeError as e:
      # TF raises this instead of the op's error when the error message holds
      # bytes of the damaged string (seen in make fuzz on cheng2020-gmm).
      raise FormatError("entropy-coded data is invalid (the decoder's error "
                        "message held undecodable bytes)") from e
    image[top:top + tile_h, left:left + tile_w] = tile.numpy()
  return image


def _op_error(error):
  """The informative line of a TF op error (graph errors start with a banner)."""
  lines = [line.strip() for line in error.message.splitlines() if line.strip()]
  for line in lines:
    if guard.DAMAGED in line:
      return line[line.index(guard.DAMAGED):].split("\t")[0].rstrip(". ")
  useful = [l for l in lines if not l.startswith("Graph execution error")]
  return (useful or lines or ["unknown error"])[0][:200]


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


def _make_output_dir(output_dir):
  """Creates the output folder, or raises OSError naming it and the reason."""
  try:
    os.makedirs(output_dir, exist_ok=True)
  except OSError as e:
    raise OSError(f"cannot create output directory {output_dir!r}: "
                  f"{e.strerror or e}") from e
  if not os.access(output_dir, os.W_OK):
    raise OSError(f"output directory {output_dir!r} is not writable")


def _unexpected(e):
  """One line for an error no check anticipated (never a traceback)."""
  text = str(e).strip().splitlines()
  return f"unexpected {type(e).__name__}: {text[0] if text else ''}"


def encode_folder(input_dir, output_dir, model_name, quality, metric="mse",
                  out=sys.stdout, model=None, exact_transforms=True,
                  refine_steps=0):
  """Encodes every image; one bad file is reported and skipped.

  `refine_steps` > 0 refines each image's latents (tfcodec/refine.py).

  `model` overrides the shipped weights (tests use tiny random models).
  """
  files = _list_files(input_dir, (".png", ".jpg", ".jpeg", ".bmp", ".ppm",
                                  ".tif", ".tiff", ".webp"))
  if model_name not in MODELS:
    raise ValueError(f"unknown model {model_name!r}; registered models: "
                     f"{', '.join(sorted(MODELS))}")
  _make_output_dir(output_dir)
  model = model or get_model(model_name, quality, metric, exact_transforms)
  if refine_steps and not model.supports_refinement:
    raise ValueError(f"{model_name} does not support latent refinement")
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
      data = encode_image(model, image, quality, refine_steps=refine_steps)
      stem = os.path.splitext(fname)[0]
      atomic_write(os.path.join(output_dir, stem + ".tfci"), data)
      bpp = len(data) * 8 / (image.shape[0] * image.shape[1])
      result = Result(fname, True, bpp=bpp, seconds=time.time() - start)
      print(f"{fname}: {image.shape[1]}x{image.shape[0]}, {len(data)} bytes, "
            f"{bpp:.4f} bpp, {result.seconds:.2f} s", file=out)
    except (ImageError, OSError, ValueError, MemoryError) as e:
      result = Result(fname, False, message=_one_line(e, path))
      print(f"error: {fname}: {result.message}", file=out)
    except Exception as e:  # noqa: BLE001 (one file must not stop the rest)
      result = Result(fname, False, message=_unexpected(e))
      print(f"error: {fname}: {result.message}", file=out)
    results.append(result)
  good = [r for r in results if r.ok]
  if good:
    print(f"mean: {np.mean([r.bpp for r in good]):.4f} bpp over {len(good)} "
          f"image(s) ({model_name} {metric} q{quality})", file=out)
  return results


def decode_folder(input_dir, output_dir, reference_dir=None, out=sys.stdout,
                  loader=None, exact_transforms=True):
  """Decodes every .tfci file; one bad file is reported and skipped.

  `loader(name, quality, metric)` overrides the shipped weights (tests).
  """
  from tfcodec import metrics
  files = _list_files(input_dir, (".tfci",))
  _make_output_dir(output_dir)
  results = []
  for fname in files:
    path = os.path.join(input_dir, fname)
    stem = os.path.splitext(fname)[0]
    start = time.time()
    try:
      with open(path, "rb") as f:
        data = f.read()
      image = decode_bytes(data, loader=loader,
                           exact_transforms=exact_transforms)
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
    except (FormatError, ImageError, OSError, ValueError, MemoryError) as e:
      result = Result(fname, False, message=_one_line(e, path))
      print(f"error: {fname}: {result.message}", file=out)
    except Exception as e:  # noqa: BLE001 (one file must not stop the rest)
      result = Result(fname, False, message=_unexpected(e))
      print(f"error: {fname}: {result.message}", file=out)
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


def _one_line(error, path):
  """The error's first line, without a leading copy of the file's path (the
  caller prints the file name once)."""
  lines = str(error).strip().splitlines() or [type(error).__name__]
  text = lines[0]
  if text.startswith(path + ": "):
    text = text[len(path) + 2:]
  if isinstance(error, MemoryError):
    text = "out of memory" + (f" ({text})" if text != "MemoryError" else "")
  return text


def _find_reference(directory, stem):
  for ext in (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp"):
    for candidate in (stem + ext, stem + ext.upper()):
      path = os.path.join(directory, candidate)
      if os.path.exists(path):
        return path
  return None
