"""Encode every image in a folder to .tfci bitstreams.

  python encoder.py [--input_dir valid/] [--output_dir bitstreams/]
                    [--model mbt2018-mean] [--quality 3] [--metric mse]
                    [--refine_steps 0]

Prints each image's size and bits per pixel (bits of the whole file / pixels)
and the mean. A file that cannot be encoded is named with the reason; the
others are still encoded, and the exit status is 1.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

flags.DEFINE_string("input_dir", "valid", "Folder of images to encode.")
flags.DEFINE_string("output_dir", "bitstreams",
                    "Folder for the <stem>.tfci files (created if missing).")
flags.DEFINE_string("model", None,
                    "Registered model to encode with; by default the best "
                    "shipped one, tfcodec.zoo.DEFAULT_MODEL.")
flags.DEFINE_integer("quality", 3, "Quality level (1..8; 0 is mbt2018-mean-vr's "
                     "low rung) of the shipped weights.")
flags.DEFINE_enum("metric", "mse", ["mse", "ms-ssim"],
                  "Which shipped weights: trained for MSE or for MS-SSIM.")
flags.DEFINE_bool("exact_transforms", True,
                  "Run the analysis/synthesis transforms in exact integer "
                  "arithmetic (the default: the same bytes on every machine and "
                  "thread setting). --noexact_transforms runs them in "
                  "float32, about 2-3x faster; the entropy parameters stay exact, "
                  "so files still decode anywhere, but the bytes may differ in the "
                  "last bit across machines.")
flags.DEFINE_integer("refine_steps", 0,
                     "Encoder-side latent refinement: Adam steps on each "
                     "image's latents to lower its rate + lambda * distortion "
                     "before coding (tfcodec/refine.py; mbt2018-mean and "
                     "mbt2018-mean-vr). Slower encoding; decoding unchanged.",
                     lower_bound=0)
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from tfcodec import codec, zoo
  from tfcodec.util import quiet_tensorflow
  quiet_tensorflow()
  try:
    results = codec.encode_folder(FLAGS.input_dir, FLAGS.output_dir,
                                  FLAGS.model or zoo.DEFAULT_MODEL,
                                  FLAGS.quality, FLAGS.metric,
                                  exact_transforms=FLAGS.exact_transforms,
                                  refine_steps=FLAGS.refine_steps)
  except (OSError, KeyError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if not results:
    print(f"error: no images found in {FLAGS.input_dir}", file=sys.stderr)
    return 2
  return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
  app.run(lambda argv: sys.exit(main(argv)))
