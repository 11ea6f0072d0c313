"""The pieces every model here is built from: one activation table and one normalisation factory.

Each model picks its activation and its normalisation by name from these, so that a name means
the same function in every model (``"gelu"`` is the same curve in the GPT and in the MLP) and a
new choice added here is offered everywhere at once. A model narrows the choices where one does
not fit it (the token models take no ``"batch"`` norm), and checks the name in ``check()``.
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

NORMS = ("batch", "layer", "rms", "none")
TOKEN_NORMS = ("layer", "rms", "none")  # per-position norms: no statistics across the batch
CONV_NORMS = ("batch", "layer", "none")


def _identity(x):
  return x


def norm_layer(kind: str, name: str, *, train: bool | None = None, momentum: float = 0.9,
               zero_scale: bool = False):
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

  Returns:
    A callable ``x -> normalised x``.
  """
  scale_init = nn.initializers.zeros if zero_scale else nn.initializers.ones
  if kind == "batch":
    if train is None:
      raise ValueError("norm_layer('batch', ...) needs train=True or train=False")
    return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=1e-5,
                        scale_init=scale_init, name=name)
  if kind == "layer":
    return nn.LayerNorm(scale_init=scale_init, name=name)
  if kind == "rms":
    return nn.RMSNorm(scale_init=scale_init, name=name)
  if kind == "none":
    return _identity
  raise ValueError(f"norm kind {kind!r}: valid are {sorted(NORMS)}")
