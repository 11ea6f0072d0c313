"""Argument checks and dtype helpers shared by the optimizers written here."""

from typing import Any

import jax
import jax.numpy as jnp


def _is_number(value: Any) -> bool:
  # Only plain numbers are checked: inside inject_hyperparams they arrive as arrays.
  return isinstance(value, int | float) and not isinstance(value, bool)


def require_nonnegative(name: str, value: Any) -> None:
  if _is_number(value) and not value >= 0:
    raise ValueError(f"{name}={value} must be >= 0")


def require_beta(name: str, value: Any) -> None:
  if _is_number(value) and not 0 <= value < 1:
    raise ValueError(f"{name}={value} must lie in [0, 1)")


def upcast(x: jax.Array) -> jax.Array:
  """At least float32: bfloat16 sums, moments and step sizes are computed in float32."""
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))
