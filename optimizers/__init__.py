"""Optimizers as composable optax transformations.

``build(cfg, total_steps=..., param_labels=...)`` picks a method by ``cfg.name``;
``available()`` lists the names. Methods optax already has are taken from optax.
"""

from optimizers._build import available, build, learning_rate, learning_rates, register
from optimizers._schedules import SCHEDULES, build_schedule

__all__ = ["SCHEDULES", "available", "build", "build_schedule", "learning_rate",
           "learning_rates", "register"]
