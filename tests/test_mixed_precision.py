"""Every registered model trains under train.py's mixed_bfloat16 policy.

The CPUs of earlier sessions lacked bf16 hardware, so `--precision=auto`
trained in float32 and a layer that mixed float32 and bf16 tensors went
unseen: cheng2020-attn's last g_a attention is float32 (it feeds y) while its
residual units took the global bf16 policy, and building the model failed
with "expected to be a float tensor but is a bfloat16 tensor".
"""

import numpy as np
import pytest
import tensorflow as tf

from tfcodec.models import MODELS, create_model
from tfcodec.testing import tiny_config


@pytest.fixture
def mixed_bfloat16():
  tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    yield
  finally:
    tf.keras.mixed_precision.set_global_policy("float32")


# TCM-M and -L are TCM-S's layers at other widths; each took 100-130 s here.
@pytest.mark.parametrize("name", sorted(set(MODELS) - {"tcm-m", "tcm-l"}))
def test_a_training_forward_and_gradient_under_mixed_bfloat16(mixed_bfloat16,
                                                              name):
  # Eager, not a traced train_step: the defect was in building and calling
  # the layers, and tracing twelve training graphs cost 14 minutes here.
  tf.keras.utils.set_random_seed(0)
  model = create_model(name, lmbda=0.01, **tiny_config(name))
  # 64: the hyperprior models and tiny TCM downsample by 64.
  images = tf.random.stateless_uniform([2, 64, 64, 3], [5, 6])
  with tf.GradientTape() as tape:
    result = model(images, training=True)
    rate = sum(tf.reduce_sum(b) for b in result["bits"].values())
    loss = rate + 100. * tf.reduce_sum(tf.square(result["x_hat"] - images))
  # Reconstructions and rates leave the model in float32, whatever it
  # computed inside.
  assert result["x_hat"].dtype == tf.float32
  assert all(b.dtype == tf.float32 for b in result["bits"].values())
  assert np.isfinite(float(loss))
  gradients = tape.gradient(loss, model.trainable_variables)
  assert all(g is None or g.dtype == v.dtype
             for g, v in zip(gradients, model.trainable_variables))
  finite = [g for g in gradients if g is not None]
  assert all(np.all(np.isfinite(tf.convert_to_tensor(g))) for g in finite)
  # Most variables get a gradient (the rest: e.g. TCM's relative-position
  # rows no window offset of a tiny model uses).
  assert len(finite) > 0.8 * len(gradients), (len(finite), len(gradients))
