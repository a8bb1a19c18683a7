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


def cpu_flags(path="/proc/cpuinfo"):
  """The set of feature flags the kernel reports for the first CPU."""
  if not os.path.exists(path):
    return set()
  with open(path) as f:
    for line in f:
      if line.startswith("flags"):
        return set(line.split(":", 1)[1].split())
  return set()


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

  Measured here (TF 2.14.1, oneDNN, AVX512-BF16 CPU): with the remapper on,
  the traced training step computes a different function from the forward
  pass that evaluation and coding run. A mbt2018-mean run reported 26-27 dB on
  its training batches at step 7,000 while the same weights gave -16 dB on the
  same batches outside the training step (eager, or a forward-only graph),
  and Kodak fell from 17.4 dB (step 1,000) to 5.4 dB (step 4,000): the
  optimiser had fitted the fused kernels' behaviour. Resuming that checkpoint
  with the remapper off made the training step report -1.6 dB at once. The
  same fusions crashed the Cheng 2020 residual blocks (remapper error, then a
  segfault). Training must optimise the function the codec runs, so fusion
  stays off while training.
  """
  import tensorflow as tf
  tf.config.optimizer.set_experimental_options({"remapping": False})
