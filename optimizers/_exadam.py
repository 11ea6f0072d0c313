"""EXAdam (Adly 2024): Adam with cross-moment debiasing and a gradient-accelerating term."""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optimizers._checks import decayed_weights, require_beta, require_nonnegative, upcast
from optimizers._moments import adam_init
from optimizers._registry import register

__all__ = ["exadam", "scale_by_exadam"]


class ScaleByExadamState(NamedTuple):
  """State of ``scale_by_exadam``."""
  count: jax.Array  # int32 scalar: number of updates so far.
  mu: optax.Updates  # first moment m_t.
  nu: optax.Updates  # second moment v_t.


def scale_by_exadam(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    *,
    dynamic_step: bool = False,
    mu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
  r"""Rescales updates by EXAdam: cross-debiased moments plus the debiased current gradient.

  .. math::
    m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\\
    d_1 &= 1 + \frac{v_t}{v_t + \epsilon}\beta_2^t, \qquad
    d_2 = 1 + \frac{m_t^2}{m_t^2 + \epsilon}\beta_1^t,\\
    \tilde m_t &= \frac{m_t}{1-\beta_1^t} d_1, \quad
    \tilde v_t = \frac{v_t}{1-\beta_2^t} d_2, \quad
    \tilde g_t = \frac{g_t}{1-\beta_1^t} d_1, \qquad
    u_t = \frac{\tilde m_t + \tilde g_t}{\sqrt{\tilde v_t} + \epsilon},

  element-wise, with :math:`t` counting from 1 and one :math:`\epsilon` in all three places.
  The first moment is debiased with a factor built from the second, and the second with one
  built from the first; :math:`d_1, d_2` fall from about 2 to 1 as :math:`\beta^t \to 0`.
  The accelerator :math:`\tilde g_t` makes the first step
  :math:`(1+\beta_2)(1 + 1/(1-\beta_1))/\sqrt{1+\beta_1} \approx 16` times Adam's (at the
  default betas); a warmup of the learning rate is advisable.

  Args:
    b1: decay of the first moment.
    b2: decay of the second moment.
    eps: :math:`\epsilon` of the debiasing factors and of the denominator.
    dynamic_step: multiply the step by :math:`\ln(\sqrt{2}\sqrt{t+1})`, the growing step size
      of the paper's first version (removed in its second).
    mu_dtype: dtype of the first moment; ``None`` keeps that of the parameters.

  Returns:
    An ``optax.GradientTransformation``.
  """
  require_beta("b1", b1)
  require_beta("b2", b2)
  require_nonnegative("eps", eps)

  def init_fn(params):
    return ScaleByExadamState(**adam_init(params, mu_dtype))

  def update_fn(updates, state, params=None):
    del params
    count = optax.safe_increment(state.count)
    mu = optax.tree.update_moment(updates, state.mu, b1, 1)
    nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
    t = count.astype(jnp.float32)
    b1_t, b2_t = jnp.power(b1, t), jnp.power(b2, t)
    step_scale = jnp.log(jnp.sqrt(2.0) * jnp.sqrt(t + 1.0)) if dynamic_step else 1.0

    def leaf(g, m, v):
      g, m, v = upcast(g), upcast(m), upcast(v)
      d1 = 1 + v / (v + eps) * b2_t
      d2 = 1 + jnp.square(m) / (jnp.square(m) + eps) * b1_t
      m_tilde = m / (1 - b1_t) * d1
      v_tilde = v / (1 - b2_t) * d2
      g_tilde = g / (1 - b1_t) * d1
      return step_scale * (m_tilde + g_tilde) / (jnp.sqrt(v_tilde) + eps)

    new_updates = jax.tree.map(lambda g, m, v: leaf(g, m, v).astype(g.dtype), updates, mu, nu)
    return new_updates, ScaleByExadamState(count=count, mu=optax.tree.cast_like(mu, state.mu),
                                           nu=optax.tree.cast_like(nu, state.nu))

  return optax.GradientTransformation(init_fn, update_fn)


@register("exadam")
def exadam(
    learning_rate: optax.ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    weight_decay: jax.typing.ArrayLike = 0.0,
    *,
    mask: None | Any | Callable[[optax.Params], Any] = None,
    dynamic_step: bool = False,
    mu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""EXAdam: Adam with cross-moment debiasing and the debiased gradient added to the step.

  .. math::
    x_t = x_{t-1} - \eta \left( \frac{\tilde m_t + \tilde g_t}{\sqrt{\tilde v_t} + \epsilon}
    + \lambda x_{t-1} \right),

  with :math:`\tilde m_t, \tilde v_t, \tilde g_t` as in ``scale_by_exadam`` and decoupled weight
  decay :math:`\lambda` (as AdamW; the reference code shrinks the parameters by
  :math:`1 - \eta\lambda` before the step, which is the same update).

  Args:
    learning_rate: :math:`\eta`, a scalar or a schedule (1e-3 by the paper's recommendation).
    b1: decay of the first moment.
    b2: decay of the second moment.
    eps: :math:`\epsilon`.
    weight_decay: :math:`\lambda`, decoupled, scaled by the learning rate.
    mask: where weight decay applies (True), a pytree of bools or a function of the params.
    dynamic_step: the first version's growing step size, :math:`\ln(\sqrt{2}\sqrt{t+1})`.
    mu_dtype: dtype of the first moment; ``None`` keeps that of the parameters.

  Returns:
    An ``optax.GradientTransformationExtraArgs``.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> from optimizers._exadam import exadam
    >>> loss_fn = lambda x: jnp.sum(x ** 2)
    >>> x = jnp.array([1.0, -2.0])
    >>> opt = exadam(learning_rate=1e-2)
    >>> state = opt.init(x)
    >>> updates, state = opt.update(jax.grad(loss_fn)(x), state, x)
    >>> x = optax.apply_updates(x, updates)

  References:
    Adly, *EXAdam: The Power of Adaptive Cross-Moments*, 2024,
    https://arxiv.org/abs/2412.20302 (second version; the rule as in the author's code,
    AhmedMostafa16/EXAdam ``exadam.py``)
  """
  require_nonnegative("learning_rate", learning_rate)
  require_nonnegative("weight_decay", weight_decay)
  return optax.chain(
      scale_by_exadam(b1, b2, eps, dynamic_step=dynamic_step, mu_dtype=mu_dtype),
      decayed_weights(weight_decay, mask),
      optax.scale_by_learning_rate(learning_rate))
