"""What a config value must be to count as an integer or a number, for every package's checks.

Models, optimizers and data know nothing of each other, and training wires them, so the one
definition lives below all four. ``bool`` is an ``int`` subclass, but ``True`` for a width or a
learning rate is a slip, never a choice: neither predicate accepts it. NumPy scalars count (they
register as ``numbers.Integral`` / ``numbers.Real``); JAX arrays do not (inside
``optax.inject_hyperparams`` hyperparameters arrive as arrays, and are not range-checked).
"""

import numbers
from typing import Any


def is_int(value: Any) -> bool:
  """An integer (Python or NumPy), not a bool."""
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
  """A real number (Python or NumPy, integer or float), not a bool."""
  return isinstance(value, numbers.Real) and not isinstance(value, bool)
