"""The memory an optimizer's state takes, measured from its shapes alone.

``state_bytes(tx, params)`` traces ``tx.init`` with ``jax.eval_shape``: nothing is allocated, so
it works on abstract parameters (``jax.ShapeDtypeStruct``) of any size, e.g. a model initialised
with ``jax.eval_shape`` as ``training.prepare`` does.
"""

import math

import jax
import optax

__all__ = ["bytes_per_parameter", "state_bytes"]


def _array_bytes(tree) -> int:
  """Bytes of the array leaves of ``tree`` (size times itemsize); other leaves count nothing."""
  return sum(math.prod(leaf.shape) * leaf.dtype.itemsize for leaf in jax.tree.leaves(tree)
             if hasattr(leaf, "shape") and hasattr(leaf, "dtype"))


def state_bytes(optimizer: optax.GradientTransformation, params: optax.Params) -> int:
  """Bytes of the state ``optimizer.init(params)`` would hold, found without allocating it.

  Args:
    optimizer: any optax transformation (``optimizers.build``'s, a chain, a partition, ...).
    params: the parameters, as arrays or as ``jax.ShapeDtypeStruct`` leaves.

  Returns:
    The sum over the state's array leaves of ``size * dtype.itemsize``: the buffers that scale
    with the parameters and every scalar (step counts, injected hyperparameters, PRNG keys).
    Leaves that are not arrays (``None``, empty states) count nothing.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> params = {"w": jax.ShapeDtypeStruct((1000, 1000), jnp.float32)}
    >>> state_bytes(optax.adam(1e-3), params)  # m and v, 4 bytes each, and an int32 count
    8000004
  """
  return _array_bytes(jax.eval_shape(optimizer.init, params))


def bytes_per_parameter(optimizer: optax.GradientTransformation, params: optax.Params) -> float:
  """``state_bytes`` divided by the number of parameter entries (8.0 for Adam on float32,
  plus a little for its scalars)."""
  count = sum(math.prod(jax.numpy.shape(leaf)) for leaf in jax.tree.leaves(params))
  if count == 0:
    raise ValueError("bytes_per_parameter needs at least one parameter entry; params has none")
  return state_bytes(optimizer, params) / count
