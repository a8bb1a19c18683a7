"""GDN / IGDN (Ballé et al. 2016) on tensorflow-compression's parameterisation.

`tfc.GDN` cannot run under the `mixed_bfloat16` policy (it mixes its float32
reparameterised beta/gamma with bf16 activations). tfcodec's GDN casts them to
the compute dtype instead, so under that policy GDN runs in bf16 like the
convolutions around it: measured with bench/train_throughput.py's model
(bmshj2018-hyperprior, 8x256^2, avx512_bf16, no AMX) a training step costs
2.25 CPU-s with bf16 GDN against 2.77 CPU-s with float32 islands (Keras
casting the activations in and out), and 2.09 CPU-s with ReLU instead of GDN.
Coding never uses this path: freeze() switches GDN to exact integer sums.

Two forms are offered:
  * "simplified" (tfc's default, Johnston et al. 2019, "Computationally
    efficient neural image compression"): y = x / (beta + gamma |x|).
    No square, no square root: the cheaper element-wise path on CPU.
  * "classic" (Ballé 2016, as in ARCHITECTURES.md 0.1):
    y = x / sqrt(beta + gamma x^2).
Both have C + C^2 parameters, so parameter counts do not depend on the form.
"""

from tfcodec.layers import exact

_FORMS = {
    "simplified": dict(alpha_parameter=1, epsilon_parameter=1),
    "classic": dict(alpha_parameter=2, epsilon_parameter=.5),
}


def gdn(name=None, form="simplified", inverse=False):
  if form not in _FORMS:
    raise ValueError(f"Unknown GDN form {form!r}; expected one of {sorted(_FORMS)}.")
  return exact.GDN(inverse=inverse, name=name, **_FORMS[form])


def igdn(name=None, form="simplified"):
  return gdn(name=name, form=form, inverse=True)
