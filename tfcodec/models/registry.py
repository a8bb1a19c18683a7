"""Model registry and the quality -> (N, M, lambda) tables, in one place.

Qualities follow CompressAI's zoo (ARCHITECTURES.md 1-4, 9) so results line up
with its published curves: the same (N, M) split and the same lambda ladder
(rate + lambda * 255^2 * MSE, or rate + lambda * (1 - MS-SSIM)).
"""

MODELS = {}

# CompressAI's lambda ladder, quality 1..8.
LAMBDAS = {
    "mse": (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800),
    "ms-ssim": (2.40, 4.58, 8.73, 16.64, 31.73, 60.50, 115.37, 220.00),
}

# Per architecture: (first quality of the wide config, narrow (N, M), wide (N, M)).
_WIDTHS = {
    "bmshj2018-factorized": (6, (128, 192), (192, 320)),
    "bmshj2018-hyperprior": (6, (128, 192), (192, 320)),
    "mbt2018-mean": (5, (128, 192), (192, 320)),
    "mbt2018": (5, (192, 192), (192, 320)),
    # Cheng 2020 has one width (N = M): 128 for the low rates, 192 above
    # (CompressAI's zoo has 6 qualities; q7-8 keep N = 192).
    "cheng2020-anchor": (4, (128, 128), (192, 192)),
    "cheng2020-attn": (4, (128, 128), (192, 192)),
    "cheng2020-gmm": (4, (128, 128), (192, 192)),
}

QUALITIES = tuple(range(1, 9))


def register_model(name):
  def decorator(cls):
    MODELS[name] = cls
    cls.model_name = name
    return cls
  return decorator


def quality_config(name, quality, metric="mse"):
  """(N, M, lambda) for an architecture at a quality."""
  if name not in _WIDTHS:
    raise KeyError(f"unknown model {name!r}; known: {sorted(_WIDTHS)}")
  if quality not in QUALITIES:
    raise ValueError(f"quality must be in 1..8, got {quality}")
  if metric not in LAMBDAS:
    raise ValueError(f"metric must be one of {sorted(LAMBDAS)}, got {metric!r}")
  first_wide, narrow, wide = _WIDTHS[name]
  n, m = wide if quality >= first_wide else narrow
  return n, m, LAMBDAS[metric][quality - 1]


def create_model(name, quality=None, metric="mse", **overrides):
  """Builds a registered model for a quality (or with explicit N/M/lmbda)."""
  if name not in MODELS:
    raise KeyError(f"unknown model {name!r}; known: {sorted(MODELS)}")
  kwargs = {}
  if quality is not None:
    n, m, lmbda = quality_config(name, quality, metric)
    kwargs = dict(N=n, M=m, lmbda=lmbda)
  kwargs.update(metric=metric)
  kwargs.update(overrides)
  return MODELS[name](**kwargs)
