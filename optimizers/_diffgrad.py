"""diffGrad (Dubey et al. 2019): Adam whose step is damped where the gradient changes little."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from optimizers._checks import require_beta, require_nonnegative
from optimizers._moments import adam_init
from optimizers._registry import register

__all__ = ["diffgrad", "scale_by_diffgrad"]


class ScaleByDiffGradState(NamedTuple):
  """State of ``scale_by_diffgrad``."""
  count: jax.Array  # int32 scalar: number of updates so far.
  mu: optax.Updates  # Adam's first moment.
  nu: optax.Updates  # Adam's second moment.
  prev_grad: optax.Updates  # The gradient of the last update; zero before the first.


def scale_by_diffgrad(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    *,
    mu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
  r"""Rescales updates by diffGrad: Adam's step times a friction coefficient.

  .. math::
    m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
    v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \\
    \xi_t &= \frac{1}{1 + e^{-|g_{t-1} - g_t|}}, \qquad
    u_t = \xi_t \frac{m_t / (1 - \beta_1^t)}{\sqrt{v_t / (1 - \beta_2^t)} + \epsilon},

  element-wise, with :math:`g_0 = 0` (the stored previous gradient starts at zero).
  :math:`\xi_t \in [1/2, 1)`: the step is halved where the gradient has stopped changing.

  Args:
    b1: decay of the first moment.
    b2: decay of the second moment.
    eps: added to the denominator.
    mu_dtype: dtype of the first moment; ``None`` keeps that of the parameters.

  Returns:
    An ``optax.GradientTransformation``.
  """
  require_beta("b1", b1)
  require_beta("b2", b2)
  require_nonnegative("eps", eps)

  def init_fn(params):
    return ScaleByDiffGradState(**adam_init(params, mu_dtype),
                                prev_grad=optax.tree.zeros_like(params))

  def update_fn(updates, state, params=None):
    del params
    count = optax.safe_increment(state.count)
    mu = optax.tree.update_moment(updates, state.mu, b1, 1)
    nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
    mu_hat = optax.tree.bias_correction(mu, b1, count)
    nu_hat = optax.tree.bias_correction(nu, b2, count)
    friction = jax.tree.map(lambda g, g_prev: jax.nn.sigmoid(jnp.abs(g_prev - g)),
                            updates, state.prev_grad)
    new_updates = jax.tree.map(
        lambda xi, m, v, g: (xi * m / (jnp.sqrt(v) + eps)).astype(g.dtype),
        friction, mu_hat, nu_hat, updates)
    return new_updates, ScaleByDiffGradState(
        count=count, mu=optax.tree.cast_like(mu, state.mu),
        nu=optax.tree.cast_like(nu, state.nu),
        prev_grad=optax.tree.cast_like(updates, state.prev_grad))

  return optax.GradientTransformation(init_fn, update_fn)


@register("diffgrad")
def diffgrad(
    learning_rate: optax.ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    *,
    mu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""diffGrad: Adam with a friction coefficient from the change of the gradient.

  .. math::
    \xi_t = \mathrm{sigmoid}\big(|g_{t-1} - g_t|\big), \qquad
    x_t = x_{t-1} - \eta\, \xi_t \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon},

  with :math:`\hat m_t, \hat v_t` Adam's bias-corrected moments and :math:`g_0 = 0`.
  Weight decay, in the reference code, is L2 added to the gradient before everything else
  (so it also enters :math:`\xi_t`): chain ``optax.add_decayed_weights`` in front.

  Args:
    learning_rate: :math:`\eta`, a scalar or a schedule.
    b1: decay of the first moment.
    b2: decay of the second moment.
    eps: added to the denominator.
    mu_dtype: dtype of the first moment; ``None`` keeps that of the parameters.

  Returns:
    An ``optax.GradientTransformationExtraArgs``.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> from optimizers._diffgrad import diffgrad
    >>> loss_fn = lambda x: jnp.sum(x ** 2)
    >>> x = jnp.array([1.0, -2.0])
    >>> opt = diffgrad(learning_rate=0.1)
    >>> state = opt.init(x)
    >>> updates, state = opt.update(jax.grad(loss_fn)(x), state, x)
    >>> x = optax.apply_updates(x, updates)

  References:
    Dubey, Chakraborty, Roy, Mukherjee, Singh & Chaudhuri, *diffGrad: An Optimization
    Method for Convolutional Neural Networks*, IEEE TNNLS 2019,
    https://arxiv.org/abs/1909.11015
  """
  require_nonnegative("learning_rate", learning_rate)
  return optax.chain(scale_by_diffgrad(b1, b2, eps, mu_dtype=mu_dtype),
                     optax.scale_by_learning_rate(learning_rate))
