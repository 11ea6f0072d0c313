"""Shampoo: preconditioned stochastic tensor optimization.

Reference: Gupta, Koren & Singer, `Shampoo: Preconditioned Stochastic Tensor Optimization
<https://arxiv.org/abs/1802.09568>`_, ICML 2018 (Algorithms 1 and 2).
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optimizers._checks import require_nonnegative, require_positive
from optimizers._registry import register

__all__ = ["scale_by_shampoo", "shampoo"]


def check_precond_args(precondition_frequency: Any, max_precond_dim: Any) -> None:
  """The refresh period and the largest factored axis (SOAP's too)."""
  if isinstance(precondition_frequency, int) and precondition_frequency < 1:
    raise ValueError(f"precondition_frequency={precondition_frequency} must be >= 1")
  if not isinstance(max_precond_dim, int) or max_precond_dim < 1:
    raise ValueError(f"max_precond_dim={max_precond_dim!r} must be a Python int >= 1 (static in "
                     "optax.inject_hyperparams)")


def _precond_axes(shape, max_precond_dim: int, precondition_1d: bool) -> tuple[int, ...]:
  """Axes with a full-matrix factor: those of size <= max_precond_dim (vectors on request)."""
  if len(shape) == 0 or (len(shape) == 1 and not precondition_1d):
    return ()
  return tuple(i for i, n in enumerate(shape) if n <= max_precond_dim)


def _gram(g: jax.Array, axis: int) -> jax.Array:
  """G_(axis) G_(axis)^T: the contraction of g with itself over every axis but ``axis``."""
  flat = jnp.moveaxis(g, axis, 0).reshape(g.shape[axis], -1)
  return flat @ flat.T


def _rotate(x: jax.Array, mats, *, back: bool) -> jax.Array:
  """Multiplies every axis of x by its matrix: M^T along the axis, or M with ``back=True``.

  ``mats`` holds one matrix or ``None`` (identity) per axis. For a matrix x and mats (A, B):
  ``A^T x B``, or ``A x B^T`` with ``back=True``.
  """
  for axis, m in enumerate(mats):
    if m is None:
      continue
    x = jnp.moveaxis(jnp.tensordot(m if back else m.T, x, axes=(1, axis)), 0, axis)
  return x


def _inverse_root(h: jax.Array, p: int, floor) -> jax.Array:
  """H^(-1/p) of a symmetric positive-definite H, eigenvalues clipped below at ``floor``."""
  w, v = jnp.linalg.eigh(h)
  w = jnp.maximum(w, floor) ** (-1.0 / p)
  return (v * w[None, :]) @ v.T


class ScaleByShampooState(NamedTuple):
  """State of :func:`scale_by_shampoo`."""
  count: jax.Array  # shape=(), dtype=jnp.int32.
  stats: Any  # per parameter, a tuple over axes: H_i = eps I + sum of G_(i) G_(i)^T, or None
  roots: Any  # per parameter, a tuple over axes: H_i^(-1/2k) as last computed, or None
  diag: Any  # per parameter without factors: eps + sum of g^2 (diagonal AdaGrad), else None


def scale_by_shampoo(
    eps: float | jax.Array = 1e-4,
    *,
    precondition_frequency: int = 1,
    max_precond_dim: int = 10000,
    precondition_1d: bool = False,
    precond_dtype: Any = None,
) -> optax.GradientTransformation:
  r"""Shampoo's direction: the gradient times an inverse root of its statistics along each axis.

  Matrix case (the paper's Algorithm 1), :math:`L_0 = \epsilon I_m`, :math:`R_0 = \epsilon I_n`:

  .. math::
    L_t = L_{t-1} + G_t G_t^\top, \quad R_t = R_{t-1} + G_t^\top G_t, \quad
    d_t = L_t^{-1/4}\, G_t\, R_t^{-1/4}.

  An order-:math:`k` tensor (Algorithm 2) keeps :math:`H^i_t = H^i_{t-1} + G_{(i)}G_{(i)}^\top`
  for every axis :math:`i` (the contraction over the other axes) and multiplies axis :math:`i` by
  :math:`(H^i_t)^{-1/2k}`. Layout-free: a Flax ``(in, out)`` kernel has :math:`L` over its inputs
  and :math:`R` over its outputs, the transpose of PyTorch's, and the same update.

  Choices the paper leaves open (documented here, not from the paper):

  - vectors and scalars (and any parameter none of whose axes is at most ``max_precond_dim``)
    get diagonal AdaGrad, :math:`d = g/\sqrt{\epsilon + \sum_s g_s^2}`, the diagonal of the
    order-1 rule; ``precondition_1d=True`` gives vectors the paper's order-1 rule itself,
    full-matrix AdaGrad :math:`(\epsilon I + \sum_s g_s g_s^\top)^{-1/2} g`;
  - an axis longer than ``max_precond_dim`` gets no factor (identity); the exponent stays
    :math:`-1/2k` with :math:`k` the tensor's order;
  - the inverse roots are recomputed (eigendecomposition in ``precond_dtype``, eigenvalues
    clipped below at :math:`\epsilon`, their exact lower bound) every ``precondition_frequency``
    steps, starting with the first, and reused in between; the statistics are updated every step.
    ``precondition_frequency=1`` is the paper's algorithm and the default of the authors' code
    (google-research ``scalable_shampoo``, PyTorch and JAX: ``preconditioning_compute_steps=1``)
    and of Meta's Distributed Shampoo (``precondition_frequency=1``); it is kept as the default.
    The eigendecompositions run inside ``lax.cond``, so a larger value saves them on the other
    steps: on the quickstart GPT they are nearly all of the update's time (LAPACK ``syevd`` of
    the 1024 x 1024 factors), see ``benchmarks/optimizers.py``. SOAP refreshes every 10 steps.

  Args:
    eps: :math:`\epsilon`, the initial diagonal of every statistic; not scale-free: keep it well
      below the squared gradient scale.
    precondition_frequency: recompute the inverse roots every this many steps.
    max_precond_dim: axes longer than this get no factor.
    precondition_1d: full-matrix statistics for vectors too.
    precond_dtype: dtype of the statistics, roots and arithmetic (``None``: the parameter's, at
      least float32).

  Returns:
    An ``optax.GradientTransformation``.
  """

  def cdtype(x):
    return jnp.dtype(precond_dtype) if precond_dtype is not None else jnp.promote_types(
        x.dtype, jnp.float32)

  def axes(x):
    return _precond_axes(x.shape, max_precond_dim, precondition_1d)

  keep_roots = not (isinstance(precondition_frequency, int) and precondition_frequency == 1)

  def init_fn(params):
    def stats(p):
      kept = axes(p)
      return tuple(eps * jnp.eye(n, dtype=cdtype(p)) if i in kept else None
                   for i, n in enumerate(p.shape))

    def roots(p):  # kept between steps only when they are not recomputed at every step
      kept = axes(p) if keep_roots else ()
      return tuple(jnp.eye(n, dtype=cdtype(p)) if i in kept else None
                   for i, n in enumerate(p.shape))

    def diag(p):
      return None if axes(p) else jnp.full(p.shape, eps, cdtype(p))

    return ScaleByShampooState(
        count=jnp.zeros([], jnp.int32),
        stats=jax.tree.map(stats, params),
        roots=jax.tree.map(roots, params),
        diag=jax.tree.map(diag, params))

  def update_fn(updates, state, params=None):
    del params
    recompute = state.count % precondition_frequency == 0

    def leaf(g, stats, roots, diag):
      dt = cdtype(g)
      gc = g.astype(dt)
      if diag is not None:
        diag = diag + jnp.square(gc)
        return (gc / jnp.sqrt(diag)).astype(g.dtype), stats, roots, diag
      stats = tuple(None if h is None else h + _gram(gc, i) for i, h in enumerate(stats))
      fresh = lambda s, r: tuple(None if h is None else _inverse_root(h, 2 * g.ndim, eps)
                                 for h in s)  # noqa: E731
      if not keep_roots:  # every step: nothing to keep
        return (_rotate(gc, fresh(stats, roots), back=True).astype(g.dtype), stats, roots,
                diag)
      roots = jax.lax.cond(recompute, fresh, lambda s, r: r, stats, roots)
      return _rotate(gc, roots, back=True).astype(g.dtype), stats, roots, diag

    g_leaves, treedef = jax.tree.flatten(updates)
    rest = [treedef.flatten_up_to(x) for x in (state.stats, state.roots, state.diag)]
    new = [leaf(*args) for args in zip(g_leaves, *rest, strict=True)]
    direction, stats, roots, diag = (treedef.unflatten([n[k] for n in new]) for k in range(4))
    return direction, ScaleByShampooState(count=optax.safe_increment(state.count), stats=stats,
                                          roots=roots, diag=diag)

  return optax.GradientTransformation(init_fn, update_fn)


@register("shampoo")
def shampoo(
    learning_rate: optax.ScalarOrSchedule,
    eps: float | jax.Array = 1e-4,
    *,
    precondition_frequency: int = 1,
    max_precond_dim: int = 10000,
    precondition_1d: bool = False,
    precond_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Shampoo: :math:`W_{t+1} = W_t - \eta_t L_t^{-1/4} G_t R_t^{-1/4}`.

  With :math:`L_t = \epsilon I + \sum_{s \le t} G_s G_s^\top`,
  :math:`R_t = \epsilon I + \sum_{s \le t} G_s^\top G_s`; tensors, vectors, large axes and the
  recompute schedule as in :func:`scale_by_shampoo`. No momentum, grafting or weight decay (chain
  ``optax.trace`` or ``optax.add_decayed_weights`` for those).

  Args:
    learning_rate: :math:`\eta_t`, a float or a schedule.
    eps: :math:`\epsilon`, the initial diagonal of the statistics.
    precondition_frequency: recompute the inverse roots every this many steps (1: the paper's).
    max_precond_dim: axes longer than this get no factor.
    precondition_1d: full-matrix AdaGrad for vectors instead of diagonal AdaGrad.
    precond_dtype: dtype of the statistics and roots (``None``: the parameter's, at least
      float32).

  Returns:
    An ``optax.GradientTransformationExtraArgs``.

  Example:
    >>> import jax.numpy as jnp
    >>> params = {"w": jnp.eye(4), "b": jnp.zeros(4)}
    >>> tx = shampoo(0.1)
    >>> updates, state = tx.update(params, tx.init(params))

  References:
    Gupta, Koren & Singer, `Shampoo: Preconditioned Stochastic Tensor Optimization
    <https://arxiv.org/abs/1802.09568>`_, ICML 2018.
  """
  require_nonnegative("learning_rate", learning_rate)
  require_positive("eps", eps, "the statistics start at eps * I")
  check_precond_args(precondition_frequency, max_precond_dim)
  return optax.chain(
      scale_by_shampoo(eps, precondition_frequency=precondition_frequency,
                       max_precond_dim=max_precond_dim, precondition_1d=precondition_1d,
                       precond_dtype=precond_dtype),
      optax.scale_by_learning_rate(learning_rate))
