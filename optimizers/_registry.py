"""The names ``optimizers.build`` accepts: each method registers itself where it is defined."""

from collections.abc import Callable

import optax

__all__ = ["available", "get", "register"]

Method = Callable[..., optax.GradientTransformation]

_METHODS: dict[str, Method] = {}


def register(name: str, method: Method | None = None):
  """Makes ``method(learning_rate, ...)`` buildable as ``cfg.name = name``.

  On a method written here, as a decorator on its public function::

    @register("adamp")
    def adamp(learning_rate, b1=0.9, ...): ...

  On one defined elsewhere, as a call: ``register("adam", optax.adam)``. Returns ``method``
  unchanged. A name is taken once: registering another function under it is an error.
  """
  def add(method: Method) -> Method:
    if _METHODS.get(name, method) is not method:
      raise ValueError(f"optimizer name {name!r} is already taken by "
                       f"{_METHODS[name].__module__}.{_METHODS[name].__qualname__}")
    _METHODS[name] = method
    return method

  return add if method is None else add(method)


def available() -> list[str]:
  """Names accepted by ``build`` as ``cfg.name``."""
  return sorted(_METHODS)


def get(name: str) -> Method:
  """The method registered as ``name``; a one-line error listing the valid names otherwise."""
  if name not in _METHODS:
    raise ValueError(f"unknown optimizer {name!r}: valid names are {', '.join(available())}")
  return _METHODS[name]
