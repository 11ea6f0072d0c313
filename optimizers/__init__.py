"""Optimizers as composable optax transformations.

``build(cfg, total_steps=..., param_labels=...)`` picks a method by ``cfg.name``;
``available()`` lists the names. Methods optax already has are taken from optax
(``_optax_methods.py``); the ones written here follow optax's split into ``scale_by_<name>``
(the direction) and ``<name>(learning_rate, ...)``.

How to add an optimizer:

1. Write ``optimizers/_<name>.py``, one module per algorithm as in ``optax/contrib``: a
   ``NamedTuple`` state with an int32 ``count`` (``_moments.adam_init`` and ``momentum_init``
   start Adam-like ones), ``scale_by_<name>(...)`` for the direction,
   ``<name>(learning_rate, ...)`` chaining it with ``optax.scale_by_learning_rate``, argument
   checks from ``_checks``, and a docstring with the update rule, an example and the paper.
2. Put ``@register("<name>")`` on ``<name>``: ``build`` then accepts ``cfg.name = "<name>"``.
   (A method optax has is one line in ``_optax_methods.py``: ``register("adam", optax.adam)``.)
3. List the module's public names in its ``__all__``: they become ``optimizers.<public name>``.
4. Add its row to ``TABLE`` in ``tests/test_optimizer_battery.py`` (which fails until every
   registered name has one) and a test against an independent NumPy transcription of the
   paper's update rule.

This file needs no edit: it imports every ``optimizers/_*.py`` (which registers its methods)
and re-exports the names in each module's ``__all__``.
"""

import importlib
import pkgutil


def _export_every_module() -> list[str]:
  exported = {}
  for info in pkgutil.iter_modules(__path__):
    if info.name.startswith("_"):
      module = importlib.import_module(f"{__name__}.{info.name}")
      for name in module.__all__:
        if name in exported:
          raise ImportError(f"optimizers.{name} is exported by both {exported[name]} and "
                            f"{info.name}")
        exported[name] = info.name
        globals()[name] = getattr(module, name)
  return sorted(exported)


__all__ = _export_every_module()
