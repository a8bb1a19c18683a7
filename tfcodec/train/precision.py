"""Which Keras dtype policy to train in, from what the CPU can do.

bfloat16 matmuls and convolutions only pay off with hardware support: AMX
(`amx_bf16`) or AVX512-BF16 (`avx512_bf16`). Without either, oneDNN emulates
bf16 and a training step gets several times slower than float32, so "auto"
falls back to float32 there. Sensitive parts (entropy models, the last layers
of g_a and g_s, the hyper transforms, GDN) are pinned to float32 in the
models themselves, whatever the policy.
"""

import os

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
PRECISIONS = ("auto", "float32", "mixed_bfloat16")


def cpu_field(name, path="/proc/cpuinfo"):
  """The first CPU's `name` field in /proc/cpuinfo ("" when absent)."""
  if not os.path.exists(path):
    return ""
  with open(path) as f:
    for line in f:
      if line.startswith(name):
        return line.split(":", 1)[1].strip()
  return ""


def cpu_flags(path="/proc/cpuinfo"):
  """The set of feature flags the kernel reports for the first CPU."""
  return set(cpu_field("flags", path).split())


def has_bf16_hardware(flags=None):
  flags = cpu_flags() if flags is None else flags
  return any(flag in flags for flag in BF16_CPU_FLAGS)


def resolve_precision(precision, flags=None):
  """'auto' -> 'mixed_bfloat16' on bf16-capable CPUs, else 'float32'."""
  if precision not in PRECISIONS:
    raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
  if precision != "auto":
    return precision
  return "mixed_bfloat16" if has_bf16_hardware(flags) else "float32"


def use_inference_arithmetic_in_training():
  """Turns off Grappler's remapper (op fusion) for the whole process.

  History, so nobody re-learns it: two sessions of training produced weights
  that scored 26 dB on their training batches and 5-16 dB on Kodak. The
  cause was not fusion but tfc.GDN's `if self.alpha == 1` evaluating to
  False inside the traced training step under `absl.app.run`, so training
  optimised x / (beta + gamma x) instead of |x| (fixed in
  tfcodec.layers.exact.GDN; tests/test_traced_equals_eager.py). That wrong
  function divides by values near zero, and on it the remapper's fused
  kernels visibly changed results (a resume with fusion on reported 26.8 dB,
  off -1.6 dB), which is how fusion first came under suspicion. Fusion stays
  off while training so the optimiser sees the same unfused arithmetic as
  evaluation and coding; measured here its cost is small (a fixed-GDN
  mbt2018-mean step at 8x128^2 bf16 runs 0.36-0.40 s with it off).
  """
  import tensorflow as tf
  tf.config.optimizer.set_experimental_options({"remapping": False})
