"""Matrix methods (NorMuon, APOLLO, SWAN) on the 2-D leaves, Adam on every other leaf."""

from collections.abc import Callable
from typing import Any

import jax
import optax

__all__ = ["matrices_and_rest"]

MATRIX, REST = "matrix", "rest"


def matrices_and_rest(
    matrix_tx: optax.GradientTransformation,
    rest_tx: optax.GradientTransformation,
    is_matrix: None | Any | Callable[[optax.Params], Any] = None,
) -> optax.GradientTransformation:
  """``matrix_tx`` on the leaves that ``is_matrix`` marks, ``rest_tx`` on the others.

  Args:
    matrix_tx: the direction of the matrix method.
    rest_tx: the direction for biases, norm scales and any leaf not marked (Adam's, usually).
    is_matrix: a pytree of bools like the parameters, or a function of the parameters
      returning one; ``None`` marks every leaf with exactly two axes (dense kernels).

  Returns:
    An ``optax.GradientTransformation`` (``optax.partition`` of the two).
  """
  def labels(params):
    if is_matrix is None:
      flags = jax.tree.map(lambda p: p.ndim == 2, params)
    else:
      flags = is_matrix(params) if callable(is_matrix) else is_matrix
    return jax.tree.map(lambda flag: MATRIX if flag else REST, flags)

  return optax.partition({MATRIX: matrix_tx, REST: rest_tx}, labels)


def require_matrices(params: optax.Params, method: str) -> None:
  """Raises, naming ``method()`` (which routes other leaves to Adam), unless every leaf is 2-D."""
  for p in jax.tree.leaves(params):
    if p.ndim != 2:
      raise ValueError(f"scale_by_{method} needs (d_in, d_out) matrices, got shape {p.shape}; "
                       f"{method}() sends other leaves to Adam")
