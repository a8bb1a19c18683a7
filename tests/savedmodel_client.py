"""Uses an exported SavedModel the way a deployment would: without tfcodec.

  python -I -S savedmodel_client.py SAVED_MODEL WORK_DIR SITE_DIR...

Run by tests/test_export.py with -I (no PYTHONPATH, no script directory on
sys.path) and -S (no site module, hence no .pth files, which is how an
editable install of tfcodec would otherwise be found); the SITE_DIRs are put
on sys.path by hand so that tensorflow and tensorflow_compression import.
Before anything else it checks that tfcodec cannot be imported.

For every WORK_DIR/<stem>.png it writes <stem>.sm.tfci (the `compress`
signature's bitstream) and, for every <stem>.tfci made by the tfcodec CLI,
<stem>.sm.png (the `decompress` signature's image), as PNG via tf.io.
"""

import glob
import os
import sys


def main(saved_model, work_dir, site_dirs):
  sys.path.extend(site_dirs)
  try:
    import tfcodec  # noqa: F401
  except ModuleNotFoundError:
    pass
  else:
    raise SystemExit("tfcodec is importable: the check would prove nothing")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  import tensorflow as tf
  import tensorflow_compression  # noqa: F401  (registers the range coder ops)

  codec = tf.saved_model.load(saved_model)
  compress = codec.signatures["compress"]
  decompress = codec.signatures["decompress"]
  for path in sorted(glob.glob(os.path.join(work_dir, "*.png"))):
    if path.endswith(".sm.png") or path.endswith(".cli.png"):
      continue
    stem = path[:-len(".png")]
    image = tf.io.decode_png(tf.io.read_file(path), channels=3)
    bitstream = compress(image=image)["bitstream"]
    tf.io.write_file(stem + ".sm.tfci", bitstream)
    data = tf.io.read_file(stem + ".tfci")
    decoded = decompress(bitstream=data)["image"]
    tf.io.write_file(stem + ".sm.png", tf.io.encode_png(decoded))
    print(f"{os.path.basename(stem)}: {int(tf.strings.length(bitstream))} "
          f"bytes, decoded {decoded.shape[1]}x{decoded.shape[0]}")
  assert "tfcodec" not in sys.modules, "tfcodec was imported"
  print("tfcodec imported: no")


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2], sys.argv[3:])
