"""Methods optax already provides, registered under their optax names and used as they are.

Except one detail of Muon: ``muon`` is ``optax.contrib.muon`` with its Newton–Schulz iteration
run by ``optimizers._newton_schulz`` (all matrices in one call, same shapes stacked on
accelerators, the Gram side for wide ones) instead of per leaf under ``jax.vmap``, which XLA on
CPU runs 2x slower than the plain matmuls. Everything else is optax's own code.
"""

from typing import Any

import jax
import jax.numpy as jnp
import optax
from optax import contrib

from optimizers._newton_schulz import NS_COEFFS, orthogonalize
from optimizers._registry import register

__all__ = ["muon", "scale_by_muon"]

register("sgd", optax.sgd)
register("adam", optax.adam)
register("adamw", optax.adamw)
register("nadamw", optax.nadamw)
register("rmsprop", optax.rmsprop)
register("adafactor", optax.adafactor)
register("lion", optax.lion)
register("lamb", optax.lamb)
register("lars", optax.lars)
register("adabelief", optax.adabelief)
register("adan", optax.adan)
register("sign_sgd", optax.sign_sgd)
register("signum", optax.signum)
register("ademamix", contrib.ademamix)
register("simplified_ademamix", contrib.simplified_ademamix)
register("schedule_free_adamw", contrib.schedule_free_adamw)
register("schedule_free_sgd", contrib.schedule_free_sgd)
register("prodigy", contrib.prodigy)
register("sophia", contrib.sophia)
register("adopt", contrib.adopt)
register("momo", contrib.momo)
register("dog", contrib.dog)


@register("mechanize")
def _mechanize(learning_rate, weight_decay=0.01, eps=1e-8, s_init=1e-6, num_betas=6):
  """Mechanic (Cutkosky et al., 2023) tuning the scale of Adam steps of size ``learning_rate``."""
  return contrib.mechanize(optax.adam(learning_rate), weight_decay=weight_decay, eps=eps,
                           s_init=s_init, num_betas=num_betas)


def _coefficient_triple(ns_coeffs) -> tuple | None:
  """``ns_coeffs`` as one (a, b, c) used at every step, or ``None`` (a per-step schedule)."""
  if isinstance(ns_coeffs, str):
    ns_coeffs = {"standard": NS_COEFFS}.get(ns_coeffs)
  if ns_coeffs is None or len(ns_coeffs) != 3 or any(jnp.ndim(c) for c in ns_coeffs):
    return None
  return tuple(ns_coeffs)


def scale_by_muon(
    ns_coeffs: tuple[float, float, float] = NS_COEFFS,
    ns_steps: int = 5,
    beta: float = 0.95,
    eps: float = 1e-8,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    adaptive: bool = False,
    ns_dtype: Any = None,
) -> optax.GradientTransformation:
  r"""``optax.contrib.scale_by_muon`` for matrices, its Newton–Schulz on all leaves at once.

  The same momentum, Nesterov step, bias correction and quintic as optax's (state
  ``optax.contrib.MuonState``), Frobenius preconditioning, one coefficient triple for every
  step; the quintic runs through ``optimizers._newton_schulz.orthogonalize`` in the momentum's
  dtype (as optax) or ``ns_dtype``. Equal to optax's up to float rounding (tested).

  Args:
    ns_coeffs: the quintic's (a, b, c).
    ns_steps: Newton–Schulz iterations.
    beta: momentum decay.
    eps: added to the Frobenius norm before the iteration.
    mu_dtype: dtype of the momentum.
    nesterov: Nesterov momentum (optax's default).
    adaptive: scale each update by :math:`\langle \hat M, O \rangle` (optax's ``adaptive``).
    ns_dtype: dtype of the iteration (``None``: the momentum's; ``jnp.bfloat16`` as the Muon
      reference, a GPU option).

  Returns:
    An ``optax.GradientTransformation``; every leaf must be a matrix.
  """
  mu_dtype = None if mu_dtype is None else jnp.dtype(mu_dtype)

  def init_fn(params):
    return contrib.MuonState(count=jnp.zeros([], jnp.int32),
                             mu=optax.tree.zeros_like(params, dtype=mu_dtype),
                             ns_coeffs=jnp.asarray(ns_coeffs))

  def update_fn(updates, state, params=None):
    del params
    mu = optax.tree.update_moment(updates, state.mu, beta, 1)
    count_inc = optax.safe_increment(state.count)
    if nesterov:
      mu_hat = jax.tree.map(
          lambda m, g: beta * m + (1 - beta) * g,
          optax.tree.bias_correction(mu, beta, optax.safe_increment(count_inc)),
          optax.tree.bias_correction(updates, beta, count_inc))
    else:
      mu_hat = optax.tree.bias_correction(mu, beta, count_inc)
    leaves, treedef = jax.tree.flatten(mu_hat)
    coeffs = tuple(state.ns_coeffs[i] for i in range(3))
    ortho = orthogonalize(leaves, steps=ns_steps, coeffs=coeffs, eps=eps, dtype=ns_dtype,
                          promote=False)
    if adaptive:
      ortho = [jnp.sum(x.conj() * y) * y for x, y in zip(leaves, ortho, strict=True)]
    return treedef.unflatten(ortho), contrib.MuonState(
        count=count_inc, mu=optax.tree.cast(mu, mu_dtype), ns_coeffs=state.ns_coeffs)

  return optax.GradientTransformation(init_fn, update_fn)


def _scale_by_shape(consistent_rms) -> optax.GradientTransformation:
  """optax's Muon shape factor of an (in, out) matrix: sqrt(max(1, out/in)), or
  consistent_rms * sqrt(max(in, out))."""
  def scale(u):
    fan_in, fan_out = u.shape
    if consistent_rms is None:
      return jnp.sqrt(jnp.maximum(1, fan_out / fan_in)) * u
    return jnp.sqrt(jnp.maximum(fan_in, fan_out)) * consistent_rms * u

  def update_fn(updates, state, params=None):
    del params
    return jax.tree.map(scale, updates), state

  return optax.GradientTransformation(optax.init_empty_state, update_fn)


@register("muon")
def muon(
    learning_rate: optax.ScalarOrSchedule,
    ns_coeffs: Any = NS_COEFFS,
    ns_steps: int = 5,
    beta: float = 0.95,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    weight_decay_mask: Any = None,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    adaptive: bool = False,
    preconditioning: str = "frobenius",
    adam_b1: float = 0.9,
    adam_b2: float = 0.999,
    adam_eps_root: float = 0.0,
    adam_weight_decay: float = 0.0,
    adam_learning_rate: optax.ScalarOrSchedule | None = None,
    muon_weight_dimension_numbers: Any = None,
    consistent_rms: float | None = None,
    ns_dtype: Any = None,
) -> optax.GradientTransformation:
  r"""``optax.contrib.muon``: Muon on every matrix, AdamW on the other leaves.

  Arguments, defaults, state and results are optax's (see ``optax.contrib.muon``); its
  Newton–Schulz iteration runs through :func:`scale_by_muon` (all matrices at once) when
  ``preconditioning="frobenius"``, ``ns_coeffs`` is one (a, b, c) triple and
  ``muon_weight_dimension_numbers`` is ``None`` (the defaults); any other setting is passed to
  ``optax.contrib.muon`` itself. ``ns_dtype`` (not optax's) sets the iteration's dtype:
  ``None`` keeps the momentum's (float32 for float32 parameters); ``jnp.bfloat16`` as the Muon
  reference, a GPU option.

  Example:
    >>> import jax.numpy as jnp
    >>> params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
    >>> tx = muon(0.02)
    >>> updates, state = tx.update(params, tx.init(params), params)

  References:
    Jordan et al., `Muon: An optimizer for hidden layers in neural networks
    <https://kellerjordan.github.io/posts/muon/>`_, 2024.
  """
  triple = _coefficient_triple(ns_coeffs)
  if preconditioning != "frobenius" or triple is None or muon_weight_dimension_numbers is not None:
    if ns_dtype is not None:
      raise ValueError(f"ns_dtype={ns_dtype!r} needs preconditioning='frobenius', one ns_coeffs "
                       "triple and no muon_weight_dimension_numbers")
    return contrib.muon(
        learning_rate, ns_coeffs, ns_steps, beta, eps, weight_decay, weight_decay_mask,
        mu_dtype, nesterov=nesterov, adaptive=adaptive, preconditioning=preconditioning,
        adam_b1=adam_b1, adam_b2=adam_b2, adam_eps_root=adam_eps_root,
        adam_weight_decay=adam_weight_decay, adam_learning_rate=adam_learning_rate,
        muon_weight_dimension_numbers=muon_weight_dimension_numbers,
        consistent_rms=consistent_rms)
  return optax.partition(
      {"muon": optax.chain(
          scale_by_muon(triple, ns_steps, beta, eps, mu_dtype, nesterov=nesterov,
                        adaptive=adaptive, ns_dtype=ns_dtype),
          _scale_by_shape(consistent_rms),
          optax.add_decayed_weights(weight_decay, weight_decay_mask),
          optax.scale_by_learning_rate(learning_rate)),
       "adam": optax.adamw(
           learning_rate=learning_rate if adam_learning_rate is None else adam_learning_rate,
           b1=adam_b1, b2=adam_b2, eps=eps, eps_root=adam_eps_root,
           weight_decay=adam_weight_decay, mu_dtype=mu_dtype, nesterov=nesterov)},
      lambda params: jax.tree.map(lambda x: "muon" if x.ndim == 2 else "adam", params))
