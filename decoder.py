"""Decode every .tfci bitstream in a folder to PNG.

  python decoder.py [--input_dir bitstreams/] [--output_dir reconstructions/]
                    [--reference_dir valid/]

Everything needed (model, quality, size) is read from each file's header.
With --reference_dir, prints PSNR and MS-SSIM against the original images.
A corrupt file is named with the reason; the others are still decoded, and
the exit status is 1.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

flags.DEFINE_string("input_dir", "bitstreams", "Folder of .tfci files.")
flags.DEFINE_string("output_dir", "reconstructions",
                    "Folder for the <stem>.png files (created if missing).")
flags.DEFINE_string("reference_dir", None,
                    "Folder with the original images (same stems); when given, "
                    "PSNR and MS-SSIM are printed per image and on average.")
flags.DEFINE_bool("exact_transforms", True,
                  "Run the analysis/synthesis transforms in exact integer "
                  "arithmetic (the default: the same pixels on every machine and "
                  "thread setting). --noexact_transforms runs them in "
                  "float32, about 2-3x faster; the entropy parameters stay exact, "
                  "so files still decode anywhere, but the pixels may differ in the "
                  "last bit across machines.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from tfcodec import codec
  from tfcodec.util import quiet_tensorflow
  quiet_tensorflow()
  try:
    results = codec.decode_folder(FLAGS.input_dir, FLAGS.output_dir,
                                  FLAGS.reference_dir,
                                  exact_transforms=FLAGS.exact_transforms)
  except (OSError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if not results:
    print(f"error: no .tfci files found in {FLAGS.input_dir}", file=sys.stderr)
    return 2
  return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
  app.run(lambda argv: sys.exit(main(argv)))
