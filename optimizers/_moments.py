"""The zero state of momentum methods: an int32 step count and buffers shaped like the params."""

from typing import Any

import jax
import jax.numpy as jnp
import optax

__all__ = []


def momentum_init(params: optax.Params,
                  mu_dtype: jax.typing.DTypeLike | None = None) -> dict[str, Any]:
  """``count`` (0, int32) and ``mu`` (zeros like ``params``, in ``mu_dtype`` if given): the
  first fields of a momentum method's state, ``State(**momentum_init(params, mu_dtype), ...)``."""
  return {"count": jnp.zeros([], jnp.int32), "mu": optax.tree.zeros_like(params, dtype=mu_dtype)}


def adam_init(params: optax.Params, mu_dtype: jax.typing.DTypeLike | None = None,
              nu_dtype: jax.typing.DTypeLike | None = None) -> dict[str, Any]:
  """``momentum_init`` and Adam's second moment ``nu`` (zeros like ``params``, in ``nu_dtype``
  if given), as ``optax.scale_by_adam`` starts them."""
  return {**momentum_init(params, mu_dtype), "nu": optax.tree.zeros_like(params, dtype=nu_dtype)}
