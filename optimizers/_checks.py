"""Argument checks, dtype helpers and the weight-decay step shared by our optimizers."""

from typing import Any

import jax
import jax.numpy as jnp
import optax

from plain_numbers import is_number

__all__ = []

# The range checks act on plain numbers only: inside ``optax.inject_hyperparams``
# hyperparameters arrive as arrays (``optimizers.build`` checks the config's values before that).


def require_nonnegative(name: str, value: Any) -> None:
  if is_number(value) and not value >= 0:
    raise ValueError(f"{name}={value} must be >= 0")


def require_positive(name: str, value: Any, why: str = "") -> None:
  if is_number(value) and not value > 0:
    raise ValueError(f"{name}={value} must be > 0{f' ({why})' if why else ''}")


def require_beta(name: str, value: Any) -> None:
  if is_number(value) and not 0 <= value < 1:
    raise ValueError(f"{name}={value} must lie in [0, 1)")


def upcast(x: jax.Array) -> jax.Array:
  """At least float32: bfloat16 sums, moments and step sizes are computed in float32."""
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def decayed_weights(weight_decay: Any, mask: Any = None) -> optax.GradientTransformation:
  """``optax.add_decayed_weights``, or the identity for a weight decay of exactly 0 (which then
  needs no ``params`` in ``update``)."""
  if is_number(weight_decay) and weight_decay == 0:
    return optax.identity()
  return optax.add_decayed_weights(weight_decay, mask)
