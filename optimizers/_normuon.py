"""NorMuon (Li et al. 2025): Muon's orthogonalised momentum with a second moment per neuron."""

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optimizers._checks import decayed_weights, require_beta, require_nonnegative, upcast
from optimizers._moments import momentum_init
from optimizers._newton_schulz import orthogonalize
from optimizers._partition import matrices_and_rest, require_matrices
from optimizers._registry import register

__all__ = ["normuon", "scale_by_normuon"]


class ScaleByNormuonState(NamedTuple):
  """State of ``scale_by_normuon``."""
  count: jax.Array  # int32 scalar: number of updates so far.
  mu: optax.Updates  # momentum M_t, like the parameters.
  nu: optax.Updates  # per-neuron second moment v_t: shape (1, d_out) for a (d_in, d_out) kernel.


def scale_by_normuon(
    b1: jax.typing.ArrayLike = 0.95,
    b2: jax.typing.ArrayLike = 0.95,
    eps: jax.typing.ArrayLike = 1e-8,
    *,
    ns_steps: int = 5,
    rms_scale: float = 0.2,
    nesterov: bool = False,
    mu_dtype: jax.typing.DTypeLike | None = None,
    ns_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
  r"""NorMuon's direction for matrices ``(d_in, d_out)``: every leaf must have two axes.

  .. math::
    M_t &= \beta_1 M_{t-1} + (1-\beta_1) G_t, \qquad O_t = \mathrm{NS}_5(M_t), \\
    v_t &= \beta_2 v_{t-1} + (1-\beta_2)\, \mathrm{mean}_\text{in}(O_t \odot O_t), \qquad
    \hat O_t = O_t \oslash (\sqrt{V_t} + \epsilon), \\
    u_t &= 0.2 \sqrt{d_\text{in} d_\text{out}}\; \hat O_t / \|\hat O_t\|_F,

  where :math:`\mathrm{NS}_5` is Muon's Newton–Schulz quintic (:func:`newton_schulz`),
  :math:`v_t` holds one number per neuron (output unit: a column of a Flax kernel, a row of
  PyTorch's ``(out, in)`` weight), :math:`V_t` repeats it over the inputs, and the last line
  gives the update an RMS of exactly 0.2 (Muon's scaling to AdamW's update size).

  Args:
    b1: :math:`\beta_1`, decay of the momentum.
    b2: :math:`\beta_2`, decay of the per-neuron second moment.
    eps: :math:`\epsilon` of the normalisation.
    ns_steps: Newton–Schulz iterations.
    rms_scale: RMS of the update (0.2 in the paper).
    nesterov: orthogonalise :math:`\beta_1 M_t + (1-\beta_1) G_t` (the reference code's
      default) instead of :math:`M_t` (the paper's Algorithm 1).
    mu_dtype: dtype of the momentum; ``None`` keeps that of the parameters.
    ns_dtype: dtype of the Newton–Schulz iteration; ``None``: at least float32. ``jnp.bfloat16``
      is the reference code's choice (a GPU option: XLA on CPU gains nothing from it).

  Same-shaped matrices (a tall one counted as its transpose) are orthogonalised together,
  stacked on accelerators (``optimizers._newton_schulz``); the result equals orthogonalising
  each on its own.

  Returns:
    An ``optax.GradientTransformation``.
  """
  require_beta("b1", b1)
  require_beta("b2", b2)
  require_nonnegative("eps", eps)

  def init_fn(params):
    require_matrices(params, "normuon")
    return ScaleByNormuonState(
        **momentum_init(params, mu_dtype),
        nu=jax.tree.map(lambda p: jnp.zeros((1, p.shape[1]), upcast(p).dtype), params))

  def update_fn(updates, state, params=None):
    del params
    mu = optax.tree.update_moment(updates, state.mu, b1, 1)

    g_leaves, treedef = jax.tree.flatten(updates)
    m_leaves = [upcast(m) for m in treedef.flatten_up_to(mu)]
    directions = ([b1 * m + (1 - b1) * upcast(g) for g, m in zip(g_leaves, m_leaves, strict=True)]
                  if nesterov else m_leaves)
    orthos = orthogonalize(directions, steps=ns_steps, dtype=ns_dtype)

    def leaf(g, ortho, v):
      v = b2 * v + (1 - b2) * jnp.mean(jnp.square(ortho), axis=0, keepdims=True)
      normed = ortho / (jnp.sqrt(v) + eps)
      size = rms_scale * math.sqrt(g.size)
      norm = jnp.sqrt(jnp.sum(jnp.square(normed)))
      return (normed * (size / jnp.maximum(norm, jnp.finfo(norm.dtype).tiny))).astype(g.dtype), v

    out = [leaf(g, o, v) for g, o, v in zip(g_leaves, orthos, treedef.flatten_up_to(state.nu),
                                            strict=True)]
    new_updates = treedef.unflatten([u for u, _ in out])
    nu = treedef.unflatten([v for _, v in out])
    return new_updates, ScaleByNormuonState(
        count=optax.safe_increment(state.count), mu=optax.tree.cast_like(mu, state.mu), nu=nu)

  return optax.GradientTransformation(init_fn, update_fn)


@register("normuon")
def normuon(
    learning_rate: optax.ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.95,
    b2: jax.typing.ArrayLike = 0.95,
    eps: jax.typing.ArrayLike = 1e-8,
    weight_decay: jax.typing.ArrayLike = 0.0,
    *,
    mask: None | Any | Callable[[optax.Params], Any] = None,
    ns_steps: int = 5,
    nesterov: bool = False,
    adam_b1: jax.typing.ArrayLike = 0.9,
    adam_b2: jax.typing.ArrayLike = 0.999,
    is_matrix: None | Any | Callable[[optax.Params], Any] = None,
    mu_dtype: jax.typing.DTypeLike | None = None,
    ns_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""NorMuon on matrices, Adam on the other leaves, decoupled weight decay on both.

  .. math::
    W_{t+1} = W_t - \eta\lambda W_t - \eta\, 0.2\sqrt{mn}\; \hat O_t / \|\hat O_t\|_F,

  with :math:`\hat O_t` the neuron-normalised orthogonal momentum of ``scale_by_normuon``.
  Differences from the reference code (zichongli5/NorMuon): it uses Nesterov momentum
  (``nesterov=True`` here), rescales :math:`\hat O_t` back to the Frobenius norm of
  :math:`O_t` times Muon's :math:`\sqrt{\max(1, d_\text{out}/d_\text{in})}` instead of the
  paper's RMS 0.2 (so its learning rates are Muon's, about 0.02), and runs Newton–Schulz in
  bfloat16; here it runs in float32 unless ``ns_dtype=jnp.bfloat16``.

  Args:
    learning_rate: :math:`\eta`, a scalar or a schedule; with the RMS-0.2 update, AdamW's
      learning rates carry over.
    b1: momentum decay.
    b2: decay of the per-neuron second moment.
    eps: :math:`\epsilon` of the normalisation.
    weight_decay: :math:`\lambda`, decoupled (scaled by the learning rate), on every leaf
      that ``mask`` marks.
    mask: where weight decay applies, a pytree of bools or a function of the params.
    ns_steps: Newton–Schulz iterations.
    nesterov: Nesterov momentum, as the reference code.
    adam_b1: Adam's :math:`\beta_1` on the leaves that are not matrices.
    adam_b2: Adam's :math:`\beta_2` on those leaves.
    is_matrix: which leaves get NorMuon (pytree of bools or a function of the params);
      ``None``: every leaf with two axes.
    mu_dtype: dtype of the momenta; ``None`` keeps that of the parameters.
    ns_dtype: dtype of the Newton–Schulz iteration (``None``: at least float32; ``jnp.bfloat16``
      as the reference code, a GPU option).

  Returns:
    An ``optax.GradientTransformationExtraArgs``.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> from optimizers._normuon import normuon
    >>> params = {"kernel": jnp.ones((4, 3)), "bias": jnp.zeros(3)}
    >>> opt = normuon(1e-3)
    >>> state = opt.init(params)
    >>> grads = jax.tree.map(lambda p: jnp.cos(jnp.arange(p.size)).reshape(p.shape), params)
    >>> updates, state = opt.update(grads, state, params)
    >>> params = optax.apply_updates(params, updates)

  References:
    Li, Liu, Liang, Chen & Zhao, *NorMuon: Making Muon more efficient and scalable*, 2025,
    https://arxiv.org/abs/2510.05491 (Algorithm 1)
  """
  require_nonnegative("learning_rate", learning_rate)
  require_nonnegative("weight_decay", weight_decay)
  return optax.chain(
      matrices_and_rest(
          scale_by_normuon(b1, b2, eps, ns_steps=ns_steps, nesterov=nesterov, mu_dtype=mu_dtype,
                           ns_dtype=ns_dtype),
          optax.scale_by_adam(adam_b1, adam_b2, mu_dtype=mu_dtype), is_matrix),
      decayed_weights(weight_decay, mask),
      optax.scale_by_learning_rate(learning_rate))
