"""Classical codecs, measured live next to our models.

Each codec is a small object: `encode(uint8 HxWx3, setting) -> bytes` (a whole
file, so bpp counts every byte), `decode(bytes) -> uint8 HxWx3`, the sweep of
settings it is run at (chosen so that Kodak means span ~0.1-2 bpp; JPEG cannot
go that low), and `unavailable()`, which names the missing package (or
library feature) instead of failing, so optional codecs are skipped with a
notice.

Colour: every codec gets 8-bit RGB and is asked for full-resolution chroma
(4:4:4) where it has the choice; WebP's lossy mode is 4:2:0 only. Speed presets
are chosen so that a full Kodak sweep of all six codecs stays within minutes
on two cores; they are part of each codec's description in the results.
"""

import io

import numpy as np
from PIL import Image, features


def _pillow_decode(data):
  with Image.open(io.BytesIO(data)) as im:
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _pillow_encode(image, fmt, **options):
  buffer = io.BytesIO()
  Image.fromarray(np.asarray(image, np.uint8), "RGB").save(buffer, fmt, **options)
  return buffer.getvalue()


def _pillow_version():
  import PIL
  return PIL.__version__


class Codec:
  """Interface (and defaults) shared by the baselines."""
  key = ""
  label = ""
  setting_name = "quality"
  settings = ()

  def unavailable(self):
    """None if usable here, else why not (shown when the codec is skipped)."""
    return None

  def description(self):
    return self.label

  def encode(self, image, setting):
    raise NotImplementedError

  def decode(self, data):
    raise NotImplementedError


class Jpeg(Codec):
  key = "jpeg"
  label = "JPEG 4:4:4"
  settings = (1, 5, 10, 20, 35, 50, 65, 75, 85)

  def unavailable(self):
    return None if features.check("jpg") else "Pillow was built without libjpeg"

  def description(self):
    return (f"JPEG 4:4:4 (subsampling=0), optimized Huffman tables, Pillow "
            f"{_pillow_version()} / libjpeg-turbo {features.version('libjpeg_turbo')}")

  def encode(self, image, setting):
    return _pillow_encode(image, "JPEG", quality=int(setting), subsampling=0,
                          optimize=True)

  def decode(self, data):
    return _pillow_decode(data)


class WebP(Codec):
  key = "webp"
  label = "WebP"
  settings = (0, 10, 25, 40, 55, 70, 80, 86, 90)

  def unavailable(self):
    return None if features.check("webp") else "Pillow was built without libwebp"

  def description(self):
    return (f"WebP lossy (always 4:2:0 chroma), method 6, Pillow "
            f"{_pillow_version()} / libwebp {features.version('webp')}")

  def encode(self, image, setting):
    return _pillow_encode(image, "WEBP", quality=int(setting), method=6)

  def decode(self, data):
    return _pillow_decode(data)


class Jpeg2000(Codec):
  """OpenJPEG via Pillow; the setting is the target rate in bpp (Pillow takes
  a compression ratio, 24 / bpp for 8-bit RGB)."""
  key = "jpeg2000"
  label = "JPEG 2000"
  setting_name = "target bpp"
  settings = (0.08, 0.12, 0.2, 0.3, 0.45, 0.65, 0.9, 1.3, 2.0)

  def unavailable(self):
    return None if features.check("jpg_2000") else "Pillow was built without OpenJPEG"

  def description(self):
    return (f"JPEG 2000, OpenJPEG {features.version('jpg_2000')} via Pillow "
            f"{_pillow_version()}: irreversible 9/7 wavelet, colour transform "
            "on (mct=1, ICT), one quality layer at ratio 24/bpp")

  def encode(self, image, setting):
    return _pillow_encode(image, "JPEG2000", quality_mode="rates",
                          quality_layers=[24. / float(setting)], mct=1,
                          irreversible=True)

  def decode(self, data):
    return _pillow_decode(data)


class Avif(Codec):
  """AV1 still images. Pillow >= 11.3 has AVIF built in; for older Pillow the
  pillow-avif-plugin package registers the same "AVIF" format."""
  key = "avif"
  label = "AVIF 4:4:4"
  settings = (10, 20, 30, 40, 50, 58, 66, 74, 82)
  speed = 6

  def unavailable(self):
    if features.check("avif"):
      from PIL import _avif
      return None if _avif.encoder_codec_available("aom") else \
          "Pillow's libavif has no libaom encoder"
    try:
      import pillow_avif  # noqa: F401
    except ImportError:
      return ("no AVIF support: Pillow >= 11.3 with AVIF, or "
              "pip install pillow-avif-plugin")
    return None

  def _native(self):
    return features.check("avif")

  def description(self):
    if self._native():
      version = f"libavif {features.version('avif')} in Pillow {_pillow_version()}"
    else:
      import pillow_avif
      version = f"pillow-avif-plugin {pillow_avif.__version__}"
    return (f"AVIF, libaom encoder, YUV 4:4:4, full range, speed {self.speed} "
            f"(default 6), single thread; {version}")

  def encode(self, image, setting):
    options = dict(quality=int(setting), subsampling="4:4:4", speed=self.speed)
    if self._native():
      options.update(codec="aom", max_threads=1)
    else:
      import pillow_avif  # noqa: F401  (registers the format)
      options.update(codec="aom")
    return _pillow_encode(image, "AVIF", **options)

  def decode(self, data):
    if not self._native():
      import pillow_avif  # noqa: F401
    return _pillow_decode(data)


class Heif(Codec):
  """HEVC intra in a HEIF file (libheif + x265 via pillow-heif): the closest
  pip-installable relative of BPG, which is also x265 HEVC intra in 4:4:4."""
  key = "heif"
  label = "HEIF/HEVC 4:4:4"
  settings = (8, 14, 20, 26, 32, 38, 44, 50, 56)
  preset = "medium"

  def unavailable(self):
    try:
      import pillow_heif
    except ImportError:
      return "pip install pillow-heif"
    if not pillow_heif.libheif_info().get("encoders", {}).get("x265"):
      return "pillow-heif has no x265 encoder"
    return None

  def description(self):
    import pillow_heif
    info = pillow_heif.libheif_info()
    return (f"HEIF, {info['encoders']['x265']}, YCbCr (BT.601, full range) "
            f"4:4:4, x265 preset {self.preset}; libheif {info['libheif']}, "
            f"pillow-heif {pillow_heif.__version__}")

  def encode(self, image, setting):
    import pillow_heif
    image = np.ascontiguousarray(image, np.uint8)
    heif = pillow_heif.from_bytes(mode="RGB", size=(image.shape[1], image.shape[0]),
                                  data=image.tobytes())
    buffer = io.BytesIO()
    heif.save(buffer, quality=int(setting), chroma=444,
              enc_params={"preset": self.preset})
    return buffer.getvalue()

  def decode(self, data):
    import pillow_heif
    heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
    return np.asarray(heif.to_pillow().convert("RGB"), dtype=np.uint8)


class JpegXL(Codec):
  """libjxl through imagecodecs; the setting is libjxl's quality (0-100,
  mapped to a Butteraugli distance by the library)."""
  key = "jpegxl"
  label = "JPEG XL"
  settings = (1, 8, 20, 35, 50, 65, 78, 86, 90)
  effort = 7

  def unavailable(self):
    try:
      import imagecodecs
    except ImportError:
      return "pip install imagecodecs (a release that accepts numpy<2: 2025.8.2)"
    if not getattr(imagecodecs, "JPEGXL", None) or not imagecodecs.JPEGXL.available:
      return "imagecodecs was built without JPEG XL"
    return None

  def description(self):
    import imagecodecs
    return (f"JPEG XL (VarDCT, XYB), effort {self.effort} (default), bare "
            f"codestream; {imagecodecs.jpegxl_version()}, imagecodecs "
            f"{imagecodecs.__version__}")

  def encode(self, image, setting):
    import imagecodecs
    return bytes(imagecodecs.jpegxl_encode(np.ascontiguousarray(image, np.uint8),
                                           level=int(setting), effort=self.effort,
                                           numthreads=1))

  def decode(self, data):
    import imagecodecs
    return np.asarray(imagecodecs.jpegxl_decode(data, numthreads=1), np.uint8)


ALL = (Jpeg, WebP, Jpeg2000, Avif, Heif, JpegXL)
BY_KEY = {cls.key: cls for cls in ALL}


def get(key):
  if key not in BY_KEY:
    raise KeyError(f"unknown baseline {key!r} (known: {', '.join(BY_KEY)})")
  return BY_KEY[key]()
