"""Optimizers as composable optax transformations.

``build(cfg, total_steps=..., param_labels=...)`` picks a method by ``cfg.name``;
``available()`` lists the names. Methods optax already has are taken from optax; the ones
written here follow optax's split into ``scale_by_<name>`` (the direction) and
``<name>(learning_rate, ...)``.
"""

from optimizers._adagrad_norm import adagrad_norm, scale_by_adagrad_norm
from optimizers._adalayer import adalayer, scale_by_adalayer
from optimizers._adamp import adamp, scale_by_adamp
from optimizers._apollo import apollo, apollo_mini, scale_by_apollo
from optimizers._build import (
  DIAGNOSTIC_FIELDS,
  available,
  build,
  diagnostics,
  learning_rate,
  learning_rates,
  register,
)
from optimizers._diffgrad import diffgrad, scale_by_diffgrad
from optimizers._exadam import exadam, scale_by_exadam
from optimizers._ngn import ngn, ngn_m, ngn_md, scale_by_ngn, scale_by_ngn_m, scale_by_ngn_md
from optimizers._normuon import normuon, scale_by_normuon
from optimizers._partition import matrices_and_rest
from optimizers._schedules import SCHEDULES, build_schedule
from optimizers._scion import (
  DEFAULT_LMOS,
  DEFAULT_RADII,
  LMOS,
  bias_rms,
  column_norm,
  newton_schulz,
  row_norm,
  scale_by_scion,
  scion,
  sign,
  spectral,
  spectral_conv,
  uscion,
)
from optimizers._shampoo import scale_by_shampoo, shampoo
from optimizers._soap import scale_by_soap, soap
from optimizers._swan import grad_norm, grad_whitening, scale_by_swan, swan

for _method in (ngn, ngn_m, ngn_md, adalayer, diffgrad, adamp, adagrad_norm, exadam, scion,
                uscion, soap, shampoo, normuon, apollo, apollo_mini, swan):
  register(_method.__name__, _method)

__all__ = [
    "DEFAULT_LMOS", "DEFAULT_RADII", "DIAGNOSTIC_FIELDS", "LMOS", "SCHEDULES", "adagrad_norm",
    "adalayer", "adamp", "apollo", "apollo_mini", "available", "bias_rms", "build",
    "build_schedule", "column_norm", "diagnostics", "diffgrad", "exadam", "grad_norm",
    "grad_whitening", "learning_rate", "learning_rates", "matrices_and_rest", "newton_schulz",
    "ngn", "ngn_m", "ngn_md", "normuon", "register", "row_norm", "scale_by_adagrad_norm",
    "scale_by_adalayer", "scale_by_adamp", "scale_by_apollo", "scale_by_diffgrad",
    "scale_by_exadam", "scale_by_ngn", "scale_by_ngn_m", "scale_by_ngn_md", "scale_by_normuon",
    "scale_by_scion", "scale_by_shampoo", "scale_by_soap", "scale_by_swan", "scion", "shampoo",
    "sign", "soap", "spectral", "spectral_conv", "swan", "uscion",
]
