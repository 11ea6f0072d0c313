"""AdamP (Heo et al. 2021): Adam without the radial step on scale-invariant weights."""

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optimizers._checks import require_beta, require_nonnegative, upcast
from optimizers._moments import adam_init
from optimizers._registry import register

__all__ = ["adamp", "scale_by_adamp"]


class ScaleByAdamPState(NamedTuple):
  """State of ``scale_by_adamp``."""
  count: jax.Array  # int32 scalar: number of updates so far.
  mu: optax.Updates  # Adam's first moment.
  nu: optax.Updates  # Adam's second moment.


def _project(step, grad, weight, delta, eps):
  """Removes the radial part of ``step`` where ``weight`` looks scale-invariant.

  Tried per channel first (the last axis: output channels of a Flax kernel), then over the
  whole leaf; the first view in which |cos(grad, weight)| < delta / sqrt(view size) in every
  channel is used. Returns the projected step and whether a projection happened.

  Both views come from per-channel sums (the whole-leaf sums are their totals), and the
  projection, a second pass over the leaf, only runs where the test passed.
  """
  axes = tuple(range(weight.ndim - 1))
  per_channel = lambda x, y: jnp.sum(x * y, axis=axes, keepdims=True)
  ww, gg, gw = per_channel(weight, weight), per_channel(grad, grad), per_channel(grad, weight)
  leaf_ww = jnp.sum(ww, keepdims=True)

  def invariant(ww, gg, gw, size):
    cosine = jnp.abs(gw) / jnp.maximum(jnp.sqrt(gg) * jnp.sqrt(ww), eps)
    return jnp.max(cosine) < delta / math.sqrt(size)

  use_channel = invariant(ww, gg, gw, math.prod(weight.shape[:-1]))
  use_leaf = invariant(leaf_ww, jnp.sum(gg, keepdims=True), jnp.sum(gw, keepdims=True),
                       weight.size)

  def project(step):
    # (w_hat . step) w_hat with w_hat = w / (|w| + eps) is a multiple of w
    ws = per_channel(weight, step)
    coef = jnp.where(use_channel, ws / jnp.square(jnp.sqrt(ww) + eps),
                     jnp.sum(ws, keepdims=True) / jnp.square(jnp.sqrt(leaf_ww) + eps))
    return step - coef * weight

  projected = jnp.logical_or(use_channel, use_leaf)
  return jax.lax.cond(projected, project, lambda step: step, step), projected


def scale_by_adamp(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    weight_decay: jax.typing.ArrayLike = 0.0,
    *,
    delta: jax.typing.ArrayLike = 0.1,
    wd_ratio: jax.typing.ArrayLike = 0.1,
    nesterov: bool = False,
    mask: None | Any | Callable[[optax.Params], Any] = None,
    mu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
  r"""Rescales updates by AdamP: Adam's step, projected on scale-invariant weights.

  .. math::
    p_t &= \frac{m_t / (1 - \beta_1^t)}{\sqrt{v_t / (1 - \beta_2^t)} + \epsilon}, \qquad
    \Pi_w(p) = p - (\hat w \cdot p)\, \hat w, \quad \hat w = w / \|w\|, \\
    q_t &= \begin{cases} \Pi_{w_t}(p_t) & \text{if } |\cos(w_t, g_t)| <
    \delta / \sqrt{\dim w} \\ p_t & \text{otherwise,} \end{cases} \qquad
    u_t = q_t + \lambda\, r_t\, w_t,

  with :math:`m_t, v_t` Adam's moments, :math:`\lambda` the ``weight_decay`` and
  :math:`r_t` = ``wd_ratio`` where the projection applied, 1 elsewhere. The test and the
  projection run per output channel (the last axis of a Flax kernel; ``\dim w`` is then the
  size of one channel) and, failing that, over the whole leaf, as in the reference code.
  Leaves with fewer than two axes (biases, norm scales) are never projected.

  Args:
    b1: decay of the first moment.
    b2: decay of the second moment.
    eps: added to the denominator (and guards the norms).
    weight_decay: :math:`\lambda`, decoupled weight decay (multiplied by the learning rate
      in ``adamp``).
    delta: threshold :math:`\delta` of the cosine test.
    wd_ratio: factor on the weight decay of projected leaves.
    nesterov: use :math:`\beta_1 m_t + (1 - \beta_1) g_t` in place of :math:`m_t`.
    mask: where weight decay applies (True): a pytree of bools (or a prefix of the
      parameters) or a function of the parameters returning one; ``None`` decays all.
    mu_dtype: dtype of the first moment; ``None`` keeps that of the parameters.

  Returns:
    An ``optax.GradientTransformation``; its ``update`` needs ``params``.
  """
  require_beta("b1", b1)
  require_beta("b2", b2)
  for name, value in (("eps", eps), ("weight_decay", weight_decay), ("delta", delta),
                      ("wd_ratio", wd_ratio)):
    require_nonnegative(name, value)

  def init_fn(params):
    return ScaleByAdamPState(**adam_init(params, mu_dtype))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("scale_by_adamp needs the parameters: call update(grads, state, params)")
    count = optax.safe_increment(state.count)
    mu = optax.tree.update_moment(updates, state.mu, b1, 1)
    nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
    if nesterov:
      momentum = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, mu, updates)
    else:
      momentum = mu
    mu_hat = optax.tree.bias_correction(momentum, b1, count)
    nu_hat = optax.tree.bias_correction(nu, b2, count)
    flags = mask(params) if callable(mask) else (True if mask is None else mask)
    decays = jax.tree.map(lambda flag, subtree: jax.tree.map(lambda _: bool(flag), subtree),
                          flags, params)

    def leaf_update(m, v, g, w, decays_leaf):
      step = upcast(m) / (jnp.sqrt(upcast(v)) + eps)
      w = w.astype(step.dtype)
      decay = weight_decay if decays_leaf else 0.0
      if w.ndim > 1:
        step, projected = _project(step, g.astype(step.dtype), w, delta, eps)
        decay = decay * jnp.where(projected, wd_ratio, 1.0)
      return (step + decay * w).astype(g.dtype)

    new_updates = jax.tree.map(leaf_update, mu_hat, nu_hat, updates, params, decays)
    return new_updates, ScaleByAdamPState(count=count, mu=optax.tree.cast_like(mu, state.mu),
                                          nu=optax.tree.cast_like(nu, state.nu))

  return optax.GradientTransformation(init_fn, update_fn)


@register("adamp")
def adamp(
    learning_rate: optax.ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    weight_decay: jax.typing.ArrayLike = 0.0,
    *,
    delta: jax.typing.ArrayLike = 0.1,
    wd_ratio: jax.typing.ArrayLike = 0.1,
    nesterov: bool = False,
    mask: None | Any | Callable[[optax.Params], Any] = None,
    mu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""AdamP: Adam that removes the norm-increasing (radial) step on scale-invariant weights.

  .. math::
    q_t = \begin{cases} p_t - (\hat w_t \cdot p_t)\, \hat w_t & \text{if }
    |\cos(w_t, g_t)| < \delta / \sqrt{\dim w} \\ p_t & \text{otherwise} \end{cases}, \qquad
    w_{t+1} = w_t - \eta\, (q_t + \lambda\, r_t\, w_t),

  with :math:`p_t = \hat m_t / (\sqrt{\hat v_t} + \epsilon)` Adam's step and :math:`r_t` =
  ``wd_ratio`` on projected weights (1 otherwise). See ``scale_by_adamp`` for the
  per-channel and per-layer views.

  Args:
    learning_rate: :math:`\eta`, a scalar or a schedule.
    b1: decay of the first moment.
    b2: decay of the second moment.
    eps: added to the denominator.
    weight_decay: :math:`\lambda`, decoupled weight decay (scaled by the learning rate).
    delta: threshold of the cosine test (0.1 in the paper).
    wd_ratio: weight-decay factor on projected weights (0.1 in the reference code).
    nesterov: use Nesterov momentum.
    mask: where weight decay applies (True), a pytree of bools or a function of params.
    mu_dtype: dtype of the first moment; ``None`` keeps that of the parameters.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; its ``update`` needs ``params``.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> from optimizers._adamp import adamp
    >>> params = {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}
    >>> opt = adamp(1e-3, weight_decay=1e-2, mask={"kernel": True, "bias": False})
    >>> state = opt.init(params)
    >>> grads = jax.tree.map(jnp.ones_like, params)
    >>> updates, state = opt.update(grads, state, params)
    >>> params = optax.apply_updates(params, updates)

  References:
    Heo, Chun, Oh, Han, Yun, Kim, Uh & Ha, *AdamP: Slowing Down the Slowdown for Momentum
    Optimizers on Scale-invariant Weights*, ICLR 2021, https://arxiv.org/abs/2006.08217
  """
  require_nonnegative("learning_rate", learning_rate)
  return optax.chain(
      scale_by_adamp(b1, b2, eps, weight_decay, delta=delta, wd_ratio=wd_ratio,
                     nesterov=nesterov, mask=mask, mu_dtype=mu_dtype),
      optax.scale_by_learning_rate(learning_rate))
