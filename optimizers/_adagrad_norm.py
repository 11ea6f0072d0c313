"""AdaGrad-Norm (Ward, Wu & Bottou 2019): one AdaGrad step size for the whole model."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from optimizers._checks import require_nonnegative, require_positive
from optimizers._registry import register

__all__ = ["adagrad_norm", "scale_by_adagrad_norm"]


class ScaleByAdagradNormState(NamedTuple):
  """State of ``scale_by_adagrad_norm``."""
  count: jax.Array  # int32 scalar: number of updates so far.
  sum_sq: jax.Array  # b_j^2 = b_0^2 + sum of the squared global gradient norms so far.


def scale_by_adagrad_norm(
    b0: jax.typing.ArrayLike = 0.1,
    *,
    accumulator_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
  r"""Divides the gradient by the square root of the running sum of squared gradient norms.

  .. math::
    b_j^2 = b_{j-1}^2 + \|g_{j-1}\|^2, \qquad u_j = g_{j-1} / b_j,

  with :math:`\|\cdot\|` the global norm over the whole pytree (a single scalar
  accumulator) and :math:`b_0 > 0`. The current gradient is in :math:`b_j`.

  Args:
    b0: :math:`b_0 > 0`, the initial value of the accumulator's square root.
    accumulator_dtype: dtype of the accumulator; ``None`` takes that of the parameters
      (float32 is advisable with bfloat16 parameters: it is a running sum).

  Returns:
    An ``optax.GradientTransformation``.
  """
  require_positive("b0", b0)

  def init_fn(params):
    leaves = jax.tree.leaves(params)
    if accumulator_dtype is not None:
      dtype = accumulator_dtype
    else:
      dtype = jnp.result_type(*leaves) if leaves else jnp.float32
    return ScaleByAdagradNormState(count=jnp.zeros([], jnp.int32),
                                   sum_sq=jnp.square(jnp.asarray(b0, dtype)))

  def update_fn(updates, state, params=None):
    del params
    compute = jnp.promote_types(state.sum_sq.dtype, jnp.float32)
    sq_norm = sum((jnp.sum(jnp.square(g.astype(compute))) for g in jax.tree.leaves(updates)),
                  jnp.zeros([], compute))
    sum_sq = state.sum_sq.astype(compute) + sq_norm
    scale = jax.lax.rsqrt(sum_sq)
    updates = jax.tree.map(lambda g: (scale * g).astype(g.dtype), updates)
    return updates, ScaleByAdagradNormState(count=optax.safe_increment(state.count),
                                            sum_sq=sum_sq.astype(state.sum_sq.dtype))

  return optax.GradientTransformation(init_fn, update_fn)


@register("adagrad_norm")
def adagrad_norm(
    learning_rate: optax.ScalarOrSchedule,
    b0: jax.typing.ArrayLike = 0.1,
    *,
    accumulator_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""AdaGrad-Norm: SGD with the step size :math:`\eta / b_j`, one scalar for the model.

  .. math::
    b_j^2 = b_{j-1}^2 + \|g_{j-1}\|^2, \qquad x_j = x_{j-1} - \frac{\eta}{b_j} g_{j-1}.

  Args:
    learning_rate: :math:`\eta`, a scalar or a schedule.
    b0: :math:`b_0 > 0`; the first step is :math:`\eta g_0 / \sqrt{b_0^2 + \|g_0\|^2}`.
    accumulator_dtype: dtype of the accumulator; ``None`` takes that of the parameters.

  Returns:
    An ``optax.GradientTransformationExtraArgs``.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> from optimizers._adagrad_norm import adagrad_norm
    >>> loss_fn = lambda x: jnp.sum(x ** 2)
    >>> x = jnp.array([1.0, -2.0])
    >>> opt = adagrad_norm(learning_rate=1.0)
    >>> state = opt.init(x)
    >>> updates, state = opt.update(jax.grad(loss_fn)(x), state, x)
    >>> x = optax.apply_updates(x, updates)

  References:
    Ward, Wu & Bottou, *AdaGrad stepsizes: Sharp convergence over nonconvex landscapes*,
    JMLR 2020 (ICML 2019), https://arxiv.org/abs/1806.01811 (Algorithm 1, AdaGrad-Norm)
  """
  require_nonnegative("learning_rate", learning_rate)
  return optax.chain(scale_by_adagrad_norm(b0, accumulator_dtype=accumulator_dtype),
                     optax.scale_by_learning_rate(learning_rate))
