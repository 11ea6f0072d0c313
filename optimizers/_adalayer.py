"""Adalayer (Zhao et al. 2024): Adam with one second moment per parameter block."""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optimizers._checks import require_beta, require_nonnegative, upcast
from optimizers._moments import momentum_init
from optimizers._registry import register

__all__ = ["adalayer", "scale_by_adalayer"]


class ScaleByAdalayerState(NamedTuple):
  """State of ``scale_by_adalayer``."""
  count: jax.Array  # int32 scalar: number of updates so far.
  mu: optax.Updates  # Adam's first moment, one entry per coordinate.
  # One second moment per block, kept with the leaf's rank: shape (1, ..., 1) for a whole
  # leaf, (1, ..., 1, d_out) for a leaf adapted per output unit.
  nu: optax.Updates


def _blocks_on_last_axis(shape: tuple[int, ...], per_output: bool, split: int) -> int:
  if not shape:
    return 1
  if per_output:
    return shape[-1]
  if split < 1 or shape[-1] % split:
    raise ValueError(f"split_last={split} must divide the last axis of a {shape} leaf")
  return split


def _block_mean_square(g: jax.Array, blocks: int) -> jax.Array:
  """Mean of g^2 over each block: ``blocks`` equal, contiguous pieces of the last axis (all
  other axes are summed over); shaped (1, ..., 1, blocks)."""
  g = upcast(g)
  if g.ndim == 0:
    return jnp.square(g)
  pieces = g.reshape(*g.shape[:-1], blocks, g.shape[-1] // blocks)
  axes = (*range(g.ndim - 1), g.ndim)
  return jnp.mean(jnp.square(pieces), axis=axes).reshape((1,) * (g.ndim - 1) + (blocks,))


def _expand(v: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """A (1, ..., 1, blocks) moment repeated over the entries of each block of a ``shape`` leaf."""
  if not shape or v.shape[-1] in (1, shape[-1]):
    return v
  return jnp.repeat(v, shape[-1] // v.shape[-1], axis=-1)


def _flags(spec, params, default):
  """A per-leaf value from a pytree (or a prefix of one) or a function of the params."""
  if spec is None:
    return jax.tree.map(lambda _: default, params)
  tree = spec(params) if callable(spec) else spec
  return jax.tree.map(lambda flag, subtree: jax.tree.map(lambda _: flag, subtree), tree, params)


def scale_by_adalayer(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    *,
    per_output: None | Any | Callable[[optax.Params], Any] = None,
    split_last: None | Any | Callable[[optax.Params], Any] = None,
    mu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
  r"""Rescales updates by Adalayer: Adam with one scalar second moment per block.

  For each block :math:`b` (a leaf of the parameter pytree, one output unit of a leaf marked
  in ``per_output``, or one of the ``split_last`` equal pieces of a leaf's last axis) with
  :math:`d_b` entries:

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
    split_last: number of equal blocks along each leaf's last axis (1: the whole leaf), a
      pytree of ints or a function of the parameters returning one: 3 on a fused ``(D, 3D)``
      query/key/value kernel gives the paper's separate q, k and v blocks (Adalayer*).
    mu_dtype: dtype of the first moment; ``None`` keeps that of the parameters.

  Returns:
    An ``optax.GradientTransformation``.
  """
  require_beta("b1", b1)
  require_beta("b2", b2)
  require_nonnegative("eps", eps)

  def init_fn(params):
    nu = jax.tree.map(
        lambda p, per_out, split: jnp.zeros(
            (1,) * max(jnp.ndim(p) - 1, 0)
            + ((_blocks_on_last_axis(jnp.shape(p), bool(per_out), int(split)),)
               if jnp.ndim(p) else ()), jnp.asarray(p).dtype),
        params, _flags(per_output, params, False), _flags(split_last, params, 1))
    return ScaleByAdalayerState(**momentum_init(params, mu_dtype), nu=nu)

  def update_fn(updates, state, params=None):
    del params
    count = optax.safe_increment(state.count)
    mu = optax.tree.update_moment(updates, state.mu, b1, 1)
    nu = jax.tree.map(
        lambda g, v: b2 * upcast(v) + (1 - b2) * _block_mean_square(
            g, v.shape[-1] if v.ndim else 1),
        updates, state.nu)
    mu_hat = optax.tree.bias_correction(mu, b1, count)
    nu_hat = optax.tree.bias_correction(nu, b2, count)
    new_updates = jax.tree.map(
        lambda m, v, g: (m / (jnp.sqrt(_expand(v, g.shape)) + eps)).astype(g.dtype),
        mu_hat, nu_hat, updates)
    return new_updates, ScaleByAdalayerState(
        count=count, mu=optax.tree.cast_like(mu, state.mu), nu=optax.tree.cast_like(nu, state.nu))

  return optax.GradientTransformation(init_fn, update_fn)


@register("adalayer")
def adalayer(
    learning_rate: optax.ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    *,
    per_output: None | Any | Callable[[optax.Params], Any] = None,
    split_last: None | Any | Callable[[optax.Params], Any] = None,
    mu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Adalayer: Adam's first moment with a single second moment per layer (block).

  .. math::
    v_{t,b} = \beta_2 v_{t-1,b} + (1 - \beta_2)\, \mathrm{mean}_{i \in b}\, g_{t,i}^2, \qquad
    x_{t,i} = x_{t-1,i} - \eta \frac{\hat m_{t,i}}{\sqrt{\hat v_{t,b}} + \epsilon},
    \quad i \in b,

  with :math:`\hat m, \hat v` Adam's bias-corrected moments (see ``scale_by_adalayer``).
  Each leaf of the parameter pytree is a block; leaves marked in ``per_output`` get one
  block per output unit (the paper's variant for the last layer), and ``split_last`` cuts a
  leaf's last axis into equal blocks (a fused query/key/value kernel into q, k and v). The
  paper's Adalayer* is both: ``per_output`` on the head, ``split_last=3`` on the attention's
  input kernel; with this codebase's GPT::

    adalayer(lr, per_output=lambda p: {**jax.tree.map(lambda _: False, p), "head": True},
             split_last=lambda p: jax.tree_util.tree_map_with_path(
                 lambda path, _: 3 if path[-1].key == "qkv" else 1, p))

  Args:
    learning_rate: :math:`\eta`, a scalar or a schedule.
    b1: decay of the first moment.
    b2: decay of the per-block second moment.
    eps: added to the denominator.
    per_output: leaves adapted per output unit (last axis in Flax layout): a pytree of bools
      or a function of the parameters returning one.
    split_last: equal blocks along each leaf's last axis: a pytree of ints or a function of
      the parameters returning one.
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
    Optimizer for Language Models*, ICLR 2025, https://arxiv.org/abs/2407.07972; blocks,
    mean of :math:`g^2` and bias corrections as in the authors' code (rosieyzh/optimizers-llm,
    ``AdalayerW``; its ``att_correction`` is ``split_last=3`` on the fused attention kernel,
    ``lastlayer_correction`` is ``per_output`` on the head)
  """
  require_nonnegative("learning_rate", learning_rate)
  return optax.chain(
      scale_by_adalayer(b1, b2, eps, per_output=per_output, split_last=split_last,
                        mu_dtype=mu_dtype),
      optax.scale_by_learning_rate(learning_rate))
