import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
KODAK = os.path.join(ROOT, "..", "shared", "data", "kodak")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tfcodec.util import quiet_tensorflow  # noqa: E402

quiet_tensorflow()

from tfcodec.testing import TINY, tiny_config  # noqa: E402,F401


@pytest.fixture(scope="session")
def tiny_models(tiny_snapshots):
  """One frozen, randomly initialised tiny model per registered name.

  Built once from a fixed seed (tfcodec.testing) and cached with its
  range-coding tables (a few seconds per model to build); each is restored
  on first use, so a worker loads only the models its tests name;
  subprocesses (fuzz worker, determinism matrix) restore the same snapshots.
  """
  from tfcodec import testing
  return testing.TinyModels(tiny_snapshots)


@pytest.fixture(scope="session")
def tiny_snapshots():
  """The folder caching the tiny models' weights and tables."""
  from tfcodec.fuzz import DEFAULT_SNAPSHOTS
  return DEFAULT_SNAPSHOTS


def random_image(height, width, seed=0):
  """A smooth-ish random image (noise alone is unrepresentative)."""
  rng = np.random.default_rng(seed)
  base = rng.uniform(0, 255, size=(max(1, height // 8 + 1), max(1, width // 8 + 1), 3))
  image = np.kron(base, np.ones((8, 8, 1)))[:height, :width]
  image += rng.normal(0, 8, size=image.shape)
  return np.clip(np.round(image), 0, 255).astype(np.uint8)


def kodak_image(name="kodim23.png"):
  """A whole Kodak image as uint8 HxWx3 (768x512 for kodim23; skips the test
  when the shared Kodak folder is absent)."""
  from PIL import Image
  path = os.path.join(KODAK, name)
  if not os.path.exists(path):
    pytest.skip(f"Kodak not available at {KODAK}")
  return np.asarray(Image.open(path).convert("RGB"))


def assert_exports_like_the_library(model, out_dir, image):
  """Exports a frozen model at quality 1 and checks that the SavedModel's
  signatures give the library's bytes and pixels (codec.encode_image and
  decode_bytes) for `image`."""
  import tensorflow as tf
  from tfcodec import codec, export
  export.export_model(model, 1, str(out_dir))
  loaded = tf.saved_model.load(str(out_dir))
  expected = codec.encode_image(model, image, 1)
  data = loaded.signatures["compress"](image=tf.constant(image))["bitstream"]
  assert data.numpy() == expected, model.model_name
  decoded = loaded.signatures["decompress"](bitstream=data)["image"].numpy()
  np.testing.assert_array_equal(decoded, codec.decode_bytes(expected, model))
