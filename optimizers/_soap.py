"""SOAP: Adam in the eigenbasis of Shampoo's preconditioner.

Reference: Vyas et al., `SOAP: Improving and Stabilizing Shampoo using Adam
<https://arxiv.org/abs/2409.11321>`_, 2024; reference code nikhilvyas/SOAP (``soap.py``).
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optimizers._checks import require_beta, require_nonnegative
from optimizers._moments import adam_init
from optimizers._registry import register
from optimizers._shampoo import _gram, _precond_axes, _rotate, check_precond_args
from plain_numbers import is_number

__all__ = ["scale_by_soap", "soap"]


def _eigenbasis(gg: jax.Array) -> jax.Array:
  """Eigenvectors of a symmetric matrix, eigenvalues in descending order."""
  return jnp.flip(jnp.linalg.eigh(gg)[1], axis=1)


class ScaleBySoapState(NamedTuple):
  """State of :func:`scale_by_soap`.

  ``count`` counts calls; the first call only initialises the preconditioners, so the Adam step
  of call ``count`` is ``t = count`` (bias corrections and the refresh schedule use ``t``).
  """
  count: jax.Array  # shape=(), dtype=jnp.int32.
  mu: optax.Updates  # first moment, in the eigenbasis (coordinates follow Q's columns)
  nu: optax.Updates  # second moment, in the eigenbasis
  gg: Any  # per parameter, a tuple over axes: the EMA of G G^T along that axis, or None
  q: Any  # per parameter, a tuple over axes: the eigenbasis of gg, or None


def scale_by_soap(
    b1: float | jax.Array = 0.95,
    b2: float | jax.Array = 0.95,
    eps: float | jax.Array = 1e-8,
    precondition_frequency: int = 10,
    max_precond_dim: int = 10000,
    *,
    shampoo_beta: float | jax.Array | None = None,
    precondition_1d: bool = False,
    mu_dtype: Any = None,
    precond_dtype: Any = None,
) -> optax.GradientTransformation:
  r"""SOAP's direction: bias-corrected Adam run in the rotating eigenbasis of Shampoo's factors.

  For a matrix gradient :math:`G_t` (every axis of size at most ``max_precond_dim`` gets a
  factor; tensors likewise, one factor per axis):

  .. math::
    G'_t = Q_L^\top G_t Q_R, \quad
    M'_t = \beta_1 M'_{t-1} + (1-\beta_1) G'_t, \quad
    V_t = \beta_2 V_{t-1} + (1-\beta_2)\, G'^{\,2}_t, \\
    d_t = \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\;
      Q_L \frac{M'_t}{\sqrt{V_t} + \epsilon} Q_R^\top, \\
    L_t = \beta_s L_{t-1} + (1-\beta_s) G_t G_t^\top, \quad
    R_t = \beta_s R_{t-1} + (1-\beta_s) G_t^\top G_t,

  and when :math:`t` is a multiple of ``precondition_frequency`` the bases are refreshed by one
  power iteration: order :math:`Q`'s columns by :math:`\operatorname{diag}(Q^\top L Q)`
  (descending), permute :math:`V`'s coordinates alike, :math:`Q \leftarrow \operatorname{qr}(LQ)`,
  and move :math:`M'` to the new basis (:math:`M' \leftarrow Q_\text{new}^\top Q M' Q^\top
  Q_\text{new}` along each axis).
  The first call only sets :math:`L = (1-\beta_s) G G^\top` (and :math:`R`),
  :math:`Q = \operatorname{eigh}` (descending) and returns a zero update: the current gradient
  never enters its own projection. Parameters with no factor (vectors, unless
  ``precondition_1d``; axes longer than ``max_precond_dim``) get plain Adam on those axes.

  As the reference, :math:`M'` (the first moment in the eigenbasis) is what the state keeps; the
  reference moves it to the parameters' basis and back at every step, here only when :math:`Q`
  changes (the same up to rounding): a step changes basis twice, the gradient in and the
  direction out, where the reference does it four times. The
  eigendecomposition of the first call and the refreshes run inside ``lax.switch``: on the other
  steps no eigendecomposition, QR or product with the factors is computed.
  :math:`\operatorname{diag}(Q^\top LQ)` is read off the product :math:`LQ` that the power
  iteration needs anyway. Eigendecompositions and QR run in ``precond_dtype``.

  Args:
    b1: :math:`\beta_1`, Adam's first-moment decay.
    b2: :math:`\beta_2`, Adam's second-moment decay.
    eps: :math:`\epsilon`, added to :math:`\sqrt{V}`.
    precondition_frequency: refresh the eigenbases every this many steps.
    max_precond_dim: axes longer than this get no factor.
    shampoo_beta: :math:`\beta_s`, decay of :math:`L, R`; ``None`` uses ``b2`` (the reference's
      ``shampoo_beta=-1``).
    precondition_1d: give vectors a factor too.
    mu_dtype: dtype of :math:`M` and :math:`V` (``None``: the parameter's).
    precond_dtype: dtype of :math:`L, R, Q` and of the arithmetic (``None``: the parameter's,
      at least float32).

  Returns:
    An ``optax.GradientTransformation``.
  """
  mu_dtype = None if mu_dtype is None else jnp.dtype(mu_dtype)
  beta_s = b2 if shampoo_beta is None else shampoo_beta

  def cdtype(x):
    return jnp.dtype(precond_dtype) if precond_dtype is not None else jnp.promote_types(
        x.dtype, jnp.float32)

  def axes(x):
    return _precond_axes(x.shape, max_precond_dim, precondition_1d)

  def init_fn(params):
    def factors(p):
      kept = axes(p)
      return tuple(jnp.zeros((n, n), cdtype(p)) if i in kept else None
                   for i, n in enumerate(p.shape))
    return ScaleBySoapState(
        **adam_init(params, mu_dtype, nu_dtype=mu_dtype),
        gg=jax.tree.map(factors, params),
        q=jax.tree.map(factors, params))

  def update_fn(updates, state, params=None):
    del params
    t = state.count
    tf = t.astype(jnp.float32)
    # The first call (t = 0) only initialises L, R and Q: no step, the moments stay at zero.
    scale = jnp.where(t > 0, jnp.sqrt(1 - jnp.power(b2, tf)) / (1 - jnp.power(b1, tf)), 0.0)

    def step_leaf(g, mu, nu, gg, q):
      dt = cdtype(g)
      gc = g.astype(dt)
      live = (t > 0).astype(dt)
      g_rot = _rotate(gc, q, back=False)
      mu = b1 * mu.astype(dt) + ((1 - b1) * live) * g_rot
      nu = b2 * nu.astype(dt) + ((1 - b2) * live) * jnp.square(g_rot)
      direction = _rotate(mu / (jnp.sqrt(nu) + eps), q, back=True)
      gg = tuple(None if f is None else beta_s * f + (1 - beta_s) * _gram(gc, i)
                 for i, f in enumerate(gg))
      return (scale * direction).astype(g.dtype), mu, nu, gg

    g_leaves, treedef = jax.tree.flatten(updates)
    rest = [treedef.flatten_up_to(x) for x in (state.mu, state.nu, state.gg, state.q)]
    new = [step_leaf(*leaf) for leaf in zip(g_leaves, *rest, strict=True)]
    direction, mu, nu, gg = (treedef.unflatten([n[k] for n in new]) for k in range(4))

    def per_leaf(fn):
      def run(mu, nu, gg, q):
        leaves = [treedef.flatten_up_to(x) for x in (mu, nu, gg, q)]
        new = [fn(*leaf) for leaf in zip(*leaves, strict=True)]
        return tuple(treedef.unflatten([n[k] for n in new]) for k in range(3))
      return run

    def initialise(mu, nu, gg, q):
      del q
      return mu, nu, tuple(None if f is None else _eigenbasis(f) for f in gg)

    def refresh(mu, nu, gg, q):
      new_q = []
      for axis, (f, basis) in enumerate(zip(gg, q, strict=True)):
        if f is None:
          new_q.append(None)
          continue
        f_basis = f @ basis  # one power-iteration product; its diagonal part ranks Q's columns
        order = jnp.argsort(-jnp.sum(basis * f_basis, axis=0))
        nu = jnp.take(nu, order, axis=axis)
        new_q.append(jnp.linalg.qr(jnp.take(f_basis, order, axis=1))[0])
      new_q = tuple(new_q)
      return _rotate(_rotate(mu, q, back=True), new_q, back=False), nu, new_q

    branch = jnp.where(t == 0, 0, jnp.where(t % precondition_frequency == 0, 1, 2))
    mu, nu, q = jax.lax.switch(
        branch, [per_leaf(initialise), per_leaf(refresh), lambda mu, nu, gg, q: (mu, nu, q)],
        mu, nu, gg, state.q)
    return direction, ScaleBySoapState(
        count=optax.safe_increment(state.count), mu=optax.tree.cast_like(mu, state.mu),
        nu=optax.tree.cast_like(nu, state.nu), gg=gg, q=q)

  return optax.GradientTransformation(init_fn, update_fn)


class DecayAfterStepState(NamedTuple):
  count: jax.Array  # shape=(), dtype=jnp.int32; indexes the learning-rate schedule.


def _decay_after_step(learning_rate, weight_decay) -> optax.GradientTransformation:
  r"""Weight decay of the already-updated parameters: :math:`u \mapsto u - \eta\lambda(x+u)`.

  ``updates`` must already include the learning rate; the result makes
  :math:`x_{t+1} = (x_t + u)(1 - \eta\lambda)`, the reference's order (step, then decay).
  Skipped on the first call, which is SOAP's initialisation call.
  """
  def init_fn(params):
    del params
    return DecayAfterStepState(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("soap's weight decay needs params: call update(grads, state, params)")
    lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
    # The first call of scale_by_soap only initialises its preconditioners: no decay either.
    rate = jnp.where(state.count == 0, 0.0, lr * weight_decay)
    updates = jax.tree.map(lambda u, p: (u - rate * (p + u)).astype(u.dtype), updates, params)
    return updates, DecayAfterStepState(count=optax.safe_increment(state.count))

  return optax.GradientTransformation(init_fn, update_fn)


@register("soap")
def soap(
    learning_rate: optax.ScalarOrSchedule = 3e-3,
    b1: float | jax.Array = 0.95,
    b2: float | jax.Array = 0.95,
    eps: float | jax.Array = 1e-8,
    weight_decay: float | jax.Array = 0.01,
    precondition_frequency: int = 10,
    max_precond_dim: int = 10000,
    *,
    shampoo_beta: float | jax.Array | None = None,
    precondition_1d: bool = False,
    mask: Any = None,
    mu_dtype: Any = None,
    precond_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""SOAP: Adam in the eigenbasis of Shampoo's preconditioner, with decoupled weight decay.

  .. math::
    x_{t+1} = \big(x_t - \eta_t\, d_t\big)(1 - \eta_t \lambda),

  with :math:`d_t` from :func:`scale_by_soap` (zero on the first call, which only initialises
  the preconditioners; the decay is skipped then too). Weight decay multiplies the parameters
  after the step, as in the reference (``p.add_(p, alpha=-lr * weight_decay)`` after the update).

  Defaults are the reference's (``SOAP(lr=3e-3, betas=(0.95, 0.95), shampoo_beta=-1, eps=1e-8,
  weight_decay=0.01, precondition_frequency=10, max_precond_dim=10000)``); ``merge_dims`` and
  ``normalize_grads`` are not implemented (both off by default there), ``correct_bias`` is
  always on, ``data_format`` does not apply (every axis is preconditioned, layout-free).

  Args:
    learning_rate: :math:`\eta_t`, a float or a schedule.
    b1: Adam's :math:`\beta_1`.
    b2: Adam's :math:`\beta_2`.
    eps: added to :math:`\sqrt{V}`.
    weight_decay: :math:`\lambda`, applied after the step (scaled by the learning rate).
    precondition_frequency: refresh the eigenbases every this many steps.
    max_precond_dim: axes longer than this get no Shampoo factor.
    shampoo_beta: decay of the Shampoo factors; ``None`` uses ``b2``.
    precondition_1d: give vectors a factor too.
    mask: which parameters are decayed: a pytree of bools or a function of the params, as in
      ``optax.adamw`` (``None``: all, as the reference).
    mu_dtype: dtype of Adam's moments (``None``: the parameter's).
    precond_dtype: dtype of the factors, eigenbases and arithmetic (``None``: the parameter's,
      at least float32).

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` needs ``params`` unless
    ``weight_decay`` is 0.

  Example:
    >>> import jax.numpy as jnp
    >>> params = {"w": jnp.eye(4), "b": jnp.zeros(4)}
    >>> tx = soap(3e-3)
    >>> state = tx.init(params)
    >>> updates, state = tx.update(params, state, params)  # first call: zero update

  References:
    Vyas et al., `SOAP: Improving and Stabilizing Shampoo using Adam
    <https://arxiv.org/abs/2409.11321>`_, 2024.
  """
  require_nonnegative("learning_rate", learning_rate)
  require_beta("b1", b1)
  require_beta("b2", b2)
  if shampoo_beta is not None:
    require_beta("shampoo_beta", shampoo_beta)
  require_nonnegative("eps", eps)
  require_nonnegative("weight_decay", weight_decay)
  check_precond_args(precondition_frequency, max_precond_dim)
  parts = [
      scale_by_soap(b1, b2, eps, precondition_frequency, max_precond_dim,
                    shampoo_beta=shampoo_beta, precondition_1d=precondition_1d,
                    mu_dtype=mu_dtype, precond_dtype=precond_dtype),
      optax.scale_by_learning_rate(learning_rate),
  ]
  if not (is_number(weight_decay) and weight_decay == 0):
    decay = _decay_after_step(learning_rate, weight_decay)
    parts.append(decay if mask is None else optax.masked(decay, mask))
  return optax.chain(*parts)
