"""APOLLO (Zhu et al. 2025): AdamW's per-channel step sizes estimated in a random low-rank space."""

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optimizers._checks import (
  decayed_weights,
  require_beta,
  require_nonnegative,
  upcast,
)
from optimizers._partition import matrices_and_rest, require_matrices
from optimizers._registry import register
from plain_numbers import is_number

__all__ = ["apollo", "apollo_mini", "scale_by_apollo"]

SCALE_TYPES = ("channel", "tensor")


class ScaleByApolloState(NamedTuple):
  """State of ``scale_by_apollo``. For a ``(a, b)`` leaf with ``a <= b`` the moments are
  ``(r, b)`` (the smaller side is projected); otherwise ``(a, r)``."""
  count: jax.Array  # int32 scalar: number of updates so far.
  mu: optax.Updates  # first moment of the projected gradient R_t.
  nu: optax.Updates  # second moment of R_t.
  last_norm: optax.Updates  # per leaf, ||G~_{t-1}||_F after the limiter (0 before the first).


def _rank(shape, rank):
  return min(rank, min(shape))


def projection(key: jax.Array, shape: tuple[int, int], rank: int) -> jax.Array:
  """The random projection ``P`` for a ``shape`` gradient: ``(r, smaller side)``, N(0, 1/r)."""
  r = _rank(shape, rank)
  return jax.random.normal(key, (r, min(shape)), jnp.float32) / math.sqrt(r)


def scale_by_apollo(
    rank: int = 128,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    *,
    scale_type: str = "channel",
    alpha: jax.typing.ArrayLike = 1.0,
    update_proj_gap: int = 200,
    norm_growth_limit: jax.typing.ArrayLike | None = 1.01,
    bias_correction: bool = True,
    seed: int = 0,
) -> optax.GradientTransformation:
  r"""APOLLO's direction for matrices: the raw gradient, scaled per channel by Adam's gain.

  For a gradient :math:`G_t \in \mathbb{R}^{m\times n}`, :math:`m \le n` (else transposed):

  .. math::
    R_t &= P_t G_t, \quad P_t \sim \mathcal{N}(0, 1/r)^{r\times m}
      \text{ (redrawn every } T \text{ steps)}, \\
    M_t &= \beta_1 M_{t-1} + (1-\beta_1) R_t, \quad V_t = \beta_2 V_{t-1} + (1-\beta_2) R_t^2,
    \quad \tilde R_t = \hat M_t / (\sqrt{\hat V_t} + \epsilon), \\
    s_j &= \|\tilde R_{:,j}\|_2 / \|R_{:,j}\|_2 \ \text{(channel)}, \qquad
    s = \|\tilde R_t\|_F / \|R_t\|_F \ \text{(tensor)}, \qquad
    \tilde G_t = \alpha\, G_t \operatorname{diag}(s),

  then the norm-growth limiter: if :math:`\|\tilde G_t\| > \gamma \|\tilde G_{t-1}\|`,
  :math:`\tilde G_t \leftarrow \tilde G_t \gamma \|\tilde G_{t-1}\| / \|\tilde G_t\|`.
  The channels are the indices of the larger side; the moments live in the ``r``-dimensional
  space, so the state costs :math:`2rn` numbers instead of Adam's :math:`2mn`. ``P_t`` is not
  stored: it is drawn again from ``(seed, leaf, t // T)`` at each step.

  Args:
    rank: :math:`r`, the rows of the projection (capped at the smaller side of each matrix).
    b1: decay of the first moment.
    b2: decay of the second moment.
    eps: :math:`\epsilon` of Adam's denominator.
    scale_type: ``"channel"`` (APOLLO) or ``"tensor"`` (one factor per matrix, APOLLO-Mini).
    alpha: :math:`\alpha`, a fixed factor on the step (1 for APOLLO, :math:`\sqrt{128}` for
      APOLLO-Mini).
    update_proj_gap: :math:`T`, steps between new projections.
    norm_growth_limit: :math:`\gamma`; ``None`` switches the limiter off.
    bias_correction: use Adam's bias-corrected moments :math:`\hat M_t, \hat V_t` (the
      reference code's default) rather than :math:`M_t, V_t`.
    seed: seed of the projections.

  Returns:
    An ``optax.GradientTransformation``; every leaf must be a matrix.
  """
  if scale_type not in SCALE_TYPES:
    raise ValueError(f"scale_type={scale_type!r} must be one of {', '.join(SCALE_TYPES)}")
  if not (isinstance(rank, int) and rank >= 1):
    raise ValueError(f"rank={rank} must be an integer >= 1")
  if not (isinstance(update_proj_gap, int) and update_proj_gap >= 1):
    raise ValueError(f"update_proj_gap={update_proj_gap} must be an integer >= 1")
  require_beta("b1", b1)
  require_beta("b2", b2)
  require_nonnegative("eps", eps)
  require_nonnegative("alpha", alpha)
  if is_number(norm_growth_limit) and not norm_growth_limit >= 1:
    raise ValueError(f"norm_growth_limit={norm_growth_limit} must be >= 1 (or None: off)")

  def low_rank_shape(shape):
    r = _rank(shape, rank)
    return (r, shape[1]) if shape[0] <= shape[1] else (shape[0], r)

  def init_fn(params):
    require_matrices(params, "apollo")
    zeros = lambda p: jnp.zeros(low_rank_shape(p.shape), upcast(p).dtype)
    return ScaleByApolloState(
        count=jnp.zeros([], jnp.int32), mu=jax.tree.map(zeros, params),
        nu=jax.tree.map(zeros, params),
        last_norm=jax.tree.map(lambda p: jnp.zeros([], upcast(p).dtype), params))

  def update_fn(updates, state, params=None):
    del params
    count = optax.safe_increment(state.count)
    t = count.astype(jnp.float32)
    base_key = jax.random.fold_in(jax.random.PRNGKey(seed), state.count // update_proj_gap)

    def leaf(index, g, m, v, last_norm):
      dtype = g.dtype
      g = upcast(g)
      proj = projection(jax.random.fold_in(base_key, index), g.shape, rank).astype(g.dtype)
      left = g.shape[0] <= g.shape[1]
      r_t = proj @ g if left else g @ proj.T
      m = b1 * m + (1 - b1) * r_t
      v = b2 * v + (1 - b2) * jnp.square(r_t)
      m_hat, v_hat = (m / (1 - b1**t), v / (1 - b2**t)) if bias_correction else (m, v)
      r_tilde = m_hat / (jnp.sqrt(v_hat) + eps)
      tiny = jnp.finfo(g.dtype).tiny
      if scale_type == "channel":
        axis = 0 if left else 1
        norm = lambda x: jnp.sqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True))
      else:
        norm = lambda x: jnp.sqrt(jnp.sum(jnp.square(x)))
      # A channel whose projected gradient is zero (a dead unit) gets no step, not 0 * inf.
      r_norm = norm(r_t)
      ratio = jnp.where(r_norm > 0, norm(r_tilde) / jnp.where(r_norm > 0, r_norm, 1.0), 0.0)
      scaled = alpha * g * ratio
      if norm_growth_limit is not None:
        size = jnp.sqrt(jnp.sum(jnp.square(scaled)))
        cap = norm_growth_limit * last_norm
        limit = jnp.logical_and(last_norm > 0, size > cap)
        scaled = scaled * jnp.where(limit, cap / jnp.maximum(size, tiny), 1.0)
      new_norm = jnp.sqrt(jnp.sum(jnp.square(scaled)))
      return scaled.astype(dtype), m, v, new_norm

    g_leaves, treedef = jax.tree.flatten(updates)
    parts = [treedef.flatten_up_to(x) for x in (state.mu, state.nu, state.last_norm)]
    out = [leaf(i, g, m, v, n) for i, (g, m, v, n) in enumerate(zip(g_leaves, *parts,
                                                                     strict=True))]
    columns = list(zip(*out, strict=True)) if out else [()] * 4
    new_updates, mu, nu, last_norm = (treedef.unflatten(list(x)) for x in columns)
    return new_updates, ScaleByApolloState(count=count, mu=mu, nu=nu, last_norm=last_norm)

  return optax.GradientTransformation(init_fn, update_fn)


@register("apollo")
def apollo(
    learning_rate: optax.ScalarOrSchedule,
    rank: int = 128,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    weight_decay: jax.typing.ArrayLike = 0.0,
    *,
    mask: None | Any | Callable[[optax.Params], Any] = None,
    scale_type: str = "channel",
    alpha: jax.typing.ArrayLike = 1.0,
    update_proj_gap: int = 200,
    norm_growth_limit: jax.typing.ArrayLike | None = 1.01,
    bias_correction: bool = True,
    seed: int = 0,
    is_matrix: None | Any | Callable[[optax.Params], Any] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""APOLLO on matrices (AdamW on the other leaves), with decoupled weight decay.

  .. math::
    W_t = W_{t-1} - \eta\, \tilde G_t - \eta\lambda W_{t-1},

  with :math:`\tilde G_t` the channel-scaled, norm-limited gradient of ``scale_by_apollo``
  (Algorithm 1 and Eq. 4 of the paper). The reference code (zhuhanqing/APOLLO) applies the
  bias correction as a factor :math:`\sqrt{1-\beta_2^t}/(1-\beta_1^t)` after the limiter and
  decays the already-updated weights; here the moments are bias-corrected before the ratio, and
  the decay uses :math:`W_{t-1}` as the paper writes it. Its projection stream (torch seeds)
  cannot be reproduced; here it is JAX's, from ``seed``.

  Args:
    learning_rate: :math:`\eta`, a scalar or a schedule (the paper pretrains with 1e-2).
    rank: :math:`r` (the paper: a quarter of the model width).
    b1: decay of the first moment (also Adam's on the other leaves).
    b2: decay of the second moment (likewise).
    eps: Adam's :math:`\epsilon`.
    weight_decay: :math:`\lambda`, decoupled, scaled by the learning rate.
    mask: where weight decay applies, a pytree of bools or a function of the params.
    scale_type: ``"channel"`` or ``"tensor"``.
    alpha: fixed factor on the matrix steps.
    update_proj_gap: :math:`T` (200 in the paper).
    norm_growth_limit: :math:`\gamma` (1.01 in the paper); ``None``: off.
    bias_correction: bias-corrected moments.
    seed: seed of the random projections.
    is_matrix: which leaves get APOLLO (pytree of bools or a function of the params);
      ``None``: every leaf with two axes.

  Returns:
    An ``optax.GradientTransformationExtraArgs``.

  References:
    Zhu, Zhang, Cong, Liu, Park, Chandra, Long, Pan, Wang & Lee, *APOLLO: SGD-like Memory,
    AdamW-level Performance*, MLSys 2025, https://arxiv.org/abs/2412.05270 (Algorithm 1)
  """
  require_nonnegative("learning_rate", learning_rate)
  require_nonnegative("weight_decay", weight_decay)
  return optax.chain(
      matrices_and_rest(
          scale_by_apollo(rank, b1, b2, eps, scale_type=scale_type, alpha=alpha,
                          update_proj_gap=update_proj_gap, norm_growth_limit=norm_growth_limit,
                          bias_correction=bias_correction, seed=seed),
          optax.scale_by_adam(b1, b2, eps), is_matrix),
      decayed_weights(weight_decay, mask),
      optax.scale_by_learning_rate(learning_rate))


@register("apollo_mini")
def apollo_mini(
    learning_rate: optax.ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    weight_decay: jax.typing.ArrayLike = 0.0,
    *,
    mask: None | Any | Callable[[optax.Params], Any] = None,
    alpha: jax.typing.ArrayLike = 128**0.5,
    update_proj_gap: int = 200,
    norm_growth_limit: jax.typing.ArrayLike | None = 1.01,
    seed: int = 0,
    is_matrix: None | Any | Callable[[optax.Params], Any] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""APOLLO-Mini: rank 1 and one scale per matrix, :math:`\alpha = \sqrt{128}`.

  ``apollo(learning_rate, rank=1, scale_type="tensor", alpha=sqrt(128), ...)``; its state is
  two numbers per column of each matrix. See ``apollo`` for the arguments.
  """
  return apollo(learning_rate, 1, b1, b2, eps, weight_decay, mask=mask, scale_type="tensor",
                alpha=alpha, update_proj_gap=update_proj_gap,
                norm_growth_limit=norm_growth_limit, seed=seed, is_matrix=is_matrix)
