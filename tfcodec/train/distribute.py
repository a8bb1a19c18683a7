"""tf.distribute strategies for training, and who writes what in a cluster.

  none          the default strategy: one device, no collectives.
  mirrored      one process, every local GPU (or the CPU alone, where it
                degenerates to a single replica).
  multi_worker  one process per machine, described by the TF_CONFIG
                environment variable; gradients are all-reduced with the RING
                collective implementation, which runs over gRPC on CPUs
                (NCCL needs GPUs).

Every worker runs the same steps and holds the same weights. The chief
(task "chief", or worker 0 when the cluster has no chief) owns the run
directory; every other worker writes its checkpoints, log and export under
`<run_dir>/worker-<index>/`, because all workers must take part in every
checkpoint save.
"""

import json
import os

import tensorflow as tf

STRATEGIES = ("none", "mirrored", "multi_worker")


def create_strategy(name):
  """Builds a strategy; call it before any other TensorFlow work."""
  if name == "none":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multi_worker":
    if "TF_CONFIG" not in os.environ:
      raise ValueError("--strategy=multi_worker needs the TF_CONFIG environment "
                       "variable describing the cluster and this task")
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING)
    return tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=options)
  raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")


def task():
  """(task type, index, is_chief) of this process from TF_CONFIG."""
  config = json.loads(os.environ.get("TF_CONFIG", "{}"))
  if not config:
    return "chief", 0, True
  kind = config.get("task", {}).get("type", "worker")
  index = int(config.get("task", {}).get("index", 0))
  has_chief = "chief" in config.get("cluster", {})
  is_chief = kind == "chief" or (kind == "worker" and index == 0 and
                                 not has_chief)
  return kind, index, is_chief


def worker_dir(run_dir, strategy_name):
  """Where this process writes: the run directory itself for the chief."""
  if strategy_name != "multi_worker":
    return run_dir
  kind, index, is_chief = task()
  return run_dir if is_chief else os.path.join(run_dir, f"{kind}-{index}")
