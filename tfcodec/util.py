"""Small process-level helpers."""

import logging
import os


def quiet_tensorflow():
  """Silences TF/tfc start-up chatter so CLI output stays readable."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf
  tf.get_logger().setLevel(logging.ERROR)
  from absl import logging as absl_logging
  absl_logging.set_verbosity(absl_logging.ERROR)
