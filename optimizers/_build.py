"""Optimizers picked by name from a config: schedule, clipping, weight-decay mask, per-role
groups, and ``optax.inject_hyperparams`` so hyperparameters live in the state.

Every mistake in the config is a one-line ``ValueError`` at build time naming the key
(``optimizer.kwargs.b2=1.5 must lie in [0, 1)``): the types come from each method's signature,
the ranges from ``_check_ranges`` and from the method's own checks, run once on the config's
plain numbers (inside ``optax.inject_hyperparams`` they arrive as arrays and are not checked).
"""

import inspect

import jax
import optax

from optimizers._registry import available, get
from optimizers._roles import ROLES
from optimizers._schedules import build_schedule
from plain_numbers import is_number

__all__ = ["DIAGNOSTIC_FIELDS", "build", "diagnostics", "learning_rate", "learning_rates"]

_BETAS = ("b1", "b2", "b3", "beta", "momentum", "decay")
_DECAY_ARGS = ("weight_decay", "weight_decay_rate")
_MASK_ARGS = ("mask", "weight_decay_mask")
_NOT_KWARGS = {"learning_rate", "param_labels", *_DECAY_ARGS, *_MASK_ARGS}

# Methods whose argument of that name is not a decay rate in [0, 1): Scion's momentum is the
# weight on the new gradient, in (0, 1], and Scion checks it itself.
_NOT_BETAS = {"scion": ("momentum",), "uscion": ("momentum",)}
# Methods whose weight decay is built in (Scion's constraint shrinks the parameters).
_OWN_DECAY = ("scion",)


def _number(key: str, value) -> float:
  """A config value that must be a plain number, as a float."""
  if not is_number(value):
    raise ValueError(f"{key}={value!r} must be a number, not {type(value).__name__}")
  return float(value)


def _check_name(where: str, name) -> None:
  if name not in available():
    raise ValueError(f"{where}.name: unknown optimizer {name!r}: valid names are "
                     f"{', '.join(available())}")


def _check_role(key: str, role) -> None:
  if role not in ROLES:
    raise ValueError(f"{key}: unknown role {role!r}: valid roles are {', '.join(ROLES)}")


def _check_ranges(where: str, name: str, learning_rate: float, kwargs: dict,
                  weight_decay: float):
  if learning_rate < 0:
    raise ValueError(f"{where}.learning_rate={learning_rate} must be >= 0")
  if weight_decay < 0:
    raise ValueError(f"{where}.weight_decay={weight_decay} must be >= 0 (0 turns it off)")
  if weight_decay and name in _OWN_DECAY:
    raise ValueError(f"{where}.weight_decay={weight_decay}: {name} shrinks the parameters "
                     f"itself (its constraint); set it to 0")
  for key in _BETAS:
    value = kwargs.get(key)
    if key not in _NOT_BETAS.get(name, ()) and is_number(value) and not 0 <= value < 1:
      raise ValueError(f"{where}.kwargs.{key}={value} must lie in [0, 1)")


def _check_types(where: str, name: str, kwargs: dict, signature) -> None:
  """Each argument of the type of the method's default (a number for a float default, ...)."""
  for key, value in kwargs.items():
    default = signature[key].default
    if isinstance(default, bool):
      ok, kind = isinstance(value, bool), "True or False"
    elif isinstance(default, int | float):
      ok, kind = is_number(value), "a number"
    elif isinstance(default, str):
      ok, kind = isinstance(value, str), "a string"
    else:
      continue
    if not ok:
      raise ValueError(f"{where}.kwargs.{key}={value!r} must be {kind} "
                       f"({name}'s default is {default!r})")


def _run_method_checks(where: str, name: str, method, learning_rate: float, kwargs: dict,
                       fixed: dict) -> None:
  """Builds the method once from the config's plain numbers, so that its own range checks
  run; their message (``b0=0.0 must be > 0``) gets the config key in front."""
  try:
    method(learning_rate, **fixed, **kwargs)
  except ValueError as e:
    message = str(e)
    key = message.split("=", 1)[0]
    if key in kwargs:
      raise ValueError(f"{where}.kwargs.{message}") from None
    if key == "learning_rate":
      raise ValueError(f"{where}.{message}") from None
    raise ValueError(f"{where} ({name}): {message}") from None


def _method_kwargs(where: str, name: str, kwargs: dict) -> dict:
  """The config's method arguments that ``name`` takes; a name that no method takes is a typo.

  A config names the hyperparameters of the methods it compares (``b1`` for Adam, ``momentum``
  for SGD, ...) so that switching ``name`` is one override.
  """
  signature = inspect.signature(get(name)).parameters
  known = set().union(*(inspect.signature(get(m)).parameters for m in available()))
  unknown = sorted(set(kwargs) - known)
  if unknown:
    valid = sorted(set(signature) - _NOT_KWARGS)
    raise ValueError(f"optimizer {name!r} takes no argument {', '.join(unknown)}: "
                     f"valid {where}.kwargs are {', '.join(valid)}")
  return {k: tuple(v) if isinstance(v, list) else v
          for k, v in kwargs.items() if k in signature}


def _decay_mask(param_labels, decay_roles):
  """Weight-decay mask (True = decay) from roles: a function of the params (or a fixed tree)."""
  if param_labels is None:
    return None
  to_mask = lambda labels: jax.tree.map(lambda role: role in decay_roles, labels)
  if callable(param_labels):
    return lambda params: to_mask(param_labels(params))
  return to_mask(param_labels)


def _single(where, name, peak_lr, kwargs, weight_decay, schedule, mask,
            param_labels) -> optax.GradientTransformationExtraArgs:
  """One method with its schedule and weight decay, inside ``optax.inject_hyperparams``."""
  kwargs = _method_kwargs(where, name, kwargs)
  method = get(name)
  signature = inspect.signature(method).parameters
  _check_types(where, name, kwargs, signature)
  _check_ranges(where, name, peak_lr, kwargs, weight_decay)
  fixed = {"param_labels": param_labels} if "param_labels" in signature else {}
  _run_method_checks(where, name, method, peak_lr, kwargs, fixed)
  decay_arg = next((a for a in _DECAY_ARGS if a in signature), None)
  mask_arg = next((a for a in _MASK_ARGS if a in signature), None)
  native_decay = decay_arg is not None and mask_arg is not None

  def make(*, peak_learning_rate, learning_rate, weight_decay, **method_kwargs):
    # The schedule's shape (peak 1) times the peak: both are in the state, so runs that differ
    # in the peak share one compiled program (a sweep over learning rates compiles once).
    learning_rate = peak_learning_rate * learning_rate
    if native_decay:
      return method(learning_rate, **{decay_arg: weight_decay, mask_arg: mask},
                    **fixed, **method_kwargs)
    core = method(learning_rate, **fixed, **method_kwargs)
    if not weight_decay_on:
      return core
    return optax.chain(optax.add_decayed_weights(weight_decay, mask), core)

  weight_decay_on = bool(weight_decay)
  # inject_hyperparams reads the factory's signature: name each method argument in it.
  make.__signature__ = inspect.Signature(
      [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY)
       for k in ("peak_learning_rate", "learning_rate", "weight_decay", *kwargs)])
  static = tuple(k for k, v in kwargs.items() if not isinstance(v, float))
  return optax.inject_hyperparams(make, static_args=static)(
      peak_learning_rate=float(peak_lr),
      learning_rate=schedule,
      weight_decay=weight_decay, **kwargs)


def build(cfg, *, total_steps: int, param_labels=None,
          schedule: optax.Schedule | None = None) -> optax.GradientTransformationExtraArgs:
  """Builds the optimizer ``cfg.name`` with its schedule, clipping and weight decay.

  Args:
    cfg: ``name``; ``learning_rate`` (peak); ``kwargs``: method arguments (``b1``,
      ``momentum``, ``nesterov``, ...), each passed to the method if it takes it (so one config
      can switch between methods), an error if no method takes it; ``weight_decay`` and
      ``decay_roles`` (parameter roles that are decayed; norms and biases are not, by default);
      ``grad_clip_norm`` (0 = off), applied to the whole gradient first; ``schedule`` (see
      ``build_schedule``); optionally ``by_role``: a group per role, each with its own
      ``name``, ``learning_rate``, ``kwargs`` and ``weight_decay`` (e.g. Muon on ``hidden``
      matrices with AdamW elsewhere), sharing the schedule's shape.
    total_steps: number of updates in the run, the length of the schedule.
    param_labels: each parameter's role: a function of the params (needed for ``by_role``;
      ``models.param_roles``) or a fixed pytree of role strings.
    schedule: the learning rate's shape (peak 1) as a function of the step, in place of
      ``cfg.schedule``'s (a Seesaw ramp's, which couples the rate to the batch); ``cfg.schedule``
      is still checked.

  Returns:
    The optimizer. Each group sits in ``optax.inject_hyperparams``: its float
    hyperparameters are in the state, the learning rate as ``peak_learning_rate`` times the
    schedule's shape ``learning_rate`` (``learning_rates(state)`` gives their product).

  Weight decay uses the method's own decoupled decay where it takes a decay mask (AdamW, Lion,
  LAMB, Adan, Muon, ...: scaled by the learning rate); for the others (SGD, Adam, ...)
  ``weight_decay * params`` is added to the gradient before the method, the classical L2 form.
  """
  by_role = dict(cfg.get("by_role", {}) or {})
  groups = {"default": ("optimizer", cfg)}
  groups.update({role: (f"optimizer.by_role.{role}", sub) for role, sub in by_role.items()})
  for role, (where, sub) in groups.items():
    _check_name(where, sub.name)
    if role != "default":
      _check_role(where, role)
  for role in cfg.decay_roles:
    _check_role("optimizer.decay_roles", role)
  clip = _number("optimizer.grad_clip_norm", cfg.grad_clip_norm)
  if clip < 0:
    raise ValueError(f"optimizer.grad_clip_norm={clip} must be >= 0 (0 turns clipping off)")
  if by_role and not callable(param_labels):
    raise ValueError("optimizer.by_role needs param_labels, a function params -> roles")
  mask = _decay_mask(param_labels, tuple(cfg.decay_roles))
  shape = build_schedule(cfg.schedule, 1.0, total_steps)
  schedule = shape if schedule is None else schedule
  txs, rates = {}, []
  for group, (where, sub) in groups.items():
    rates.append(_number(f"{where}.learning_rate", sub.learning_rate))
    txs[group] = _single(
        where, sub.name, rates[-1], dict(sub.get("kwargs", {}) or {}),
        _number(f"{where}.weight_decay", sub.get("weight_decay", cfg.weight_decay)),
        schedule, mask, param_labels)
  if not any(rates):  # a zero learning rate freezes its group; every group frozen is a mistake
    raise ValueError(f"optimizer.learning_rate={rates[0]} must be > 0: with it (and every "
                     "by_role group's) at 0 no parameter would train")
  if by_role:
    to_group = lambda role: role if role in by_role else "default"
    tx = optax.partition(
        txs, lambda params: jax.tree.map(to_group, param_labels(params)))
  else:
    tx = txs["default"]
  return optax.chain(optax.clip_by_global_norm(clip), tx) if clip > 0 else tx


def _is_injected(node) -> bool:
  return isinstance(node, optax.InjectStatefulHyperparamsState | optax.InjectHyperparamsState)


def learning_rates(opt_state) -> dict[str, jax.Array]:
  """The learning rate of each injected group in ``opt_state``, as applied by the last update.

  Keys are the group names of ``build`` (``default``, or a role of ``by_role``); a state
  without an injected learning rate gives ``{}``.
  """
  found = {}
  leaves, _ = jax.tree_util.tree_flatten_with_path(opt_state, is_leaf=_is_injected)
  for path, node in leaves:
    if _is_injected(node) and "learning_rate" in node.hyperparams:
      keys = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
      rate = node.hyperparams["learning_rate"] * node.hyperparams.get("peak_learning_rate", 1.0)
      found.setdefault(str(keys[-1]) if keys else "default", rate)
  return found


def learning_rate(opt_state) -> jax.Array | None:
  """The learning rate of the default group (``None`` if the state has none)."""
  rates = learning_rates(opt_state)
  return rates.get("default", next(iter(rates.values()), None))


# Scalar state fields that describe an optimizer's behaviour (NGN's step size gamma, ...):
# the train step logs them as ``opt/<field>``.
DIAGNOSTIC_FIELDS = ("gamma",)


def diagnostics(opt_state) -> dict[str, jax.Array]:
  """Scalar diagnostics found in ``opt_state`` by field name, e.g. ``{"gamma": ...}``.

  A field found in several groups is keyed by its path, ``<group>/gamma``.
  """
  found = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(opt_state)[0]:
    if not path or not isinstance(path[-1], jax.tree_util.GetAttrKey):
      continue
    field = path[-1].name
    if field in DIAGNOSTIC_FIELDS and getattr(leaf, "ndim", None) == 0:
      groups = [str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey)]
      found.setdefault(f"{groups[-1]}/{field}" if groups else field, leaf)
  return found
