"""Convolution kernel gradients without oneDNN's backprop-filter kernel.

Why: on a 2-core AMD EPYC (Zen 4: AVX512-VNNI/BF16, no AMX; 2026-12-04) TF
2.14's oneDNN corrupted the heap while training TCM-S and Cheng 2020 (glibc
"corrupted double-linked list" / "free(): invalid pointer", or a segfault),
in float32 and bf16, with any ONEDNN_MAX_CPU_ISA; gdb caught the corruption
in `MklConvCustomBackpropFilter`'s reorder. Only TF_ENABLE_ONEDNN_OPTS=0
avoided it, at about 4x the step time. Measured with the TCM-S q2 recipe, one
intra-op thread each, side by side: the stock gradient aborted between steps
40 and 50; with this module the run finished its 80 steps, at 4.96 s/step
against 4.23 s/step before the crash.

The kernel gradient of a convolution is a correlation of its input with the
output gradient: for every kernel tap (kh, kw) and channel pair (ci, co),
sum over batch and positions of x[.., h*s + kh, w*s + kw, ci] *
dy[.., h, w, co]. `tf.image.extract_patches` lays out exactly the conv's
receptive fields ((kh, kw, ci) flattened, same SAME/VALID padding rule), so
the gradient is one matmul of patches^T by dy. The input gradients keep
TF's own kernels (oneDNN's backprop-input never showed the fault).

`install()` swaps the registered gradients of Conv2D and Conv2DBackpropInput
(the op behind conv2d_transpose) for the whole process; `uninstall()`
restores them. Convolutions this does not cover (dilated, EXPLICIT padding,
NCHW) keep TF's gradient.
"""

import tensorflow as tf
from tensorflow.python.framework import ops

from tfcodec.train.precision import cpu_field

MODES = ("auto", "native", "patches")

_registry = ops._gradient_registry._registry  # pylint: disable=protected-access
_ORIGINAL = {name: _registry[name]["type"]
             for name in ("Conv2D", "Conv2DBackpropInput")}


def kernel_gradient(x, dy, kernel_shape, strides, padding):
  """d loss / d kernel for y = conv2d(x, kernel, strides, padding), NHWC."""
  kh, kw, ci, co = kernel_shape
  patches = tf.image.extract_patches(
      x, sizes=[1, kh, kw, 1], strides=strides, rates=[1, 1, 1, 1],
      padding=padding)
  patches = tf.reshape(patches, [-1, kh * kw * ci])
  dy = tf.reshape(dy, [-1, co])
  return tf.reshape(tf.matmul(patches, dy, transpose_a=True), kernel_shape)


def _text_attr(op, name):
  value = op.get_attr(name)
  return value.decode() if isinstance(value, bytes) else value


def _covered(op):
  return (_text_attr(op, "data_format") == "NHWC"
          and list(op.get_attr("dilations")) == [1, 1, 1, 1]
          and _text_attr(op, "padding") in ("SAME", "VALID"))


def _conv2d_grad(op, grad):
  if not _covered(op):
    return _ORIGINAL["Conv2D"](op, grad)
  x, kernel = op.inputs
  strides, padding = op.get_attr("strides"), _text_attr(op, "padding")
  dx = tf.raw_ops.Conv2DBackpropInput(
      input_sizes=tf.shape(x), filter=kernel, out_backprop=grad,
      strides=strides, padding=padding, data_format="NHWC")
  return dx, kernel_gradient(x, grad, kernel.shape, strides, padding)


def _conv2d_backprop_input_grad(op, grad):
  # y = conv2d_transpose(dy, kernel) is the input gradient of a conv2d whose
  # input has y's shape; its kernel gradient pairs y's gradient (the conv's
  # "input") with dy (its "output gradient").
  if not _covered(op):
    return _ORIGINAL["Conv2DBackpropInput"](op, grad)
  _, kernel, dy = op.inputs
  strides, padding = op.get_attr("strides"), _text_attr(op, "padding")
  d_dy = tf.nn.conv2d(grad, kernel, strides, padding)
  return None, kernel_gradient(grad, dy, kernel.shape, strides, padding), d_dy


def installed():
  return _registry["Conv2D"]["type"] is _conv2d_grad


def install():
  _registry["Conv2D"]["type"] = _conv2d_grad
  _registry["Conv2DBackpropInput"]["type"] = _conv2d_backprop_input_grad


def uninstall():
  for name, function in _ORIGINAL.items():
    _registry[name]["type"] = function


def resolve(mode, vendor=None):
  """'auto' -> 'patches' on AMD CPUs (where the fault was seen), else
  'native' (the Xeons of earlier sessions trained thousands of steps with
  TF's kernels)."""
  if mode not in MODES:
    raise ValueError(f"conv_kernel_grad must be one of {MODES}, got {mode!r}")
  if mode != "auto":
    return mode
  vendor = cpu_field("vendor_id") if vendor is None else vendor
  return "patches" if vendor == "AuthenticAMD" else "native"


def configure(mode):
  """Installs or uninstalls per `mode`; returns the resolved mode."""
  mode = resolve(mode)
  if mode == "patches":
    install()
  else:
    uninstall()
  return mode
