"""A plain ordered stack of layers.

`tf.keras.Sequential` traces its layers symbolically (through autograph) on
first use to infer a functional graph; for the transformer-heavy TCM
transforms that costs tens of seconds per model and buys nothing here, as
the models are subclassed and called eagerly or inside tf.functions.
"""

import tensorflow as tf


class Chain(tf.keras.layers.Layer):
  """Calls `add`-ed layers in order, like Sequential, without the tracing."""

  def __init__(self, name=None, dtype=None):
    super().__init__(name=name, dtype=dtype)
    self.chain = []

  def add(self, layer):
    self.chain.append(layer)

  def call(self, x):
    for layer in self.chain:
      x = layer(x)
    return x
