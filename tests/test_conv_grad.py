"""Kernel gradients computed as patches^T x dy equal TF's own."""

import numpy as np
import pytest
import tensorflow as tf

from tfcodec.train import conv_grad


@pytest.fixture
def native_afterwards():
  yield
  conv_grad.uninstall()


def _gradients(x, kernel, up_kernel, stride, padding, dtype):
  """Gradients of a loss through conv2d then conv2d_transpose, traced."""

  @tf.function
  def run(x, kernel, up_kernel):
    with tf.GradientTape() as tape:
      tape.watch([x, kernel, up_kernel])
      y = tf.nn.conv2d(tf.cast(x, dtype), tf.cast(kernel, dtype), stride,
                       padding)
      shape = tf.shape(y)
      z = tf.nn.conv2d_transpose(
          y, tf.cast(up_kernel, dtype),
          tf.stack([shape[0], shape[1] * stride, shape[2] * stride, 6]),
          stride, "SAME")
      loss = (tf.reduce_sum(tf.sin(tf.cast(z, tf.float32))) +
              tf.reduce_sum(tf.cast(y, tf.float32) ** 2))
    return tape.gradient(loss, [x, kernel, up_kernel])

  return [g.numpy() for g in run(x, kernel, up_kernel)]


@pytest.mark.parametrize("stride,padding", [(1, "SAME"), (2, "SAME"),
                                            (1, "VALID"), (2, "VALID")])
@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16])
def test_patch_gradients_equal_tf_gradients(stride, padding, dtype,
                                            native_afterwards):
  rng = np.random.RandomState(0)
  # Odd sizes: SAME padding is asymmetric there.
  x = tf.constant(rng.randn(2, 9, 11, 3), tf.float32)
  kernel = tf.constant(rng.randn(5, 5, 3, 4) * .2, tf.float32)
  up_kernel = tf.constant(rng.randn(3, 3, 6, 4) * .2, tf.float32)
  conv_grad.uninstall()
  assert not conv_grad.installed()
  want = _gradients(x, kernel, up_kernel, stride, padding, dtype)
  conv_grad.install()
  assert conv_grad.installed()
  got = _gradients(x, kernel, up_kernel, stride, padding, dtype)
  tolerance = 1e-5 if dtype == tf.float32 else 2e-2
  if dtype == tf.bfloat16:
    # Two bf16 approximations can be further apart than either is from the
    # exact gradient (measured on an AVX2-only EPYC, stride 1 SAME, kernel:
    # TF's bf16 gradient 1.8% off float32, patches 0.6%, the two 2.3%
    # apart), so bf16 is judged against TF's float32 gradient.
    conv_grad.uninstall()
    want = _gradients(x, kernel, up_kernel, stride, padding, tf.float32)
  for name, a, b in zip(("x", "kernel", "up_kernel"), want, got):
    assert a.shape == b.shape, name
    error = np.max(np.abs(a - b)) / np.max(np.abs(a))
    assert error < tolerance, (name, error)


def test_keras_layers_get_the_same_gradients(native_afterwards):
  tf.keras.utils.set_random_seed(3)
  model = tf.keras.Sequential([
      tf.keras.layers.Conv2D(8, 5, strides=2, padding="same"),
      tf.keras.layers.ReLU(),
      tf.keras.layers.Conv2DTranspose(3, 5, strides=2, padding="same")])
  x = tf.random.uniform([2, 16, 16, 3])
  model(x)

  def gradients():
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.square(model(x) - x))
    return tape.gradient(loss, model.trainable_variables)

  conv_grad.uninstall()
  want = gradients()
  conv_grad.install()
  got = gradients()
  for a, b in zip(want, got):
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-6)


def test_dilated_convolutions_keep_tf_gradient(native_afterwards):
  x = tf.random.uniform([1, 12, 12, 2])
  kernel = tf.random.uniform([3, 3, 2, 2])

  def gradient():  # traced afresh each call, so the gradient is looked up
    @tf.function
    def run(x, kernel):
      with tf.GradientTape() as tape:
        tape.watch(kernel)
        y = tf.nn.conv2d(x, kernel, 1, "SAME", dilations=2)
        loss = tf.reduce_sum(y ** 2)
      return tape.gradient(loss, kernel)
    return run(x, kernel).numpy()

  conv_grad.uninstall()
  try:
    want = gradient()
  except tf.errors.InvalidArgumentError as native_error:
    # TF without oneDNN (its default on CPUs without AVX-512) has no CPU
    # kernel for a dilated Conv2DBackpropFilter; the patch must not step in
    # with a gradient of its own there either.
    conv_grad.install()
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="dilation rates larger than 1"):
      gradient()
    assert "dilation rates larger than 1" in str(native_error)
    return
  conv_grad.install()
  np.testing.assert_allclose(gradient(), want, rtol=1e-5)


def test_auto_picks_patches_on_amd_only():
  assert conv_grad.resolve("auto", vendor="AuthenticAMD") == "patches"
  assert conv_grad.resolve("auto", vendor="GenuineIntel") == "native"
  assert conv_grad.resolve("native", vendor="AuthenticAMD") == "native"
  assert conv_grad.resolve("patches", vendor="GenuineIntel") == "patches"
  with pytest.raises(ValueError, match="conv_kernel_grad"):
    conv_grad.resolve("fast")
