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
