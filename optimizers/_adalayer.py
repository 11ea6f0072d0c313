"""Adalayer (Zhao et al. 2024): Adam with one second moment per parameter block."""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optimizers._checks import require_beta, require_nonnegative, upcast


class ScaleByAdalayerState(NamedTuple):
  """State of ``scale_by_adalayer``."""
  count: jax.Array  # int32 scalar: number of updates so far.
  mu: optax.Updates  # Adam's first moment, one entry per coordinate.
  # One second moment per block, kept with the leaf's rank: shape (1, ..., 1) for a whole
  # leaf, (1, ..., 1, d_out) for a leaf adapted per output unit.
  nu: optax.Updates


def _block_shape(shape: tuple[int, ...], per_output: bool) -> tuple[int, ...]:
  if per_output and shape:
    return (1,) * (len(shape) - 1) + (shape[-1],)
  return (1,) * len(shape)


def _block_mean_square(g: jax.Array, block_shape: tuple[int, ...]) -> jax.Array:
  """Mean of g^2 over each block; the blocks are the axes where the moment has size 1."""
  axes = tuple(i for i, n in enumerate(block_shape) if n == 1)
  return jnp.mean(jnp.square(upcast(g)), axis=axes, keepdims=True)


def scale_by_adalayer(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    *,
    per_output: None | Any | Callable[[optax.Params], Any] = None,
    mu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
  r"""Rescales updates by Adalayer: Adam with one scalar second moment per block.

  For each block :math:`b` (a leaf of the parameter pytree, or one output unit of a leaf
  marked in ``per_output``) with :math:`d_b` entries:

  .. math::
    m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
    v_{t,b} = \beta_2 v_{t-1,b} + (1 - \beta_2) \frac{1}{d_b} \sum_{i \in b} g_{t,i}^2, \\
    u_{t,i} &= \frac{m_{t,i} / (1 - \beta_1^t)}{\sqrt{v_{t,b} / (1 - \beta_2^t)} + \epsilon},
    \quad i \in b.

  A block of one entry is Adam; a block holding the whole model is Adam with one global
  second moment.

  Args:
    b1: decay of the first moment.
    b2: decay of the per-block second moment.
    eps: added to the denominator.
    per_output: leaves whose second moment is kept per output unit (the last axis of a Flax
      kernel, one row of a torch weight), the paper's treatment of the last layer. A pytree
      of bools with the structure of the parameters, or a function of the parameters that
      returns one; ``None`` treats every leaf as one block.
    mu_dtype: dtype of the first moment; ``None`` keeps that of the parameters.

  Returns:
    An ``optax.GradientTransformation``.
  """
  require_beta("b1", b1)
  require_beta("b2", b2)
  require_nonnegative("eps", eps)

  def init_fn(params):
    if per_output is None:
      flags = jax.tree.map(lambda _: False, params)
    else:
      flags = per_output(params) if callable(per_output) else per_output
    # The flags may be a prefix of the parameters: a flag covers a whole subtree.
    nu = jax.tree.map(
        lambda flag, subtree: jax.tree.map(
            lambda p: jnp.zeros(_block_shape(jnp.shape(p), bool(flag)), jnp.asarray(p).dtype),
            subtree),
        flags, params)
    return ScaleByAdalayerState(count=jnp.zeros([], jnp.int32),
                                mu=optax.tree.zeros_like(params, dtype=mu_dtype), nu=nu)

  def update_fn(updates, state, params=None):
    del params
    count = optax.safe_increment(state.count)
    mu = optax.tree.update_moment(updates, state.mu, b1, 1)
    nu = jax.tree.map(
        lambda g, v: b2 * upcast(v) + (1 - b2) * _block_mean_square(g, v.shape),
        updates, state.nu)
    mu_hat = optax.tree.bias_correction(mu, b1, count)
    nu_hat = optax.tree.bias_correction(nu, b2, count)
    new_updates = jax.tree.map(
        lambda m, v, g: (m / (jnp.sqrt(v) + eps)).astype(g.dtype), mu_hat, nu_hat, updates)
    return new_updates, ScaleByAdalayerState(
        count=count, mu=optax.tree.cast_like(mu, state.mu), nu=optax.tree.cast_like(nu, state.nu))

  return optax.GradientTransformation(init_fn, update_fn)


def adalayer(
    learning_rate: optax.ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    *,
    per_output: None | Any | Callable[[optax.Params], Any] = None,
    mu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Adalayer: Adam's first moment with a single second moment per layer (block).

  .. math::
    v_{t,b} = \beta_2 v_{t-1,b} + (1 - \beta_2)\, \mathrm{mean}_{i \in b}\, g_{t,i}^2, \qquad
    x_{t,i} = x_{t-1,i} - \eta \frac{\hat m_{t,i}}{\sqrt{\hat v_{t,b}} + \epsilon},
    \quad i \in b,

  with :math:`\hat m, \hat v` Adam's bias-corrected moments (see ``scale_by_adalayer``).
  Each leaf of the parameter pytree is a block; leaves marked in ``per_output`` get one
  block per output unit (the paper's variant for the last layer).

  Args:
    learning_rate: :math:`\eta`, a scalar or a schedule.
    b1: decay of the first moment.
    b2: decay of the per-block second moment.
    eps: added to the denominator.
    per_output: leaves adapted per output unit (last axis in Flax layout): a pytree of bools
      or a function of the parameters returning one.
    mu_dtype: dtype of the first moment; ``None`` keeps that of the parameters.

  Returns:
    An ``optax.GradientTransformationExtraArgs``.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> from optimizers._adalayer import adalayer
    >>> params = {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}
    >>> opt = adalayer(1e-2, per_output={"kernel": True, "bias": False})
    >>> state = opt.init(params)
    >>> grads = jax.tree.map(jnp.ones_like, params)
    >>> updates, state = opt.update(grads, state, params)
    >>> state[0].nu["kernel"].shape
    (1, 2)

  References:
    Zhao, Morwani, Brandfonbrener, Vyas & Kakade, *Deconstructing What Makes a Good
    Optimizer for Language Models*, ICLR 2025, https://arxiv.org/abs/2407.07972
  """
  require_nonnegative("learning_rate", learning_rate)
  return optax.chain(
      scale_by_adalayer(b1, b2, eps, per_output=per_output, mu_dtype=mu_dtype),
      optax.scale_by_learning_rate(learning_rate))
