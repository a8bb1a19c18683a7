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

TINY = dict(N=8, M=8)


@pytest.fixture(scope="session")
def tiny_models():
  """One frozen, randomly initialised tiny model per registered name."""
  import tensorflow as tf
  from tfcodec.models import MODELS, create_model
  tf.random.set_seed(0)
  models = {}
  for name in sorted(MODELS):
    model = create_model(name, **TINY)
    model.freeze()
    models[name] = model
  return models


def random_image(height, width, seed=0):
  """A smooth-ish random image (noise alone is unrepresentative)."""
  rng = np.random.default_rng(seed)
  base = rng.uniform(0, 255, size=(max(1, height // 8 + 1), max(1, width // 8 + 1), 3))
  image = np.kron(base, np.ones((8, 8, 1)))[:height, :width]
  image += rng.normal(0, 8, size=image.shape)
  return np.clip(np.round(image), 0, 255).astype(np.uint8)
