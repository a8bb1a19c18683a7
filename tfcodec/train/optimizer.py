"""Adam with a larger learning rate for the factorized priors' parameters.

Why: Adam moves every parameter by about lr per step whatever its gradient's
size, and a factorized prior's density is parametrised in log-like
coordinates, so narrowing it tenfold from its initial width takes ~ln(10)/lr
steps: 4,600 at lr 5e-4, 11,500 at 2e-4. A from-scratch model pays the wide
prior's bits on z all that time (measured: TCM-S's z still cost 0.21 bpp
after 771 steps, half its rate; cheng2020-gmm's 0.115 after 529), and the
rate term meanwhile pushes h_a to make z uninformative. The priors hold a few
thousand parameters fed by every latent of the batch, so a higher rate for
them alone is cheap and does not disturb the transforms.
"""

import tensorflow as tf

from tfcodec.entropy import FactorizedPrior


def prior_variables(model):
  """The trainable variables of every factorized prior in `model`."""
  variables = []
  for module in model.submodules:
    if isinstance(module, FactorizedPrior):
      variables.extend(module.trainable_variables)
  return variables


class Adam(tf.keras.optimizers.Adam):
  """Keras Adam; `boosted` variables step `multiplier` times further.

  The optimizer state (moments, iterations) is Adam's own, so checkpoints of
  the plain Keras Adam restore into it and back.
  """

  def __init__(self, learning_rate, boosted=(), multiplier=1., **kwargs):
    super().__init__(learning_rate, **kwargs)
    self._boosted = {self._var_key(v) for v in boosted}
    self._multiplier = float(multiplier)

  def update_step(self, gradient, variable):
    if self._multiplier == 1. or self._var_key(variable) not in self._boosted:
      return super().update_step(gradient, variable)
    before = tf.identity(variable)
    super().update_step(gradient, variable)
    # Adam's step, scaled: same direction and moments, `multiplier` x length.
    variable.assign(before + self._multiplier * (variable - before))
