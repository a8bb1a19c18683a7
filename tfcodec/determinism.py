"""Determinism matrix: same bytes and pixels under every runtime setting.

  python -m tfcodec.determinism                       # shipped weights, Kodak
  python -m tfcodec.determinism --tiny --images a.png,b.png

Each configuration (intra-op threads 1, 2, 4 x TF_ENABLE_ONEDNN_OPTS 0, 1)
runs in its own subprocess, since both settings are fixed when TensorFlow
starts. Every subprocess encodes every image with every model, decodes its
own files, and also decodes the files written by the first configuration.
Then, per model and image, the harness compares across configurations:

  bytes    the encoded file
  pixels   the decoded image of the file it wrote
  cross    the decoded image of the first configuration's file
  batch    the forward pass (training=False, the coding arithmetic) of a
           batch of same-sized images against each image alone
  tables   the range-coding tables built by freeze()

and prints every mismatch; the exit status is 1 if there is any.
"""

import argparse
import hashlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time

THREADS = (1, 2, 4)
ONEDNN = (0, 1)


def _digest(data):
  return hashlib.sha256(bytes(data)).hexdigest()[:16]


def _tables_digest(model):
  parts = []
  for index, tables in sorted(model.coding_tables().items()):
    for key, value in sorted(tables.items()):
      parts.append(f"{index}:{key}".encode() + value.tobytes())
  if hasattr(model, "entropy_modules"):
    for module in model.entropy_modules():
      coder = getattr(module, "coder", None)
      if coder is not None:
        parts.append(coder.cdf.numpy().tobytes())
  return _digest(b"".join(parts))


def _load_models(spec, snapshot_dir):
  """{label: model} for "tiny" or a list of "name:metric:quality"."""
  if spec == "tiny" or spec.startswith("tiny:"):
    # "tiny:a+b" restricts the tiny models to the named architectures.
    from tfcodec import testing
    names = spec[5:].split("+") if spec.startswith("tiny:") else None
    return testing.load_tiny_models(snapshot_dir, names)
  from tfcodec import codec
  models = {}
  for item in spec.split(","):
    name, metric, quality = item.split(":")
    models[item] = codec.get_model(name, int(quality), metric)
  return models


def worker_main(args):
  """One configuration: prints one JSON line per (model, image)."""
  import numpy as np
  import tensorflow as tf
  tf.config.threading.set_intra_op_parallelism_threads(args.threads)
  from tfcodec import codec
  from tfcodec.io.images import read_image
  from tfcodec.util import quiet_tensorflow
  quiet_tensorflow()
  models = _load_models(args.models, args.snapshots)
  images = [(os.path.basename(p), read_image(p)) for p in args.images.split(",")]
  batch_limit = args.batch_images
  for label, model in models.items():
    safe = label.replace(":", "-")
    tables = _tables_digest(model)
    batch = _batch_check(model, [im for _, im in images][:batch_limit])
    for name, image in images:
      quality = int(label.rsplit(":", 1)[1]) if ":" in label else 1
      data = codec.encode_image(model, image, quality)
      path = os.path.join(args.out, f"{safe}--{name}.tfci")
      if args.write:
        with open(path, "wb") as f:
          f.write(data)
      pixels = codec.decode_bytes(data, model=model)
      record = dict(model=label, image=name, bytes=_digest(data),
                    pixels=_digest(pixels.tobytes()), tables=tables,
                    batch=batch.get(image.shape[:2], "n/a"))
      reference = os.path.join(args.reference, f"{safe}--{name}.tfci")
      if args.reference and os.path.exists(reference):
        with open(reference, "rb") as f:
          record["cross"] = _digest(
              codec.decode_bytes(f.read(), model=model).tobytes())
      print(json.dumps(record), flush=True)
  del np
  return 0


def _batch_check(model, images):
  """{(h, w): "ok" | "MISMATCH"}: forward pass of same-sized images as one
  batch against one at a time, bit for bit (both in coding arithmetic)."""
  import numpy as np
  import tensorflow as tf
  from tfcodec.models.base import pad_to_multiple
  groups = {}
  for image in images:
    groups.setdefault(image.shape[:2], []).append(image)
  results = {}
  for shape, group in groups.items():
    if len(group) < 2:
      continue
    x = pad_to_multiple(tf.constant(np.stack(group), tf.float32) / 255.,
                        model.stride)
    together = model(x, training=False)["x_hat"].numpy()
    alone = np.concatenate([model(x[i:i + 1], training=False)["x_hat"].numpy()
                            for i in range(len(group))])
    results[shape] = "ok" if np.array_equal(together, alone) else "MISMATCH"
  return results


def run_matrix(models, images, snapshot_dir=None, threads=THREADS,
               onednn=ONEDNN, batch_images=4, log=sys.stdout, workdir=None):
  """Runs every configuration; returns (records by config, mismatch lines)."""
  workdir = workdir or tempfile.mkdtemp(prefix="tfcodec-determinism-")
  configs = list(itertools.product(threads, onednn))
  reference = os.path.join(workdir, "reference")
  os.makedirs(reference, exist_ok=True)
  records = {}
  for index, (thread_count, dnn) in enumerate(configs):
    start = time.time()
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=str(dnn),
               TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, "-m", "tfcodec.determinism", "--worker",
               f"--threads={thread_count}", f"--models={models}",
               f"--images={','.join(images)}", f"--out={reference}",
               f"--reference={reference}", f"--batch_images={batch_images}"]
    if snapshot_dir:
      command.append(f"--snapshots={snapshot_dir}")
    if index == 0:
      command.append("--write")
    result = subprocess.run(
        command, capture_output=True, text=True, env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if result.returncode:
      raise RuntimeError(f"configuration threads={thread_count} onednn={dnn} "
                         f"failed:\n{result.stderr[-3000:]}")
    lines = [json.loads(l) for l in result.stdout.splitlines() if l.startswith("{")]
    records[(thread_count, dnn)] = {(r["model"], r["image"]): r for r in lines}
    if log:
      print(f"  threads={thread_count} onednn={dnn}: {len(lines)} files, "
            f"{time.time() - start:.0f} s", file=log, flush=True)
  return records, compare(records)


def compare(records):
  """Mismatch lines: every field against the first configuration."""
  configs = list(records)
  first = records[configs[0]]
  mismatches = []
  for config in configs[1:]:
    for key, record in sorted(records[config].items()):
      base = first.get(key)
      for field in ("bytes", "pixels", "tables"):
        if base is None or record[field] != base[field]:
          mismatches.append(f"{key[0]} {key[1]}: {field} differ between "
                            f"threads/onednn {configs[0]} and {config}")
  for config in configs:
    for key, record in sorted(records[config].items()):
      base = first.get(key)
      if "cross" in record and base is not None and record["cross"] != base["pixels"]:
        mismatches.append(f"{key[0]} {key[1]}: the first configuration's file "
                          f"decodes differently under {config}")
      if record["batch"] == "MISMATCH":
        mismatches.append(f"{key[0]} {key[1]}: batched forward pass differs "
                          f"from single images under {config}")
  return mismatches


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--models", default=None,
                      help="Comma-separated name:metric:quality (default: every "
                           "shipped weight), or 'tiny' for the tiny test models.")
  parser.add_argument("--tiny", action="store_true",
                      help="Same as --models tiny.")
  parser.add_argument("--images", default=None,
                      help="Comma-separated images (default: all of Kodak).")
  parser.add_argument("--batch_images", type=int, default=4,
                      help="How many images the batched check uses.")
  parser.add_argument("--snapshots", default=None)
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
  parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
  parser.add_argument("--reference", default="", help=argparse.SUPPRESS)
  parser.add_argument("--write", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.tiny:
    args.models = "tiny"
  if args.snapshots is None:
    from tfcodec.fuzz import DEFAULT_SNAPSHOTS
    args.snapshots = DEFAULT_SNAPSHOTS
  if args.worker:
    return worker_main(args)
  if args.models is None:
    from tfcodec import zoo
    shipped = zoo.available_weights()
    if not shipped:
      print("error: no shipped weights; use --tiny", file=sys.stderr)
      return 2
    args.models = ",".join(f"{n}:{m}:{q}" for n, m, q in shipped)
  if args.models == "tiny":
    from tfcodec import testing
    testing.load_tiny_models(args.snapshots)
  if args.images is None:
    from tfcodec.eval.cli import DEFAULT_IMAGES
    folder = os.path.normpath(DEFAULT_IMAGES)
    args.images = ",".join(os.path.join(folder, f) for f in sorted(
        os.listdir(folder)) if f.lower().endswith(".png"))
  images = args.images.split(",")
  print(f"determinism: {args.models} on {len(images)} image(s), threads "
        f"{THREADS} x TF_ENABLE_ONEDNN_OPTS {ONEDNN}", flush=True)
  records, mismatches = run_matrix(args.models, images, args.snapshots,
                                   batch_images=args.batch_images)
  files = sum(len(r) for r in records.values())
  for line in mismatches:
    print("MISMATCH " + line)
  print(f"determinism: {len(records)} configurations, {files} encodes and "
        f"decodes, {len(mismatches)} mismatches")
  return 1 if mismatches else 0


if __name__ == "__main__":
  sys.exit(main())
