"""Optimizers as composable optax transformations.

``build(cfg, total_steps=..., param_labels=...)`` picks a method by ``cfg.name``;
``available()`` lists the names. Methods optax already has are taken from optax; the ones
written here follow optax's split into ``scale_by_<name>`` (the direction) and
``<name>(learning_rate, ...)``.
"""

from optimizers._adagrad_norm import adagrad_norm, scale_by_adagrad_norm
from optimizers._adalayer import adalayer, scale_by_adalayer
from optimizers._adamp import adamp, scale_by_adamp
from optimizers._build import available, build, learning_rate, learning_rates, register
from optimizers._diffgrad import diffgrad, scale_by_diffgrad
from optimizers._ngn import ngn, ngn_m, ngn_md, scale_by_ngn, scale_by_ngn_m, scale_by_ngn_md
from optimizers._schedules import SCHEDULES, build_schedule

for _method in (ngn, ngn_m, ngn_md, adalayer, diffgrad, adamp, adagrad_norm):
  register(_method.__name__, _method)

__all__ = [
    "SCHEDULES", "adagrad_norm", "adalayer", "adamp", "available", "build", "build_schedule",
    "diffgrad", "learning_rate", "learning_rates", "ngn", "ngn_m", "ngn_md", "register",
    "scale_by_adagrad_norm", "scale_by_adalayer", "scale_by_adamp", "scale_by_diffgrad",
    "scale_by_ngn", "scale_by_ngn_m", "scale_by_ngn_md",
]
