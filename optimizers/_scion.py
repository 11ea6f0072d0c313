"""Scion and uScion: stochastic conditional gradient with norm-constrained LMOs.

Each parameter is steered by the linear minimization oracle (LMO) of a norm chosen by its role
in the model (``embedding``, ``hidden``, ``head``, ``norm``, ``bias``, ``conv``). The LMOs are
public functions of a single array, written for Flax layouts: a dense kernel is ``(in, out)``
(PyTorch stores ``(out, in)``), a convolution kernel ``(*window, in, out)``, an embedding table
``(vocab, width)`` (a map from one-hot inputs, so ``(in, out)`` as well).

Reference: Pethick et al., `Training Deep Learning Models with Norm-Constrained LMOs
<https://arxiv.org/abs/2502.07529>`_, 2025; reference code LIONS-EPFL/scion (``scion.py``).
"""

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optimizers._checks import require_nonnegative
from optimizers._moments import momentum_init
from optimizers._newton_schulz import orthogonalize
from optimizers._registry import register
from plain_numbers import is_number

__all__ = ["DEFAULT_LMOS", "DEFAULT_RADII", "LMOS", "bias_rms", "column_norm", "newton_schulz",
           "row_norm", "scale_by_scion", "scion", "sign", "spectral", "spectral_conv", "uscion"]

Lmo = Callable[[jax.Array], jax.Array]

# Radii (the reference's per-group ``scale``). hidden 50 and head 3000 (= 50 * 60) are the
# reference nanoGPT run's; that run ties the embedding to the head and puts nothing else in
# another group. Every other role takes the hidden radius, as the reference's 'Auto' group
# does for biases, norms, convolutions and the patch/position embeddings of its DeiT run.
DEFAULT_RADII = {"embedding": 50.0, "hidden": 50.0, "head": 3000.0, "norm": 50.0, "bias": 50.0,
                 "conv": 50.0}
DEFAULT_LMOS = {"embedding": "column_norm", "hidden": "spectral", "head": "sign",
                "norm": "bias_rms", "bias": "bias_rms", "conv": "spectral_conv"}


def _compute_dtype(dtype) -> jnp.dtype:
  return jnp.promote_types(dtype, jnp.float32)


def newton_schulz(g: jax.Array, steps: int = 5, eps: float = 1e-7) -> jax.Array:
  r"""Approximate polar factor :math:`UV^\top` of a matrix by the Newton–Schulz quintic.

  :math:`X_0 = G / (\|G\|_F + \epsilon)`, then ``steps`` times
  :math:`X \leftarrow aX + (bA + cA^2)X` with :math:`A = XX^\top` (on the wide orientation) and
  :math:`(a, b, c) = (3.4445, -4.7750, 2.0315)`. These coefficients trade convergence for speed:
  each singular value :math:`x` of :math:`X_0` moves to :math:`p^5(x)`,
  :math:`p(x) = ax + bx^3 + cx^5`: into [0.68, 1.14] for every :math:`x \ge 0.01` (into
  [0.68, 1.21] for :math:`x \ge 0.003`), not onto 1. Computed in at least float32; returned in
  ``g.dtype``. Wide matrices well away from square iterate on their Gram side
  (``optimizers._newton_schulz``: the same polynomial, fewer flops).
  """
  if g.ndim != 2:
    raise ValueError(f"newton_schulz needs a matrix, got shape {g.shape}")
  return orthogonalize([g], steps=steps, eps=eps, batch=False)[0]


def _spectral_scale(shape, *, conv: bool) -> float:
  """The factor of a spectral LMO: sqrt(d_out/d_in), divided by the window size for a conv."""
  d_in, d_out = shape[-2:]
  return math.sqrt(d_out / d_in) / (math.prod(shape[:-2]) if conv else 1)


def _check_spectral(g: jax.Array, *, conv: bool) -> None:
  if conv and g.ndim < 2:
    raise ValueError(f"spectral_conv needs (*window, in, out), got shape {g.shape}")
  if not conv and g.ndim != 2:
    raise ValueError(f"spectral needs a (in, out) kernel, got shape {g.shape}; use spectral_conv")


def spectral(g: jax.Array, *, steps: int = 5) -> jax.Array:
  r"""LMO of the RMS→RMS operator norm: :math:`\sqrt{d_\text{out}/d_\text{in}}\,UV^\top`.

  For a kernel of shape ``(d_in, d_out)``; :math:`UV^\top` by :func:`newton_schulz`. The dual norm
  is :math:`\sqrt{d_\text{out}/d_\text{in}}\,\|G\|_*` (nuclear norm), attained up to the
  Newton–Schulz band. Reference: ``Spectral`` (``normalized=True``).
  """
  _check_spectral(g, conv=False)
  return newton_schulz(g, steps) * jnp.asarray(_spectral_scale(g.shape, conv=False), g.dtype)


def spectral_conv(g: jax.Array, *, steps: int = 5) -> jax.Array:
  r"""Spectral LMO of a convolution kernel ``(*window, in, out)``, divided by the window size.

  The kernel is reshaped to ``(prod(window) * in, out)``, orthogonalised, reshaped back and scaled
  by :math:`\sqrt{d_\text{out}/d_\text{in}} / \prod(\text{window})`. Reference: ``SpectralConv``
  on ``(out, in, k, k)`` (``reshape(out, -1)``, scale ``sqrt(out/in) / k**2``); the order in which
  the flattened axes are laid out does not change the polar factor.
  """
  _check_spectral(g, conv=True)
  ortho = newton_schulz(g.reshape(-1, g.shape[-1]), steps).reshape(g.shape)
  return ortho * jnp.asarray(_spectral_scale(g.shape, conv=True), g.dtype)


def _conv_or_not(lmo: Lmo) -> bool | None:
  """For the LMOs run together: whether it is ``spectral_conv``; ``None`` for any other."""
  return True if lmo is spectral_conv else False if lmo is spectral else None


def _apply_lmos(lmos: list[Lmo], leaves: list[jax.Array], *, ns_dtype: Any = None,
               batch: bool | None = None) -> list[jax.Array]:
  """``lmo(leaf)`` for each pair; the default ``spectral`` and ``spectral_conv`` LMOs together.

  Their Newton–Schulz iterations go through ``_newton_schulz.orthogonalize`` as one list (same
  shapes stacked on accelerators, ``batch``), in ``ns_dtype`` (``None``: at least float32);
  with the defaults this equals calling each LMO on its own, bit for bit on CPU. Other LMOs
  (including ``functools.partial`` of the spectral ones) are called one by one.
  """
  conv = [_conv_or_not(lmo) for lmo in lmos]
  together = [i for i, c in enumerate(conv) if c is not None]
  for i in together:
    _check_spectral(leaves[i], conv=conv[i])
  ortho = orthogonalize([leaves[i].reshape(-1, leaves[i].shape[-1]) for i in together],
                        dtype=ns_dtype, batch=batch)
  out = [lmo(x) if c is None else None for lmo, x, c in zip(lmos, leaves, conv, strict=True)]
  for i, o in zip(together, ortho, strict=True):
    x = leaves[i]
    out[i] = o.reshape(x.shape) * jnp.asarray(_spectral_scale(x.shape, conv=conv[i]), x.dtype)
  return out


def sign(g: jax.Array, *, normalized: bool = True) -> jax.Array:
  r"""LMO of the max-entry norm times :math:`d_\text{in}`: :math:`\operatorname{sign}(G)/d_{in}`.

  For a kernel ``(d_in, d_out)`` (the output head). The dual norm is
  :math:`\|G\|_1 / d_\text{in}`. ``normalized=False`` drops the :math:`1/d_\text{in}`.
  Reference: ``Sign``.
  """
  out = jnp.sign(g)
  if normalized:
    out = out / jnp.asarray(math.prod(g.shape[:-1]), g.dtype)
  return out


def column_norm(g: jax.Array, *, normalized: bool = False, eps: float = 1e-8) -> jax.Array:
  r"""LMO of the max-over-inputs RMS norm: each input's row of a ``(in, out)`` kernel to unit RMS.

  :math:`G_{i,:} / \operatorname{rms}(G_{i,:})`: for an embedding table ``(vocab, width)``, each
  token's vector gets unit RMS. Dual norm :math:`\sqrt{d_\text{out}}\sum_i\|G_{i,:}\|_2`.
  ``normalized=True`` also divides by :math:`d_\text{in}`. Reference: ``ColNorm`` — PyTorch's
  columns are the inputs of an ``(out, in)`` weight, so in Flax's ``(in, out)`` they are rows;
  for an ``nn.Embedding`` the reference passes ``transpose=True``, which is the same operation.
  """
  x = g.astype(_compute_dtype(g.dtype))
  d_out = x.shape[-1]
  rms = jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True) / d_out)
  if normalized:
    rms = rms * math.prod(x.shape[:-1])
  return (x / (rms + eps)).astype(g.dtype)


def row_norm(g: jax.Array, *, normalized: bool = True, eps: float = 1e-8) -> jax.Array:
  r"""LMO of the RMS→∞ operator norm: each output's column of a ``(d_in, d_out)`` kernel rescaled.

  :math:`G_{:,j} / (\sqrt{d_\text{in}}\,\|G_{:,j}\|_2)`. Dual norm
  :math:`\sum_j \|G_{:,j}\|_2 / \sqrt{d_\text{in}}`. ``normalized=False`` drops the
  :math:`\sqrt{d_\text{in}}`. Reference: ``RowNorm`` (PyTorch's rows are outputs, Flax's columns).
  """
  x = g.astype(_compute_dtype(g.dtype))
  norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=tuple(range(x.ndim - 1)), keepdims=True))
  if normalized:
    norm = norm * math.sqrt(math.prod(x.shape[:-1]))
  return (x / (norm + eps)).astype(g.dtype)


def bias_rms(g: jax.Array, *, eps: float = 1e-8) -> jax.Array:
  r"""LMO of the RMS norm of a vector (bias, norm scale): :math:`g / \operatorname{rms}(g)`.

  Dual norm :math:`\sqrt{n}\,\|g\|_2`. The RMS is over the whole array; for a vector this is the
  reference's ``BiasRMS`` (which reduces over axis 0 only).
  """
  x = g.astype(_compute_dtype(g.dtype))
  rms = jnp.sqrt(jnp.mean(jnp.square(x)))
  return (x / (rms + eps)).astype(g.dtype)


LMOS: dict[str, Lmo] = {
    "spectral": spectral,
    "spectral_conv": spectral_conv,
    "sign": sign,
    "column_norm": column_norm,
    "row_norm": row_norm,
    "bias_rms": bias_rms,
}


def _check_momentum(momentum):
  if is_number(momentum) and not 0.0 < momentum <= 1.0:
    raise ValueError(f"momentum={momentum} (the weight on the new gradient, 1 - beta) must lie "
                     "in (0, 1]")


def _resolve_tables(radii: Mapping[str, float] | None, lmos: Mapping[str, Any] | None):
  radii = {**DEFAULT_RADII, **(radii or {})}
  lmos = {**DEFAULT_LMOS, **(lmos or {})}
  for role, radius in radii.items():
    require_nonnegative(f"radii[{role!r}]", radius)
  resolved = {}
  for role, lmo in lmos.items():
    if isinstance(lmo, str):
      if lmo not in LMOS:
        raise ValueError(f"lmos[{role!r}]={lmo!r} is not an LMO: valid names are "
                         f"{', '.join(sorted(LMOS))} (or pass a function)")
      lmo = LMOS[lmo]
    elif not callable(lmo):
      raise ValueError(f"lmos[{role!r}] must be an LMO name or a function, got {lmo!r}")
    resolved[role] = lmo
  return radii, resolved


def _labels(param_labels, tree):
  labels = param_labels(tree) if callable(param_labels) else param_labels
  return jax.tree.structure(tree).flatten_up_to(labels)


class ScaleByScionState(NamedTuple):
  """State of :func:`scale_by_scion`."""
  count: jax.Array  # shape=(), dtype=jnp.int32.
  mu: optax.Updates  # averaged gradient, starts at zero, no bias correction


def scale_by_scion(
    momentum: float | jax.Array = 0.1,
    *,
    param_labels: Any,
    radii: Mapping[str, float] | None = None,
    lmos: Mapping[str, str | Lmo] | None = None,
    mu_dtype: Any = None,
    ns_dtype: Any = None,
) -> optax.GradientTransformation:
  r"""Scion's direction: the radius times the LMO of the averaged gradient, per parameter role.

  .. math::
    m_t = (1 - \alpha)\, m_{t-1} + \alpha\, g_t, \quad m_0 = 0, \qquad
    d_t = \rho_r \operatorname{lmo}_r(m_t),

  where :math:`r` is the parameter's role, :math:`\rho_r` its radius and
  :math:`\operatorname{lmo}_r` the LMO of its norm, with the sign convention that the step is
  :math:`-\gamma d_t`.

  Args:
    momentum: :math:`\alpha`, the weight on the new gradient (the reference's ``momentum``; it is
      one minus the usual momentum: 0.1 here is SGD momentum 0.9). 1 uses the gradient as is.
    param_labels: a pytree of role names with the structure of the params, or a function of the
      params (or updates: only their paths and shapes may matter) returning it.
    radii: role -> :math:`\rho_r`, merged over ``DEFAULT_RADII``.
    lmos: role -> an LMO name from ``LMOS`` or a function of one array, merged over
      ``DEFAULT_LMOS``.
    mu_dtype: dtype of the averaged gradient; ``None`` keeps the gradient's.
    ns_dtype: dtype of the Newton–Schulz iterations of the ``spectral`` and ``spectral_conv``
      LMOs; ``None``: at least float32. ``jnp.bfloat16`` is the reference's choice (on GPU; XLA
      on CPU gains nothing from it); the singular values stay in the quintic's band, widened
      from [0.68, 1.14] to about [0.66, 1.15] (``tests/test_optimizer_speed_paths.py``).

  Same-shaped spectral leaves are orthogonalised together (stacked on accelerators); this
  equals running each LMO on its own.

  Returns:
    An ``optax.GradientTransformation``.
  """
  _check_momentum(momentum)
  radii, lmo_fns = _resolve_tables(radii, lmos)
  mu_dtype = None if mu_dtype is None else jnp.dtype(mu_dtype)

  def check_labels(labels):
    for label in labels:
      if label not in radii or label not in lmo_fns:
        raise ValueError(f"parameter role {label!r} has no radius or LMO: known roles are "
                         f"{', '.join(sorted(set(radii) & set(lmo_fns)))}")

  def init_fn(params):
    check_labels(_labels(param_labels, params))
    return ScaleByScionState(**momentum_init(params, mu_dtype))

  def update_fn(updates, state, params=None):
    labels = _labels(param_labels, updates if params is None else params)
    check_labels(labels)
    mu = jax.tree.map(lambda m, g: ((1 - momentum) * m + momentum * g).astype(m.dtype),
                      state.mu, updates)
    mu_leaves, treedef = jax.tree.flatten(mu)
    update_leaves = treedef.flatten_up_to(updates)
    lmo_leaves = _apply_lmos([lmo_fns[label] for label in labels], mu_leaves, ns_dtype=ns_dtype)
    direction = [(radii[label] * d).astype(g.dtype)
                 for d, g, label in zip(lmo_leaves, update_leaves, labels, strict=True)]
    return (jax.tree.unflatten(treedef, direction),
            ScaleByScionState(count=optax.safe_increment(state.count), mu=mu))

  return optax.GradientTransformation(init_fn, update_fn)


@register("scion")
def scion(
    learning_rate: optax.ScalarOrSchedule,
    momentum: float | jax.Array = 0.1,
    *,
    param_labels: Any,
    radii: Mapping[str, float] | None = None,
    lmos: Mapping[str, str | Lmo] | None = None,
    mu_dtype: Any = None,
    ns_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Scion (constrained): stochastic conditional gradient over a product of norm balls.

  .. math::
    m_t = (1 - \alpha)\, m_{t-1} + \alpha\, g_t, \qquad
    x_{t+1} = (1 - \gamma_t)\, x_t - \gamma_t\, \rho_r \operatorname{lmo}_r(m_t),

  a convex combination of the iterate and a point of the radius-:math:`\rho_r` ball, so every
  parameter stays in its ball (when it starts there and :math:`\gamma_t \le 1`); the shrinkage
  is decoupled weight decay with coefficient 1. Built as
  ``chain(scale_by_scion, add_decayed_weights(1), scale_by_learning_rate)``.

  Mapping onto the reference ``Scion(params, lr, momentum, norm, norm_kwargs, scale,
  unconstrained=False)``: ``learning_rate`` is ``lr`` (:math:`\gamma`); ``momentum`` is
  ``momentum`` (:math:`\alpha`, one minus the usual :math:`\beta`; buffer from zero, no bias
  correction); ``radii[role]`` is the group's ``scale`` (:math:`\rho`); ``lmos[role]`` is the
  group's ``norm`` with its ``norm_kwargs`` (pass e.g. ``functools.partial(sign,
  normalized=False)``). Defaults per role (``DEFAULT_LMOS``, ``DEFAULT_RADII``):

  ============  =================  ======  ============================================
  role          LMO                radius  reference
  ============  =================  ======  ============================================
  hidden        ``spectral``       50      ``Spectral``, ``scale=50`` (nanoGPT)
  head          ``sign``           3000    ``Sign``, ``scale=50*60`` (nanoGPT)
  embedding     ``column_norm``    50      ``ColNorm(transpose=True)`` on ``nn.Embedding``
  norm, bias    ``bias_rms``       50      ``BiasRMS`` (``Auto`` for 1-D), hidden scale
  conv          ``spectral_conv``  50      ``SpectralConv`` (``Auto`` for 3-D/4-D)
  ============  =================  ======  ============================================

  The reference's nanoGPT run ties the embedding to the head (``Sign``, 3000); to do the same
  with a tied ``(vocab, width)`` table pass ``lmos={"embedding": lambda g: sign(g.T).T}`` and
  ``radii={"embedding": 3000.0}``. Its shallow untied nanoGPT uses ``ColNorm`` on the embedding
  at a third of the hidden radius: pass ``radii={"embedding": 50 / 3}`` to follow it.

  Args:
    learning_rate: :math:`\gamma_t`, a float or a schedule; ``2**-12`` in the reference nanoGPT
      run (at most 1 keeps the iterates in the balls).
    momentum: :math:`\alpha` in (0, 1]; 0.1 in the reference.
    param_labels: role of every parameter: a pytree of strings like the params, or a function
      of the params returning it (e.g. ``models.param_roles``).
    radii: role -> radius, overriding ``DEFAULT_RADII``.
    lmos: role -> LMO name or function, overriding ``DEFAULT_LMOS``.
    mu_dtype: dtype of the averaged gradient (``None``: the gradient's).
    ns_dtype: dtype of the spectral LMOs' Newton–Schulz iterations (``None``: at least float32;
      ``jnp.bfloat16`` as the reference, a GPU option), see :func:`scale_by_scion`.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` needs ``params``.

  Example:
    >>> import jax.numpy as jnp
    >>> params = {"w": jnp.ones((4, 4)), "b": jnp.zeros(4)}
    >>> tx = scion(2**-12, param_labels={"w": "hidden", "b": "bias"})
    >>> state = tx.init(params)
    >>> updates, state = tx.update(params, state, params)

  References:
    Pethick et al., `Training Deep Learning Models with Norm-Constrained LMOs
    <https://arxiv.org/abs/2502.07529>`_, 2025.
  """
  require_nonnegative("learning_rate", learning_rate)
  return optax.chain(
      scale_by_scion(momentum, param_labels=param_labels, radii=radii, lmos=lmos,
                     mu_dtype=mu_dtype, ns_dtype=ns_dtype),
      optax.add_decayed_weights(1.0),
      optax.scale_by_learning_rate(learning_rate))


@register("uscion")
def uscion(
    learning_rate: optax.ScalarOrSchedule,
    momentum: float | jax.Array = 0.1,
    *,
    param_labels: Any,
    radii: Mapping[str, float] | None = None,
    lmos: Mapping[str, str | Lmo] | None = None,
    mu_dtype: Any = None,
    ns_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""uScion (unconstrained): the LMO step without the shrinkage of :func:`scion`.

  .. math::
    m_t = (1 - \alpha)\, m_{t-1} + \alpha\, g_t, \qquad
    x_{t+1} = x_t - \gamma_t\, \rho_r \operatorname{lmo}_r(m_t).

  The reference's ``Scion(..., unconstrained=True)``; arguments and defaults as in :func:`scion`.
  With the spectral LMO on every matrix this is Muon without Nesterov and bias correction; with
  ``sign`` everywhere it is Signum.

  Args:
    learning_rate: :math:`\gamma_t`, a float or a schedule.
    momentum: :math:`\alpha` in (0, 1], the weight on the new gradient.
    param_labels: role of every parameter (pytree of strings or a function of the params).
    radii: role -> radius, overriding ``DEFAULT_RADII``.
    lmos: role -> LMO name or function, overriding ``DEFAULT_LMOS``.
    mu_dtype: dtype of the averaged gradient (``None``: the gradient's).
    ns_dtype: dtype of the spectral LMOs' Newton–Schulz iterations (``None``: at least float32).

  Returns:
    An ``optax.GradientTransformationExtraArgs``.

  Example:
    >>> import jax.numpy as jnp
    >>> params = {"w": jnp.ones((4, 4)), "b": jnp.zeros(4)}
    >>> tx = uscion(2**-12, param_labels={"w": "hidden", "b": "bias"})
    >>> updates, state = tx.update(params, tx.init(params))

  References:
    Pethick et al., `Training Deep Learning Models with Norm-Constrained LMOs
    <https://arxiv.org/abs/2502.07529>`_, 2025.
  """
  require_nonnegative("learning_rate", learning_rate)
  return optax.chain(
      scale_by_scion(momentum, param_labels=param_labels, radii=radii, lmos=lmos,
                     mu_dtype=mu_dtype, ns_dtype=ns_dtype),
      optax.scale_by_learning_rate(learning_rate))
