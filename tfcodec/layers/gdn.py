"""GDN / IGDN (Ballé et al. 2016) on tensorflow-compression's parameterisation.

`tfc.GDN` cannot run under the `mixed_bfloat16` policy (its reparameterised
beta/gamma are float32 variables), so each GDN is built as a float32 *island*:
Keras casts the bf16 activations in and the next convolution casts them back.

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
  return exact.GDN(inverse=inverse, name=name, dtype="float32", **_FORMS[form])


def igdn(name=None, form="simplified"):
  return gdn(name=name, form=form, inverse=True)
