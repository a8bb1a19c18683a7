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

# Quality 0, below CompressAI's table, two of its steps (~1.9x each) below
# quality 1; only variable-rate networks serve it. Our mbt2018-mean-vr's q1
# lands at 0.204 bpp / 27.87 dB on Kodak (CompressAI's mbt2018-mean q1: 0.124
# bpp / 27.70 dB), so reaching ~0.1 bpp takes a smaller lambda than q1's.
LOW_LAMBDAS = {"mse": 0.0005, "ms-ssim": 0.66}


def quality_lambda(metric, quality):
  """The lambda of a quality number (0 from LOW_LAMBDAS, 1..8 CompressAI's)."""
  if metric not in LAMBDAS:
    raise ValueError(f"metric must be one of {sorted(LAMBDAS)}, got {metric!r}")
  if quality == 0:
    return LOW_LAMBDAS[metric]
  if not 1 <= quality <= len(LAMBDAS[metric]):
    raise ValueError(f"quality must be in 0..{len(LAMBDAS[metric])}, "
                     f"got {quality}")
  return LAMBDAS[metric][quality - 1]


def lambda_quality(metric, lmbda):
  """The quality number of a lambda of the tables, else None."""
  lmbda = float(lmbda)
  if lmbda == LOW_LAMBDAS.get(metric):
    return 0
  table = LAMBDAS.get(metric, ())
  return table.index(lmbda) + 1 if lmbda in table else None

# Per architecture: (first quality of the wide config, narrow (N, M), wide (N, M)).
_WIDTHS = {
    "bmshj2018-factorized": (6, (128, 192), (192, 320)),
    "bmshj2018-hyperprior": (6, (128, 192), (192, 320)),
    "mbt2018-mean": (5, (128, 192), (192, 320)),
    "mbt2018": (5, (192, 192), (192, 320)),
    # Informer keeps mbt2018's transforms and its (N, M) by quality.
    "informer": (5, (192, 192), (192, 320)),
    # Cheng 2020 has one width (N = M): 128 for the low rates, 192 above
    # (CompressAI's zoo has 6 qualities; q7-8 keep N = 192).
    "cheng2020-anchor": (4, (128, 128), (192, 192)),
    "cheng2020-attn": (4, (128, 128), (192, 192)),
    "cheng2020-gmm": (4, (128, 128), (192, 192)),
}

QUALITIES = tuple(range(1, 9))

# Architectures with their own lambda ladder: name -> ((N, M), MSE lambdas by
# quality). TCM has one registry name per size (the size is the architecture,
# as N is fixed per released model) and its six released MSE lambdas
# (ARCHITECTURES.md 6.4) as qualities 1..6; it was not released for MS-SSIM.
TCM_LAMBDAS = (0.0025, 0.0035, 0.0067, 0.0130, 0.025, 0.05)
_LADDERS = {
    "tcm-s": ((64, 320), {"mse": TCM_LAMBDAS}),
    "tcm-m": ((96, 320), {"mse": TCM_LAMBDAS}),
    "tcm-l": ((128, 320), {"mse": TCM_LAMBDAS}),
}


# Variable-rate architectures: name -> the networks that serve its qualities,
# each ((N, M), qualities), narrowest first. One network (one weight file)
# serves every quality of its group. mbt2018-mean-vr widens where CompressAI's
# mbt2018-mean does: N=128/M=192 for q1-q4, N=192/M=320 from q5 (the narrow
# transforms cannot reconstruct the high rates: RDdata/FLAGSHIP.md).
VARIABLE_RATE = {
    "mbt2018-mean-vr": (((128, 192), (0, 1, 2, 3, 4)), ((192, 320), (5, 6, 7))),
}


def variable_rate_group(name, quality=None):
  """((N, M), qualities) of the network of a variable-rate architecture that
  serves `quality` (None: the first, narrowest one)."""
  groups = VARIABLE_RATE[name]
  if quality is None:
    return groups[0]
  for group in groups:
    if quality in group[1]:
      return group
  every = qualities(name)
  raise ValueError(f"{name} quality must be in {every[0]}..{every[-1]}, "
                   f"got {quality}")


def variable_rate_lambdas(name, metric="mse", quality=None):
  """The lambda ladder, lowest first, of the network of a variable-rate
  architecture that serves `quality` (None: the narrowest network)."""
  if metric not in LAMBDAS:
    raise ValueError(f"metric must be one of {sorted(LAMBDAS)}, got {metric!r}")
  _, rungs = variable_rate_group(name, quality)
  return tuple(quality_lambda(metric, q) for q in rungs)


def ladder_lambdas(ladder, metric="mse"):
  """The lambdas of a variable-rate ladder given as qualities ("1,2,3" or
  [1, 2, 3]), in increasing order."""
  if isinstance(ladder, str):
    ladder = ladder.split(",")
  table = LAMBDAS[metric]
  try:
    rungs = [int(q) for q in ladder]
  except ValueError:
    rungs = []
  if (not rungs or any(not 0 <= q <= len(table) for q in rungs)
      or rungs != sorted(set(rungs))):
    raise ValueError(f"a ladder is increasing qualities in 0..{len(table)}, "
                     f"got {','.join(str(q) for q in ladder)}")
  return tuple(quality_lambda(metric, q) for q in rungs)


def qualities(name):
  """The qualities an architecture defines (1..8, 1..6 for TCM, the rungs of
  a variable-rate model's networks)."""
  if name in VARIABLE_RATE:
    return tuple(q for _, rungs in VARIABLE_RATE[name] for q in rungs)
  if name in _LADDERS:
    return tuple(range(1, len(TCM_LAMBDAS) + 1))
  return QUALITIES


def register_model(name):
  def decorator(cls):
    MODELS[name] = cls
    cls.model_name = name
    return cls
  return decorator


def quality_config(name, quality, metric="mse"):
  """(N, M, lambda) for an architecture at a quality."""
  if name in VARIABLE_RATE:
    (n, m), rungs = variable_rate_group(name, quality)
    return n, m, variable_rate_lambdas(name, metric, quality)[
        rungs.index(quality)]
  if name in _LADDERS:
    (n, m), ladders = _LADDERS[name]
    if metric not in ladders:
      raise ValueError(f"{name} has no {metric!r} lambdas; it has "
                       f"{sorted(ladders)}")
    if quality not in qualities(name):
      raise ValueError(f"{name} quality must be in 1..{len(ladders[metric])}, "
                       f"got {quality}")
    return n, m, ladders[metric][quality - 1]
  if name not in _WIDTHS:
    raise KeyError(f"unknown model {name!r}; known: "
                   f"{sorted(_WIDTHS) + sorted(_LADDERS) + sorted(VARIABLE_RATE)}")
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
