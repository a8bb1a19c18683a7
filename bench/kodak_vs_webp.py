"""Kodak: each shipped model's real-bitstream bpp/PSNR next to WebP, same run.

  python bench/kodak_vs_webp.py [--kodak ../shared/data/kodak] [--json out.json]

For every shipped weight file: encode and decode all images through the real
container (bpp = 8 x file bytes / pixels), PSNR on the 8-bit output. WebP
(Pillow/libwebp, method 6) is swept over quality 0..100; its mean PSNR is
interpolated (in log bpp) at the model's mean bpp, and the nearest measured
WebP setting is printed too.
"""

import argparse
import io
import json
import os
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tfcodec import codec, metrics, zoo  # noqa: E402
from tfcodec.io.images import read_image  # noqa: E402
from tfcodec.util import quiet_tensorflow  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def webp_curve(images, qualities=range(0, 101, 5)):
  points = []
  for q in qualities:
    bpps, psnrs = [], []
    for image in images:
      buffer = io.BytesIO()
      Image.fromarray(image).save(buffer, "WEBP", quality=q, method=6)
      decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
      bpps.append(8 * len(buffer.getvalue()) / (image.shape[0] * image.shape[1]))
      psnrs.append(metrics.psnr(image, decoded))
    points.append((q, float(np.mean(bpps)), float(np.mean(psnrs))))
  return points


def interpolate(points, bpp):
  rates = np.log([p[1] for p in points])
  order = np.argsort(rates)
  return float(np.interp(np.log(bpp), rates[order],
                         np.array([p[2] for p in points])[order]))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--kodak", default=os.path.join(HERE, "..", "..", "shared",
                                                      "data", "kodak"))
  parser.add_argument("--json", default=None, help="Write the results here.")
  args = parser.parse_args()
  quiet_tensorflow()
  files = sorted(f for f in os.listdir(args.kodak) if f.endswith(".png"))
  images = [read_image(os.path.join(args.kodak, f)) for f in files]
  webp = webp_curve(images)
  report = {"images": len(images), "webp": webp, "models": []}
  for name, metric, quality in zoo.available_weights():
    model = codec.get_model(name, quality, metric)
    bpps, psnrs, enc, dec = [], [], [], []
    for image in images:
      t0 = time.time()
      data = codec.encode_image(model, image, quality)
      t1 = time.time()
      decoded = codec.decode_bytes(data, model=model)
      t2 = time.time()
      bpps.append(8 * len(data) / (image.shape[0] * image.shape[1]))
      psnrs.append(metrics.psnr(image, decoded))
      enc.append(t1 - t0)
      dec.append(t2 - t1)
    bpp, psnr = float(np.mean(bpps)), float(np.mean(psnrs))
    nearest = min(webp, key=lambda p: abs(np.log(p[1] / bpp)))
    entry = dict(model=name, metric=metric, quality=quality, bpp=bpp, psnr=psnr,
                 encode_s=float(np.mean(enc)), decode_s=float(np.mean(dec)),
                 webp_psnr_at_bpp=interpolate(webp, bpp),
                 webp_nearest=dict(quality=nearest[0], bpp=nearest[1],
                                   psnr=nearest[2]))
    report["models"].append(entry)
    print(f"{name} {metric} q{quality}: {bpp:.4f} bpp, {psnr:.2f} dB "
          f"(enc {entry['encode_s']:.2f} s, dec {entry['decode_s']:.2f} s) | "
          f"WebP at {bpp:.4f} bpp: {entry['webp_psnr_at_bpp']:.2f} dB "
          f"(nearest: q{nearest[0]} {nearest[1]:.4f} bpp {nearest[2]:.2f} dB) | "
          f"gain {psnr - entry['webp_psnr_at_bpp']:+.2f} dB", flush=True)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(report, f, indent=1)


if __name__ == "__main__":
  main()
