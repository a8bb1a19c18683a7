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
# TCM needs M to split into its 5 slices, head sizes that divide N, and
# smaller windows (4 on y, 2 in the hyper path: stride 64 instead of 128).
TINY_TCM = dict(N=8, M=40, window=4, hyper_window=2,
                head_dims=(4, 8, 8, 8, 8, 4), hyper_head_dim=8,
                hyper_channels=8, attention_channels=16,
                attention_head_dim=8, attention_window=4, slice_hidden=(16, 16))


def tiny_config(name):
  """Constructor arguments of a tiny random model of a registered name."""
  return TINY_TCM if name.startswith("tcm-") else TINY


class _TinyModels(dict):
  """Builds (and freezes) each tiny model the first time a test asks."""

  def __missing__(self, name):
    import tensorflow as tf
    from tfcodec.models import MODELS, create_model
    if name not in MODELS:
      raise KeyError(name)
    tf.random.set_seed(0)
    model = create_model(name, **tiny_config(name))
    model.freeze()
    self[name] = model
    return model


@pytest.fixture(scope="session")
def tiny_models():
  """One frozen, randomly initialised tiny model per registered name, built
  on first use (the transformer models take a while to build and trace)."""
  return _TinyModels()


def random_image(height, width, seed=0):
  """A smooth-ish random image (noise alone is unrepresentative)."""
  rng = np.random.default_rng(seed)
  base = rng.uniform(0, 255, size=(max(1, height // 8 + 1), max(1, width // 8 + 1), 3))
  image = np.kron(base, np.ones((8, 8, 1)))[:height, :width]
  image += rng.normal(0, 8, size=image.shape)
  return np.clip(np.round(image), 0, 255).astype(np.uint8)
