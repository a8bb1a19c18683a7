"""Models, one module per paper, and the registry that names them."""

from tfcodec.models.registry import (
    LAMBDAS, MODELS, QUALITIES, VARIABLE_RATE, create_model, ladder_lambdas,
    qualities, quality_config, register_model)
# Importing the modules registers their models.
from tfcodec.models import (  # noqa: E402,F401
    bmshj2018, cheng2020, gained, informer2022, mbt2018, tcm2023)

__all__ = ["LAMBDAS", "MODELS", "QUALITIES", "VARIABLE_RATE", "create_model",
           "ladder_lambdas", "qualities", "quality_config", "register_model"]
