"""Peak memory of encode + decode by image size, with and without tiling, and
the rate-distortion cost of tiling on Kodak.

  python bench/memory.py [--model mbt2018-mean --quality 3]
                         [--sizes 768x512,2048x2048,8000x6000]
                         [--kodak_images 24 --kodak_tiles 256,512]

Each (size, tiling) case runs in its own subprocess, which builds a test image
of that size (Kodak's kodim23 resized, so the content is photographic),
encodes and decodes it through tfcodec.codec, and reports its own peak RSS
(getrusage ru_maxrss, which includes the ~0.6 GB of TensorFlow and weights).
Untiled cases above the format's MAX_UNTILED_PIXELS are not run: the format
refuses them, and they would need several times the memory of the machine.

The Kodak part codes every image untiled and in forced small tiles (Kodak
images are below the automatic tiling threshold) and prints the mean bpp and
PSNR of each, i.e. what unblended tile seams cost.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KODAK = os.path.join(ROOT, "..", "shared", "data", "kodak")
sys.path.insert(0, ROOT)


def child(args):
  """Encodes and decodes one synthetic image; prints a JSON line."""
  import numpy as np
  from PIL import Image
  from tfcodec import codec
  from tfcodec.util import quiet_tensorflow
  quiet_tensorflow()
  width, height = map(int, args.size.split("x"))
  with Image.open(os.path.join(KODAK, "kodim23.png")) as im:
    image = np.asarray(im.convert("RGB").resize((width, height),
                                                Image.BICUBIC))
  model = codec.get_model(args.model, args.quality, args.metric)
  start = time.time()
  data = codec.encode_image(model, image, args.quality,
                            tile_size=None if args.tiled else 0)
  encode_s = time.time() - start
  start = time.time()
  decoded = codec.decode_bytes(data, model=model)
  decode_s = time.time() - start
  assert decoded.shape == image.shape
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  print(json.dumps(dict(size=args.size, tiled=args.tiled, version=data[4],
                        bpp=8 * len(data) / (width * height), peak=peak,
                        encode_s=encode_s, decode_s=decode_s)))


def measure(size, tiled, args):
  from tfcodec.io.bitstream import MAX_UNTILED_PIXELS
  width, height = map(int, size.split("x"))
  if not tiled and width * height > MAX_UNTILED_PIXELS:
    return None
  command = [sys.executable, os.path.abspath(__file__), "--child",
             f"--size={size}", f"--model={args.model}",
             f"--quality={args.quality}", f"--metric={args.metric}"]
  if tiled:
    command.append("--tiled")
  result = subprocess.run(command, capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  if result.returncode:
    return dict(error=result.stderr.strip().splitlines()[-1:])
  return json.loads(result.stdout.strip().splitlines()[-1])


def kodak_tiling_cost(args):
  import numpy as np
  from tfcodec import codec, metrics
  from tfcodec.io.images import read_image
  files = sorted(f for f in os.listdir(KODAK) if f.endswith(".png"))
  files = files[:args.kodak_images]
  model = codec.get_model(args.model, args.quality, args.metric)
  tiles = [0] + [int(t) for t in args.kodak_tiles.split(",")]
  rows = {t: [] for t in tiles}
  for fname in files:
    image = read_image(os.path.join(KODAK, fname))
    for tile in tiles:
      data = codec.encode_image(model, image, args.quality, tile_size=tile)
      decoded = codec.decode_bytes(data, model=model)
      rows[tile].append((8 * len(data) / image[..., 0].size,
                         metrics.psnr(image, decoded)))
  print(f"\nTiling cost on Kodak ({len(files)} images, {args.model} "
        f"{args.metric} q{args.quality}; seams not blended):")
  base_bpp, base_psnr = np.mean(rows[0], axis=0)
  print(f"  {'tiles':>10} {'bpp':>8} {'PSNR dB':>8} {'d bpp':>8} {'d PSNR':>8}")
  for tile in tiles:
    bpp, psnr = np.mean(rows[tile], axis=0)
    label = "untiled" if tile == 0 else f"{tile}x{tile}"
    print(f"  {label:>10} {bpp:8.4f} {psnr:8.2f} {100 * (bpp / base_bpp - 1):+7.1f}% "
          f"{psnr - base_psnr:+8.2f}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", default="mbt2018-mean")
  parser.add_argument("--quality", type=int, default=3)
  parser.add_argument("--metric", default="mse")
  parser.add_argument("--sizes", default="768x512,2048x2048,8000x6000")
  parser.add_argument("--kodak_images", type=int, default=24)
  parser.add_argument("--kodak_tiles", default="256,512")
  parser.add_argument("--skip_kodak", action="store_true")
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--size", help=argparse.SUPPRESS)
  parser.add_argument("--tiled", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    return child(args)
  print(f"Peak RSS of one encode + decode ({args.model} {args.metric} "
        f"q{args.quality}), each in a fresh process:")
  print(f"  {'size':>10} {'tiling':>7} {'peak RSS':>10} {'bpp':>7} "
        f"{'encode s':>9} {'decode s':>9}")
  for size in args.sizes.split(","):
    for tiled in (False, True):
      result = measure(size, tiled, args)
      label = "auto" if tiled else "off"
      if result is None:
        print(f"  {size:>10} {label:>7} {'refused (above MAX_UNTILED_PIXELS)':>30}")
      elif "error" in result:
        print(f"  {size:>10} {label:>7} failed: {result['error']}")
      else:
        note = "" if result["version"] == 2 else " (below the tiling threshold)"
        print(f"  {size:>10} {label:>7} {result['peak'] / 2 ** 30:8.2f} GiB "
              f"{result['bpp']:7.4f} {result['encode_s']:9.1f} "
              f"{result['decode_s']:9.1f}{note if tiled else ''}", flush=True)
  if not args.skip_kodak:
    kodak_tiling_cost(args)


if __name__ == "__main__":
  main()
