"""NGN step size (Orvieto & Xiao 2024) with heavy-ball momentum and a diagonal preconditioner.

NGN reads the loss of the mini-batch from ``update(..., value=loss)``, the convention of
``optax.polyak_sgd``. Its step size is ``gamma_k = c * r_k`` with the damping
``r_k = 2 f / (2 f + c ||g||^2)`` in [0, 1]: the ``scale_by_*`` transforms return the damped
direction ``r_k g_k`` (they need ``c`` to compute ``r_k``) and the learning rate ``c``
multiplies it last, as in every optax optimizer.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from optimizers._checks import require_beta, require_nonnegative, upcast
from optimizers._moments import adam_init, momentum_init
from optimizers._registry import register

__all__ = ["ngn", "ngn_m", "ngn_md", "scale_by_ngn", "scale_by_ngn_m", "scale_by_ngn_md"]


class ScaleByNgnState(NamedTuple):
  """State of ``scale_by_ngn``."""
  count: jax.Array  # int32 scalar: number of updates so far.
  gamma: jax.Array  # NGN step size c * r_k of the last update (0 before the first), for logs.


class ScaleByNgnMState(NamedTuple):
  """State of ``scale_by_ngn_m``."""
  count: jax.Array  # int32 scalar: number of updates so far.
  gamma: jax.Array  # NGN step size of the last update, for logging.
  mu: optax.Updates  # Heavy-ball buffer of the damped gradients r_k g_k.


class ScaleByNgnMDState(NamedTuple):
  """State of ``scale_by_ngn_md``."""
  count: jax.Array  # int32 scalar: number of updates so far.
  gamma: jax.Array  # NGN step size of the last update, for logging.
  mu: optax.Updates  # Heavy-ball buffer of the damped, preconditioned gradients.
  nu: optax.Updates  # RMSprop second moment of the gradients.


def _step_size_dtype(params: optax.Params) -> jnp.dtype:
  """The dtype ``gamma`` is stored in: that of the parameters."""
  leaves = jax.tree.leaves(params)
  return jnp.result_type(*leaves) if leaves else jnp.dtype(jnp.float32)


def _learning_rate_at(learning_rate: optax.ScalarOrSchedule, count: jax.Array):
  return learning_rate(count) if callable(learning_rate) else learning_rate


def _ngn_damping(learning_rate: optax.ScalarOrSchedule, count: jax.Array,
                 value: jax.typing.ArrayLike | None, f_min: jax.typing.ArrayLike,
                 sq_norm: jax.Array, name: str) -> tuple[jax.Array, jax.Array]:
  """Returns r = 2 f / (2 f + c ||g||^2) and gamma = c r = c / (1 + c ||g||^2 / (2 f)).

  f = value - f_min, clipped at 0 (NGN assumes a loss bounded below by f_min). This form
  stays finite as f -> 0 (r -> 0). When f and the gradient both vanish the step is zero
  whatever r is; r = 1 there, its limit for f > 0.
  """
  if value is None:
    raise ValueError(
        f"{name} needs the mini-batch loss: call update(grads, state, params, value=loss)")
  if jnp.ndim(value) != 0:
    raise ValueError(f"{name}: value= must be the scalar loss, got shape {jnp.shape(value)}")
  c = jnp.asarray(_learning_rate_at(learning_rate, count), sq_norm.dtype)
  gap = jnp.maximum(jnp.asarray(value, sq_norm.dtype) - f_min, 0)
  denom = 2 * gap + c * sq_norm
  positive = denom > 0
  damping = jnp.where(positive, 2 * gap / jnp.where(positive, denom, 1), 1)
  return damping, c * damping


def _global_sq_norm(tree: optax.Updates) -> jax.Array:
  return sum((jnp.sum(jnp.square(upcast(g))) for g in jax.tree.leaves(tree)),
             jnp.zeros([], jnp.float32))


def scale_by_ngn(
    learning_rate: optax.ScalarOrSchedule,
    *,
    f_min: jax.typing.ArrayLike = 0.0,
) -> optax.GradientTransformationExtraArgs:
  r"""Damps the gradient by the NGN factor :math:`r_k = \gamma_k / c`.

  .. math::
    \gamma_k = \frac{c}{1 + \frac{c}{2 (f_k - f^\star)} \|g_k\|^2}
             = \frac{2 c (f_k - f^\star)}{2 (f_k - f^\star) + c \|g_k\|^2}, \qquad
    u_k = \frac{\gamma_k}{c} g_k,

  with :math:`f_k` the mini-batch loss, :math:`\|g_k\|` the global norm of the gradient pytree
  and :math:`c` the ``learning_rate``; ``ngn`` then multiplies by :math:`-c`. A loss below
  ``f_min`` is treated as ``f_min`` (:math:`\gamma_k = 0`).

  Args:
    learning_rate: the step-size hyperparameter :math:`c \ge 0`, a scalar or a schedule of
      the step count (the same one must scale the result).
    f_min: a lower bound :math:`f^\star` on the loss.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose ``update`` needs ``value=loss``; it
    keeps :math:`\gamma_k` in ``state.gamma``.
  """
  require_nonnegative("learning_rate", learning_rate)

  def init_fn(params):
    return ScaleByNgnState(count=jnp.zeros([], jnp.int32),
                           gamma=jnp.zeros([], _step_size_dtype(params)))

  def update_fn(updates, state, params=None, *, value=None, **extra_args):
    del params, extra_args
    damping, gamma = _ngn_damping(learning_rate, state.count, value, f_min,
                                  _global_sq_norm(updates), "ngn")
    updates = jax.tree.map(lambda g: (damping * g).astype(g.dtype), updates)
    return updates, ScaleByNgnState(count=optax.safe_increment(state.count),
                                    gamma=gamma.astype(state.gamma.dtype))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def scale_by_ngn_m(
    learning_rate: optax.ScalarOrSchedule,
    momentum: jax.typing.ArrayLike = 0.9,
    *,
    f_min: jax.typing.ArrayLike = 0.0,
    mu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Heavy-ball momentum on the NGN-damped gradient (NGN-M, Algorithm 1 of Islamov et al.).

  .. math::
    \mu_k = \beta \mu_{k-1} + (1 - \beta) \frac{\gamma_k}{c} g_k, \quad \mu_{-1} = 0,
    \qquad u_k = \mu_k,

  with :math:`\gamma_k` the NGN step size of the current gradient (see ``scale_by_ngn``).
  ``ngn_m`` multiplies by :math:`-c`, which for a constant :math:`c` is the paper's
  :math:`x_{k+1} = x_k - (1 - \beta) \gamma_k g_k + \beta (x_k - x_{k-1})`. (This is the
  paper's Algorithm 1, not the authors' code option that averages gradients first.)

  Args:
    learning_rate: the step-size hyperparameter :math:`c \ge 0`, a scalar or a schedule.
    momentum: :math:`\beta \in [0, 1)`; 0 gives ``scale_by_ngn``.
    f_min: a lower bound on the loss.
    mu_dtype: dtype of the momentum buffer; ``None`` keeps that of the parameters.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose ``update`` needs ``value=loss``.
  """
  require_nonnegative("learning_rate", learning_rate)
  require_beta("momentum", momentum)

  def init_fn(params):
    return ScaleByNgnMState(**momentum_init(params, mu_dtype),
                            gamma=jnp.zeros([], _step_size_dtype(params)))

  def update_fn(updates, state, params=None, *, value=None, **extra_args):
    del params, extra_args
    damping, gamma = _ngn_damping(learning_rate, state.count, value, f_min,
                                  _global_sq_norm(updates), "ngn_m")
    mu = jax.tree.map(
        lambda g, m: momentum * upcast(m) + (1 - momentum) * damping * upcast(g),
        updates, state.mu)
    return optax.tree.cast_like(mu, updates), ScaleByNgnMState(
        count=optax.safe_increment(state.count), gamma=gamma.astype(state.gamma.dtype),
        mu=optax.tree.cast_like(mu, state.mu))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def scale_by_ngn_md(
    learning_rate: optax.ScalarOrSchedule,
    momentum: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    *,
    f_min: jax.typing.ArrayLike = 0.0,
    mu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""NGN in a diagonal (RMSprop) metric, with heavy-ball momentum (NGN-MD).

  .. math::
    \nu_k &= \beta_2 \nu_{k-1} + (1 - \beta_2) g_k^2, \qquad
    \Sigma_k = \mathrm{diag}\Big(\sqrt{\nu_k / (1 - \beta_2^k)} + \epsilon\Big), \\
    \gamma_k &= \frac{c}{1 + \frac{c}{2 (f_k - f^\star)} \, g_k^\top \Sigma_k^{-1} g_k}, \qquad
    \mu_k = \beta \mu_{k-1} + (1 - \beta) \frac{\gamma_k}{c} \Sigma_k^{-1} g_k,

  and ``ngn_md`` steps by :math:`-c \mu_k`: the NGN model regularised by
  :math:`\|d\|^2_{\Sigma_k} / (2c)` gives :math:`d = -\gamma_k \Sigma_k^{-1} g_k`, with
  heavy-ball momentum on top as in NGN-M. This is NGN-MDv1 of the paper's Algorithm 2: one
  scalar :math:`\gamma_k` for the whole model (NGN-MDv2 has one per coordinate),
  preconditioning first and momentum after.

  Args:
    learning_rate: the step-size hyperparameter :math:`c \ge 0`, a scalar or a schedule.
    momentum: :math:`\beta \in [0, 1)`.
    b2: decay of the second moment, :math:`\beta_2 \in [0, 1)`.
    eps: :math:`\epsilon`, added to the preconditioner's diagonal.
    f_min: a lower bound on the loss.
    mu_dtype: dtype of the momentum buffer; ``None`` keeps that of the parameters.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose ``update`` needs ``value=loss``.
  """
  require_nonnegative("learning_rate", learning_rate)
  require_beta("momentum", momentum)
  require_beta("b2", b2)
  require_nonnegative("eps", eps)

  def init_fn(params):
    return ScaleByNgnMDState(**adam_init(params, mu_dtype),
                             gamma=jnp.zeros([], _step_size_dtype(params)))

  def update_fn(updates, state, params=None, *, value=None, **extra_args):
    del params, extra_args
    count = optax.safe_increment(state.count)
    nu = jax.tree.map(lambda g, v: b2 * upcast(v) + (1 - b2) * jnp.square(upcast(g)),
                      updates, state.nu)
    # Sigma_k^{-1} g_k, leaf by leaf.
    precond = jax.tree.map(
        lambda g, v: upcast(g) / (jnp.sqrt(v / (1 - b2**count).astype(v.dtype)) + eps),
        updates, nu)
    sq_norm = sum((jnp.sum(upcast(g) * p) for g, p in
                   zip(jax.tree.leaves(updates), jax.tree.leaves(precond), strict=True)),
                  jnp.zeros([], jnp.float32))
    damping, gamma = _ngn_damping(learning_rate, state.count, value, f_min, sq_norm,
                                  "ngn_md")
    mu = jax.tree.map(lambda p, m: momentum * upcast(m) + (1 - momentum) * damping * p,
                      precond, state.mu)
    return optax.tree.cast_like(mu, updates), ScaleByNgnMDState(
        count=count, gamma=gamma.astype(state.gamma.dtype),
        mu=optax.tree.cast_like(mu, state.mu), nu=optax.tree.cast_like(nu, state.nu))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@register("ngn")
def ngn(
    learning_rate: optax.ScalarOrSchedule,
    *,
    f_min: jax.typing.ArrayLike = 0.0,
) -> optax.GradientTransformationExtraArgs:
  r"""NGN: SGD with the non-negative Gauss-Newton step size.

  .. math::
    \gamma_k = \frac{2 c (f_k - f^\star)}{2 (f_k - f^\star) + c \|g_k\|^2}, \qquad
    x_{k+1} = x_k - \gamma_k g_k.

  :math:`\gamma_k \le c` always, and :math:`\gamma_k \to 2 (f_k - f^\star) / \|g_k\|^2` (twice
  the Polyak step) as :math:`c \to \infty`, which is what makes NGN robust to a large ``c``.

  Args:
    learning_rate: the step-size hyperparameter :math:`c > 0`, a scalar or a schedule.
    f_min: a lower bound :math:`f^\star` on the loss (0 for the usual non-negative losses).

  Returns:
    An ``optax.GradientTransformationExtraArgs``; call ``update(grads, state, params,
    value=loss)``. The step size of the last update is ``optax.tree.get(state, "gamma")``.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> from optimizers._ngn import ngn
    >>> loss_fn = lambda x: jnp.sum(x ** 2)
    >>> x = jnp.array([1.0, -2.0])
    >>> opt = ngn(learning_rate=1.0)
    >>> state = opt.init(x)
    >>> for _ in range(3):
    ...   loss, grads = jax.value_and_grad(loss_fn)(x)
    ...   updates, state = opt.update(grads, state, x, value=loss)
    ...   x = optax.apply_updates(x, updates)
    >>> bool(loss_fn(x) < 0.5)
    True

  References:
    Orvieto & Xiao, *An Adaptive Stochastic Gradient Method with Non-negative Gauss-Newton
    Stepsizes*, 2024, https://arxiv.org/abs/2407.04358
  """
  return optax.chain(scale_by_ngn(learning_rate, f_min=f_min),
                     optax.scale_by_learning_rate(learning_rate))


@register("ngn_m")
def ngn_m(
    learning_rate: optax.ScalarOrSchedule,
    momentum: jax.typing.ArrayLike = 0.9,
    *,
    f_min: jax.typing.ArrayLike = 0.0,
    mu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""NGN-M: the NGN step size with heavy-ball momentum.

  .. math::
    \gamma_k = \frac{2 c (f_k - f^\star)}{2 (f_k - f^\star) + c \|g_k\|^2}, \qquad
    x_{k+1} = x_k - (1 - \beta) \gamma_k g_k + \beta (x_k - x_{k-1}).

  As in optax's other momentum methods, the learning rate multiplies the whole buffer: a
  schedule of :math:`c` rescales past steps too (identical to the above for constant
  :math:`c`).

  Args:
    learning_rate: the step-size hyperparameter :math:`c > 0`, a scalar or a schedule.
    momentum: :math:`\beta \in [0, 1)`; ``momentum=0`` is ``ngn``.
    f_min: a lower bound :math:`f^\star` on the loss.
    mu_dtype: dtype of the momentum buffer; ``None`` keeps that of the parameters.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; call ``update(grads, state, params,
    value=loss)``. The step size of the last update is ``optax.tree.get(state, "gamma")``.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> from optimizers._ngn import ngn_m
    >>> loss_fn = lambda x: jnp.sum(x ** 2)
    >>> x = jnp.array([1.0, -2.0])
    >>> opt = ngn_m(learning_rate=1.0, momentum=0.9)
    >>> state = opt.init(x)
    >>> loss, grads = jax.value_and_grad(loss_fn)(x)
    >>> updates, state = opt.update(grads, state, x, value=loss)
    >>> x = optax.apply_updates(x, updates)

  References:
    Islamov, Ajroldi, Orvieto & Lucchi, *Enhancing Optimizer Stability: Momentum Adaptation
    of the NGN Step-size*, NeurIPS 2025, https://arxiv.org/abs/2508.15071 (Algorithm 1)
  """
  return optax.chain(
      scale_by_ngn_m(learning_rate, momentum, f_min=f_min, mu_dtype=mu_dtype),
      optax.scale_by_learning_rate(learning_rate))


@register("ngn_md")
def ngn_md(
    learning_rate: optax.ScalarOrSchedule,
    momentum: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    *,
    f_min: jax.typing.ArrayLike = 0.0,
    mu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""NGN-MD: the NGN step size in an RMSprop metric, with heavy-ball momentum.

  .. math::
    \Sigma_k &= \mathrm{diag}\big(\sqrt{\hat\nu_k} + \epsilon\big), \qquad
    \gamma_k = \frac{2 c (f_k - f^\star)}{2 (f_k - f^\star) + c\, g_k^\top \Sigma_k^{-1} g_k}, \\
    x_{k+1} &= x_k - (1 - \beta) \gamma_k \Sigma_k^{-1} g_k + \beta (x_k - x_{k-1}),

  with :math:`\hat\nu_k` the bias-corrected exponential average of :math:`g^2` (decay
  :math:`\beta_2`). See ``scale_by_ngn_md``; a schedule of :math:`c` scales the whole
  buffer, as in ``ngn_m``.

  Args:
    learning_rate: the step-size hyperparameter :math:`c > 0`, a scalar or a schedule.
    momentum: :math:`\beta \in [0, 1)`.
    b2: decay of the second moment.
    eps: added to the preconditioner's diagonal.
    f_min: a lower bound :math:`f^\star` on the loss.
    mu_dtype: dtype of the momentum buffer; ``None`` keeps that of the parameters.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; call ``update(grads, state, params,
    value=loss)``. The step size of the last update is ``optax.tree.get(state, "gamma")``.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> from optimizers._ngn import ngn_md
    >>> loss_fn = lambda x: jnp.sum(x ** 2)
    >>> x = jnp.array([1.0, -2.0])
    >>> opt = ngn_md(learning_rate=0.1)
    >>> state = opt.init(x)
    >>> loss, grads = jax.value_and_grad(loss_fn)(x)
    >>> updates, state = opt.update(grads, state, x, value=loss)
    >>> x = optax.apply_updates(x, updates)

  References:
    Islamov, Ajroldi, Orvieto & Lucchi, *Enhancing Optimizer Stability: Momentum Adaptation
    of the NGN Step-size*, NeurIPS 2025, https://arxiv.org/abs/2508.15071 (Algorithm 2,
    NGN-MDv1)
  """
  return optax.chain(
      scale_by_ngn_md(learning_rate, momentum, b2, eps, f_min=f_min, mu_dtype=mu_dtype),
      optax.scale_by_learning_rate(learning_rate))
