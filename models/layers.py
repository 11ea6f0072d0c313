"""The pieces every model here is built from: one activation table and one normalisation factory.

Each model picks its activation and its normalisation by name from these, so that a name means
the same function in every model (``"gelu"`` is the same curve in the GPT and in the MLP) and a
new choice added here is offered everywhere at once. A model narrows the choices where one does
not fit it (the token models take no ``"batch"`` norm), and checks the name in ``check()``.

Precision is picked the same way: every model has a compute ``dtype`` and a ``param_dtype``,
names from ``DTYPES``. Parameters are stored in ``param_dtype`` and cast to ``dtype`` where they
are used, so with ``dtype="bfloat16"`` the activations and matmuls are bfloat16 while the
parameters (and so the gradients and the optimizer state built from them) stay float32. What
loses most in low precision is kept in float32: softmax (``softmax_f32``), the normalisations'
statistics (Flax reduces them in float32) and, in ``training``, the loss.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS = {
    # "gelu" is the exact, erf-based curve, which most models here were written with;
    # the tanh approximation (GPT-2, BERT) is a different function and keeps its own name.
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "tanh": jnp.tanh,
}

# bfloat16 keeps float32's exponent range (8 bits) with an 8-bit significand, so it needs no
# loss scaling; float16 (5-bit exponent) would underflow small gradients without it, and there
# is no loss scaling here, so it is not offered.
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

NORMS = ("batch", "layer", "rms", "none")
TOKEN_NORMS = ("layer", "rms", "none")  # per-position norms: no statistics across the batch
CONV_NORMS = ("batch", "layer", "none")


def _identity(x):
  return x


def softmax_f32(logits, axis: int = -1):
  """Softmax computed in float32 and returned in the dtype of ``logits``.

  Its exponentials and their sum are where a low-precision softmax goes wrong (the sum of
  many bfloat16 terms loses the small ones); the matmuls on either side stay in ``dtype``.
  """
  return jax.nn.softmax(logits.astype(jnp.float32), axis=axis).astype(logits.dtype)


def norm_layer(kind: str, name: str, *, train: bool | None = None, momentum: float = 0.9,
               zero_scale: bool = False, dtype: str = "float32", param_dtype: str = "float32"):
  """The normalisation ``kind`` (one of ``NORMS``) over the last axis, as a module named ``name``.

  Args:
    kind: ``"batch"`` (BatchNorm: batch statistics when training, running averages otherwise),
      ``"layer"`` (LayerNorm), ``"rms"`` (RMSNorm) or ``"none"`` (the identity, no parameters).
    name: the module name; models keep ``norm`` in it, which is how ``models.param_roles`` tells
      the norm parameters apart.
    train: whether BatchNorm uses and updates the batch statistics; required for ``"batch"``
      (a silent default would evaluate with the statistics of the batch), ignored otherwise.
    momentum: BatchNorm's running-average decay.
    zero_scale: start the scale at zero, so that a residual branch ending in this norm starts
      as nothing (Goyal et al., 2017); ``"none"`` has no scale to zero.
    dtype: the output's dtype, a name from ``DTYPES`` (the statistics are float32 always).
    param_dtype: the dtype of the scale and offset (and BatchNorm's running averages are
      float32 always).

  Returns:
    A callable ``x -> normalised x``.
  """
  scale_init = nn.initializers.zeros if zero_scale else nn.initializers.ones
  dtypes = dict(dtype=DTYPES[dtype], param_dtype=DTYPES[param_dtype])
  if kind == "batch":
    if train is None:
      raise ValueError("norm_layer('batch', ...) needs train=True or train=False")
    return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=1e-5,
                        scale_init=scale_init, name=name, **dtypes)
  if kind == "layer":
    return nn.LayerNorm(scale_init=scale_init, name=name, **dtypes)
  if kind == "rms":
    return nn.RMSNorm(scale_init=scale_init, name=name, **dtypes)
  if kind == "none":
    return _identity
  raise ValueError(f"norm kind {kind!r}: valid are {sorted(NORMS)}")
