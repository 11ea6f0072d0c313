"""Optimizers picked by name from a config: schedule, clipping, weight-decay mask, injection."""

import inspect

import jax
import optax

from optimizers._schedules import build_schedule

# Methods optax already provides, used as they are.
_OPTAX = {
    "sgd": optax.sgd,
    "adam": optax.adam,
    "adamw": optax.adamw,
    "nadamw": optax.nadamw,
    "rmsprop": optax.rmsprop,
    "lion": optax.lion,
    "lamb": optax.lamb,
    "adabelief": optax.adabelief,
    "adan": optax.adan,
    "sign_sgd": optax.sign_sgd,
    "signum": optax.signum,
}

_BETAS = ("b1", "b2", "b3", "beta", "momentum", "decay")


def available() -> list[str]:
  """Names accepted by ``build`` as ``cfg.name``."""
  return sorted(_OPTAX)


def _decay_mask(param_labels, decay_roles):
  """Weight-decay mask (True = decay) from roles: a pytree of role names or a function of params."""
  if param_labels is None:
    return None
  to_mask = lambda labels: jax.tree.map(lambda role: role in decay_roles, labels)
  if callable(param_labels):
    return lambda params: to_mask(param_labels(params))
  return to_mask(param_labels)


def _check_ranges(name: str, learning_rate: float, kwargs: dict, weight_decay: float):
  if learning_rate < 0:
    raise ValueError(f"optimizer.learning_rate={learning_rate} must be >= 0")
  if weight_decay < 0:
    raise ValueError(f"optimizer.weight_decay={weight_decay} must be >= 0")
  for key in _BETAS:
    value = kwargs.get(key)
    if isinstance(value, float) and not 0.0 <= value < 1.0:
      raise ValueError(f"optimizer.kwargs.{key}={value} for {name!r} must lie in [0, 1)")


def build(cfg, *, total_steps: int, param_labels=None) -> optax.GradientTransformationExtraArgs:
  """Builds the optimizer ``cfg.name`` with its schedule, clipping and weight decay.

  Args:
    cfg: ``name``; ``learning_rate`` (peak); ``kwargs``: method arguments (``b1``,
      ``momentum``, ``nesterov``, ...), each passed to the method if it takes it (so one config
      can switch between methods), an error if no method takes it; ``weight_decay`` and ``decay_roles`` (parameter roles
      that are decayed; norms and biases are not, by default); ``grad_clip_norm`` (0 = off);
      ``schedule`` (see ``build_schedule``).
    total_steps: number of updates in the run, the length of the schedule.
    param_labels: each parameter's role, as a pytree of strings or a function of the params.

  Returns:
    The optimizer wrapped in ``optax.inject_hyperparams``: the learning rate of the last
    update, and every float hyperparameter, can be read from (and set in) its state
    (``optax.tree_utils.tree_get(state, "learning_rate")``).

  Weight decay uses the method's own decoupled decay where it has one (AdamW, Lion, LAMB,
  Adan: scaled by the learning rate); for the others (SGD, Adam, ...) ``weight_decay * params``
  is added to the gradient before the method, the classical L2 form.
  """
  name = cfg.name
  if name not in _OPTAX:
    raise ValueError(f"unknown optimizer {name!r}: valid names are {', '.join(available())}")
  method = _OPTAX[name]
  signature = inspect.signature(method).parameters
  # A config names the hyperparameters of the methods it compares (b1 for Adam, momentum for
  # SGD, ...); each method takes the ones in its signature. A name no method takes is a typo.
  known = set().union(*(inspect.signature(m).parameters for m in _OPTAX.values()))
  unknown = sorted(set(cfg.kwargs) - known)
  if unknown:
    valid = sorted(set(signature) - {"learning_rate", "weight_decay", "mask"})
    raise ValueError(f"optimizer {name!r} takes no argument {', '.join(unknown)}: "
                     f"valid optimizer.kwargs are {', '.join(valid)}")
  kwargs = {k: v for k, v in cfg.kwargs.items() if k in signature}
  weight_decay = float(cfg.weight_decay)
  _check_ranges(name, float(cfg.learning_rate), kwargs, weight_decay)
  mask = _decay_mask(param_labels, tuple(cfg.decay_roles))
  native_decay = "weight_decay" in signature and "mask" in signature
  clip = float(cfg.grad_clip_norm)
  schedule = build_schedule(cfg.schedule, float(cfg.learning_rate), total_steps)

  def make(*, learning_rate, weight_decay, **method_kwargs):
    parts = [optax.clip_by_global_norm(clip)] if clip > 0 else []
    if native_decay:
      core = method(learning_rate, weight_decay=weight_decay, mask=mask, **method_kwargs)
    else:
      if cfg.weight_decay:
        parts.append(optax.add_decayed_weights(weight_decay, mask))
      core = method(learning_rate, **method_kwargs)
    return optax.chain(*parts, core)

  # inject_hyperparams reads the factory's signature: name each method argument in it.
  make.__signature__ = inspect.Signature(
      [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY)
       for k in ("learning_rate", "weight_decay", *kwargs)])
  static = tuple(k for k, v in kwargs.items() if not isinstance(v, float))
  return optax.inject_hyperparams(make, static_args=static)(
      learning_rate=schedule, weight_decay=weight_decay, **kwargs)


def learning_rate(opt_state) -> jax.Array:
  """The learning rate applied by the last update of an optimizer made by ``build``."""
  # The schedule's own state sits under the same key; the applied value is the array.
  return optax.tree_utils.tree_get(
      opt_state, "learning_rate", filtering=lambda _, value: hasattr(value, "dtype"))


