"""Measuring a codec on a folder of images: real files, 8-bit output.

Every codec (our models through `ModelCodec`, the classical ones in
baselines.py) goes through the same loop, so the numbers are comparable:
encode to a complete file, bpp = 8 x len(file) / (H x W), decode, then PSNR and
MS-SSIM of the decoded 8-bit RGB against the original. Per setting, the
reported value is the mean over images of each per-image number (PSNR is
averaged in dB, as CompressAI does). Times are wall-clock seconds per image
for encode and decode, after one untimed warm-up image per setting (the first
call of a TensorFlow model traces graphs and would otherwise be counted).
"""

import os
import platform
import sys
import time
import warnings

import numpy as np

from tfcodec.eval import quality
from tfcodec.eval import results as rd

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff",
                    ".webp")


class Progress:
  """A one-line progress bar on stderr.

  On a terminal it redraws in place; in a log (not a TTY) it prints a line
  every 10% so the log stays short.
  """

  def __init__(self, total, enabled=True, stream=None, width=28):
    self.total = max(1, int(total))
    self.done = 0
    self.enabled = enabled
    self.stream = stream or sys.stderr
    self.width = width
    self.start = time.time()
    self._last_decile = -1
    self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

  def step(self, label=""):
    self.done += 1
    if not self.enabled:
      return
    fraction = min(1., self.done / self.total)
    elapsed = time.time() - self.start
    eta = elapsed / fraction * (1 - fraction) if fraction else 0.
    filled = int(round(self.width * fraction))
    bar = "#" * filled + "-" * (self.width - filled)
    line = (f"[{bar}] {self.done}/{self.total} {elapsed:5.0f}s "
            f"eta {eta:4.0f}s {label}")
    if self._tty:
      self.stream.write("\r" + line[:110].ljust(110))
      self.stream.flush()
    else:
      decile = int(fraction * 10)
      if decile != self._last_decile:
        self._last_decile = decile
        self.stream.write(line + "\n")
        self.stream.flush()

  def close(self):
    if self.enabled and self._tty:
      self.stream.write("\n")
      self.stream.flush()


def load_images(folder, limit=None, out=sys.stderr):
  """[(file name, uint8 HxWx3)] for the images in `folder`, sorted by name."""
  from tfcodec.io.images import read_image
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"image folder {folder!r} does not exist")
  names = sorted(f for f in os.listdir(folder)
                 if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."))
  if limit:
    names = names[:limit]
  images = []
  for name in names:
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always")
      images.append((name, read_image(os.path.join(folder, name))))
    for w in caught:
      print(f"warning: {w.message}", file=out)
  if not images:
    raise FileNotFoundError(f"no images in {folder!r}")
  return images


class ModelCodec:
  """One of our architectures at several qualities, behind the same
  encode/decode interface as the baselines. Bytes are complete .tfci files
  (header, latent shapes, CRC); decoding reads the model from the header."""
  setting_name = "quality"

  def __init__(self, name, metric, qualities, loader=None, refine_steps=0):
    from tfcodec import codec
    self.name, self.metric = name, metric
    self.refine_steps = int(refine_steps)
    # Refined files are another encoder of the same decoder: their own curve.
    suffix = f"-refine{self.refine_steps}" if self.refine_steps else ""
    self.key = f"tfcodec-{name}-{metric}{suffix}"
    self.label = f"tfcodec {name} ({metric})" + (
        f", {self.refine_steps} refinement steps" if self.refine_steps else "")
    self.settings = tuple(int(q) for q in qualities)
    self.info = {"model": name, "metric": metric}
    if self.refine_steps:
      self.info["refine_steps"] = self.refine_steps
    self._loader = loader or codec.get_model

  def unavailable(self):
    return None

  def description(self):
    import tfcodec
    refined = (f"; latents refined per image ({self.refine_steps} Adam "
               "steps, tfcodec/refine.py)" if self.refine_steps else "")
    return (f"tfcodec {tfcodec.__version__} {self.name}, trained for "
            f"{self.metric}, shipped float16 weights; complete .tfci files "
            "(header and CRC included), range coding on CPU" + refined)

  def encode(self, image, setting):
    from tfcodec import codec
    model = self._loader(self.name, int(setting), self.metric)
    return codec.encode_image(model, image, int(setting),
                              refine_steps=self.refine_steps)

  def decode(self, data):
    from tfcodec import codec
    from tfcodec.io.bitstream import Bitstream
    header = Bitstream.from_bytes(data)
    model = self._loader(header.model, header.quality, header.metric)
    return codec.decode_bytes(data, model=model)


def bits_per_pixel(data, image):
  """Whole-file rate: every byte of the file over the image's pixels."""
  return 8. * len(data) / (image.shape[0] * image.shape[1])


def measure_image(codec, image, setting):
  """(file bytes, per-image dict) for one image at one setting."""
  start = time.perf_counter()
  data = codec.encode(image, setting)
  encoded = time.perf_counter()
  decoded = codec.decode(data)
  finished = time.perf_counter()
  decoded = np.asarray(decoded)
  if decoded.shape != image.shape or decoded.dtype != np.uint8:
    raise ValueError(f"{codec.key} at {setting} decoded to {decoded.shape} "
                     f"{decoded.dtype}, expected {image.shape} uint8")
  ms = quality.ms_ssim(image, decoded)
  return data, {"bpp": bits_per_pixel(data, image),
                "psnr-rgb": quality.psnr(image, decoded),
                "ms-ssim-rgb": ms,
                "encoding_time": encoded - start,
                "decoding_time": finished - encoded}


def machine_summary():
  """Where the times were measured (they mean little without it)."""
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
  return {"cpu": cpu, "cores": os.cpu_count(),
          "load_average_1min_at_start": None if load is None else round(load, 2)}


def evaluate(codec, images, progress=None, per_image=False, report=None):
  """Runs `codec` over every setting and image; returns a result dict.

  `report(setting, name, values)` is called for each image (used for
  --per-image printing); `progress.step()` once per image and setting.
  """
  points, details = [], {}
  started = time.time()
  machine = machine_summary()
  for setting in codec.settings:
    # Warm-up (not scored): the first call of a model traces TF graphs.
    codec.decode(codec.encode(images[0][1], setting))
    rows = []
    for name, image in images:
      _, values = measure_image(codec, image, setting)
      rows.append(dict(values, image=name))
      if report:
        report(setting, name, values)
      if progress:
        progress.step(f"{codec.key} {setting} {name}")
    point = {"setting": setting}
    for key in ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time",
                "decoding_time"):
      point[key] = float(np.mean([r[key] for r in rows]))
    points.append(point)
    details[str(setting)] = rows
  extra = dict(getattr(codec, "info", {}))
  extra.update({"key": codec.key, "setting_name": codec.setting_name,
           "images": len(images),
           "measured": dict(machine, date=time.strftime("%Y-%m-%d"),
                            seconds=round(time.time() - started, 1))})
  if per_image:
    extra["per_image"] = details
  return rd.make_result(codec.label, codec.description(), points, extra)
