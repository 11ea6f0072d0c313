"""SWAN (Ma et al. 2024): stateless SGD on matrices, normalised and whitened gradient."""

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from optimizers._checks import decayed_weights, require_nonnegative, upcast
from optimizers._newton_schulz import whiten, whitening
from optimizers._partition import matrices_and_rest, require_matrices
from optimizers._registry import register

__all__ = ["grad_norm", "grad_whitening", "scale_by_swan", "swan"]


def grad_norm(g: jax.Array, eps: float = 1e-8) -> jax.Array:
  r"""SWAN's GradNorm of a ``(d_in, d_out)`` kernel: each neuron's gradient standardised.

  :math:`\tilde G_{:,j} = (G_{:,j} - \mu_j) / \sqrt{\sigma_j^2 + \epsilon}` with :math:`\mu_j,
  \sigma_j^2` the mean and (population) variance over the inputs of output unit :math:`j`: the
  rows of PyTorch's ``(out, in)`` weight, the columns of a Flax kernel.
  """
  x = upcast(g)
  mean = jnp.mean(x, axis=0, keepdims=True)
  var = jnp.mean(jnp.square(x - mean), axis=0, keepdims=True)
  return ((x - mean) / jnp.sqrt(var + eps)).astype(g.dtype)


def grad_whitening(g: jax.Array, steps: int = 10) -> jax.Array:
  r"""SWAN's GradWhitening :math:`(GG^\top)^{-1/2}G` by the coupled Newton–Schulz iteration.

  On the wide orientation (:math:`G` of shape :math:`m \times n`, :math:`m \le n`, transposed
  otherwise), :math:`X = G/\|G\|_F`, :math:`Y_0 = XX^\top`, :math:`Z_0 = I`, then ``steps``
  times :math:`T = 3I - Z_kY_k`, :math:`Y_{k+1} = \tfrac12 Y_kT`,
  :math:`Z_{k+1} = \tfrac12 TZ_k`; :math:`Z_k \to (XX^\top)^{-1/2}` and the result is
  :math:`Z_kX`, the polar factor :math:`UV^\top` (each singular value :math:`\sigma` of
  :math:`X` moves as :math:`\sigma \to \sigma(3-\sigma^2)/2`, so small ones need more steps).
  Computed in at least float32. For a nearly square :math:`G` (``m > n / 1.5``) the same
  polynomial is evaluated as :math:`X_{k+1} = \tfrac12(3I - X_kX_k^\top)X_k` (two products a
  step instead of three; ``optimizers._newton_schulz.whitening``).
  """
  if g.ndim != 2:
    raise ValueError(f"grad_whitening needs a matrix, got shape {g.shape}")
  x = upcast(g)
  transposed = x.shape[0] > x.shape[1]
  out = whitening(x.T if transposed else x, steps)
  return (out.T if transposed else out).astype(g.dtype)


def scale_by_swan(*, ns_steps: int = 10, eps: float = 1e-8) -> optax.GradientTransformation:
  r"""SWAN's direction for matrices: GradNorm, then GradWhitening, at RMS 1. No state.

  .. math::
    \tilde G_t = \mathrm{GradNorm}(G_t), \qquad
    \Delta_t = (\tilde G_t\tilde G_t^\top)^{-1/2}\tilde G_t, \qquad
    u_t = \sqrt{mn}\, \Delta_t / \|\Delta_t\|_F,

  (``grad_norm``, ``grad_whitening``). The last step sets the update's RMS to 1: the Frobenius
  norm of GradNorm's output, :math:`\sqrt{mn}`, as in the paper. Same-shaped matrices are
  whitened together, stacked on accelerators (``optimizers._newton_schulz``); the result equals
  whitening each on its own.

  Args:
    ns_steps: iterations of the whitening.
    eps: added to each neuron's variance in GradNorm.

  Returns:
    An ``optax.GradientTransformation``; every leaf must be a matrix.
  """
  require_nonnegative("eps", eps)

  def init_fn(params):
    require_matrices(params, "swan")
    return optax.EmptyState()

  def update_fn(updates, state, params=None):
    del params

    g_leaves, treedef = jax.tree.flatten(updates)
    whites = whiten([grad_norm(upcast(g), eps) for g in g_leaves], steps=ns_steps)

    def leaf(g, white):
      white = upcast(white)
      norm = jnp.maximum(jnp.linalg.norm(white), jnp.finfo(white.dtype).tiny)
      return (white * (math.sqrt(g.size) / norm)).astype(g.dtype)

    return treedef.unflatten([leaf(g, w) for g, w in zip(g_leaves, whites, strict=True)]), state

  return optax.GradientTransformation(init_fn, update_fn)


@register("swan")
def swan(
    learning_rate: optax.ScalarOrSchedule,
    weight_decay: jax.typing.ArrayLike = 0.0,
    *,
    mask: None | Any | Callable[[optax.Params], Any] = None,
    ns_steps: int = 10,
    eps: float = 1e-8,
    adam_b1: jax.typing.ArrayLike = 0.9,
    adam_b2: jax.typing.ArrayLike = 0.999,
    is_matrix: None | Any | Callable[[optax.Params], Any] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""SWAN on matrices (no optimizer state there), Adam on the other leaves.

  .. math::
    W_t = W_{t-1} - \eta\, \sqrt{mn}\,\Delta_t/\|\Delta_t\|_F - \eta\lambda W_{t-1},

  with :math:`\Delta_t` the whitened, normalised gradient of ``scale_by_swan``. The paper keeps
  Adam for the leaves that are not hidden matrices (embeddings, head, norms); route those with
  ``is_matrix`` or ``optimizers.build``'s ``by_role``.

  Args:
    learning_rate: :math:`\eta`, a scalar or a schedule.
    weight_decay: :math:`\lambda`, decoupled, scaled by the learning rate.
    mask: where weight decay applies, a pytree of bools or a function of the params.
    ns_steps: Newton–Schulz iterations of the whitening.
    eps: GradNorm's variance floor.
    adam_b1: Adam's :math:`\beta_1` on the other leaves.
    adam_b2: Adam's :math:`\beta_2` on the other leaves.
    is_matrix: which leaves get SWAN (pytree of bools or a function of the params); ``None``:
      every leaf with two axes.

  Returns:
    An ``optax.GradientTransformationExtraArgs``.

  References:
    Ma, Gong, Wu, Luo, Gong, Zhang, Shi & Ding, *SWAN: SGD with Normalization and Whitening
    Enables Stateless LLM Training*, 2024, https://arxiv.org/abs/2412.13148 (GradNorm and
    GradWhitening as defined again in the authors' arXiv 2502.07752, Appendix B)
  """
  require_nonnegative("learning_rate", learning_rate)
  require_nonnegative("weight_decay", weight_decay)
  return optax.chain(
      matrices_and_rest(scale_by_swan(ns_steps=ns_steps, eps=eps),
                        optax.scale_by_adam(adam_b1, adam_b2), is_matrix),
      decayed_weights(weight_decay, mask),
      optax.scale_by_learning_rate(learning_rate))
