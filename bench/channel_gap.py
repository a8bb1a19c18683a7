"""Where a model's PSNR gap to WebP lies: luma or chroma, at matched rates.

  python bench/channel_gap.py [--model mbt2018-mean-vr] [--metric mse]
      [--qualities 5,7] [--images kodim01,...] [--kodak ../shared/data/kodak]

For each quality, every image is coded through the real container (bpp =
8 x file bytes / pixels) and also with WebP (`tfcodec.eval.baselines.WebP`:
Pillow/libwebp, method 6) at the WebP quality whose file size is closest to
ours for that image. Both reconstructions are compared with the original in
BT.601 full-range YCbCr (the JPEG/WebP conversion) and in RGB; the means
over the images are printed. WebP lossy stores chroma at half resolution
(4:2:0), so a gap that lies in Cb/Cr points at chroma, one in Y at luma
detail.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tfcodec import codec, metrics  # noqa: E402
from tfcodec.eval.baselines import WebP  # noqa: E402
from tfcodec.io.images import read_image  # noqa: E402
from tfcodec.util import quiet_tensorflow  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CHANNELS = ("Y", "Cb", "Cr", "RGB")


def ycbcr(image):
  """BT.601 full-range YCbCr planes of an RGB uint8 image, in float64."""
  r, g, b = (image[..., i].astype(np.float64) for i in range(3))
  return (0.299 * r + 0.587 * g + 0.114 * b,
          128. - 0.168736 * r - 0.331264 * g + 0.5 * b,
          128. + 0.5 * r - 0.418688 * g - 0.081312 * b)


def channel_psnrs(reference, decoded):
  """PSNR of Y, Cb, Cr and of RGB, in that order."""
  planes = zip(ycbcr(reference), ycbcr(decoded))
  return ([metrics.psnr(a, b) for a, b in planes]
          + [metrics.psnr(reference, decoded)])


def webp_at(image, target_bits):
  """(bits, decoded) of the WebP quality whose size is closest to target,
  coded as the evaluation tool's live WebP baseline codes it."""
  webp = WebP()
  files = [webp.encode(image, quality) for quality in range(101)]
  best = min(files, key=lambda data: abs(8 * len(data) - target_bits))
  return 8 * len(best), webp.decode(best)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="mbt2018-mean-vr")
  parser.add_argument("--metric", default="mse")
  parser.add_argument("--qualities", default="5,7")
  parser.add_argument("--images", default=",".join(
      f"kodim{i:02d}" for i in range(1, 9)))
  parser.add_argument("--kodak", default=os.path.join(
      HERE, "..", "..", "shared", "data", "kodak"))
  args = parser.parse_args()
  quiet_tensorflow()
  names = [n.strip() for n in args.images.split(",") if n.strip()]
  images = [read_image(os.path.join(args.kodak, n + ".png")) for n in names]
  print(f"{args.model} ({args.metric}) vs WebP at matched rates, "
        f"{len(images)} images; PSNR in dB, means over images")
  print("| quality | codec | bpp | " + " | ".join(CHANNELS) + " |")
  print("|---|---|---|" + "---|" * len(CHANNELS))
  for quality in (int(q) for q in args.qualities.split(",")):
    model = codec.get_model(args.model, quality, args.metric)
    rows = {"ours": ([], []), "WebP": ([], [])}
    for image in images:
      pixels = image.shape[0] * image.shape[1]
      data = codec.encode_image(model, image, quality)
      rows["ours"][0].append(8 * len(data) / pixels)
      rows["ours"][1].append(channel_psnrs(image, codec.decode_bytes(data)))
      bits, decoded = webp_at(image, 8 * len(data))
      rows["WebP"][0].append(bits / pixels)
      rows["WebP"][1].append(channel_psnrs(image, decoded))
    for name, (bpps, psnrs) in rows.items():
      print(f"| q{quality} | {name} | {np.mean(bpps):.3f} | "
            + " | ".join(f"{v:.2f}" for v in np.mean(psnrs, axis=0)) + " |")
    gap = np.mean(rows["ours"][1], axis=0) - np.mean(rows["WebP"][1], axis=0)
    print(f"| q{quality} | ours − WebP | | "
          + " | ".join(f"{v:+.2f}" for v in gap) + " |", flush=True)


if __name__ == "__main__":
  main()
