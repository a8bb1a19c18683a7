"""Entropy models: thin, float32-pinned wrappers over tensorflow-compression.

Everything that turns latents into bits lives here, so the precision choices
(range-coder precision, tail mass, the scale table) are made in one place.

* `FactorizedPrior`: a per-channel learned density (Ballé 2018, appendix 6.1)
  with `tfc.ContinuousBatchedEntropyModel`; codes z, or y in the factorized model.
* `GaussianConditional`: mean-scale Gaussian with a 64-entry log-spaced scale
  table in [0.11, 256] (`tfc.LocationScaleIndexedEntropyModel`). Networks
  predict a continuous *scale index*; coding rounds it to the nearest table
  entry (`coding_scale_indexes`), so the encoder and the decoder pick the same
  one.
"""

from tfcodec.entropy.models import (
    FactorizedPrior, GaussianConditional, SCALE_MIN, SCALE_MAX, NUM_SCALES,
    coding_scale_indexes, scale_from_index)

__all__ = ["FactorizedPrior", "GaussianConditional", "SCALE_MIN", "SCALE_MAX",
           "NUM_SCALES", "coding_scale_indexes", "scale_from_index"]
