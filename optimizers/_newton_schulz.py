"""Newton–Schulz iterations on many matrices at once: Muon's quintic and SWAN's whitening.

Shared by Muon, NorMuon, Scion's spectral LMOs and SWAN. Each matrix is iterated in its wide
orientation (rows <= columns; a tall one is transposed and transposed back), so a ``(1024, 256)``
kernel and a ``(256, 1024)`` one are the same problem. Matrices of the same wide shape and
compute dtype form a group; with ``batch=True`` a group is stacked and iterated as one batched
problem, with ``batch=False`` each matrix is iterated alone. ``batch=None`` (the default) stacks
on accelerators, where one large batched matmul fills the device better than several small ones,
and iterates one by one on CPU, where XLA runs the independent chains concurrently on its cores
and its batched matmul was measured 20% slower (2-core Xeon, jax 0.10.2). Both give the same
polynomial of each matrix; they differ by the rounding of the matmul blocking only.

The iterations are rewritten without changing the polynomial they evaluate:

- Gram side (:func:`quintic`): for a wide ``m x n`` matrix with ``n`` well above ``m``, the
  quintic :math:`X \\leftarrow (aI + bA + cA^2)X`, :math:`A = XX^\\top`, is a polynomial in
  :math:`A_0 = X_0X_0^\\top`: :math:`X_k = P_kX_0` with :math:`P_{k+1} = Q_kP_k`,
  :math:`A_{k+1} = Q_kA_kQ_k` (all polynomials in :math:`A_0`, so they commute). The iteration
  then runs on ``m x m`` matrices and touches the ``m x n`` one twice per segment. Left alone
  the accumulated :math:`P` grows to :math:`\\approx a^k` along small singular values and its
  rounding leaks into the large ones (measured: 20-100x the direct form's error on inputs of
  condition number 1e3-1e6); restarting after at most ``_GRAM_SEGMENT`` = 3 iterations
  (:math:`X \\leftarrow PX`, :math:`A \\leftarrow XX^\\top`) brings the error back to the direct
  form's level (1-3e-6 on entries of 0.1, float32). It is used where it needs fewer flops:
  for 5 steps, ``n > 1.5m`` (``(256, 1024)``: 1.5x fewer).
- Whitening (:func:`whiten`): the first coupled step multiplies by :math:`Z_0 = I` twice; those
  products are skipped (exact: a product with the identity rounds nothing). Where the matrix is
  nearly square the coupled iteration is replaced by the equivalent cubic iteration on
  :math:`X` itself (:math:`Z_kY_k = X_kX_k^\\top` with :math:`X_k = Z_kX_0`), which needs two
  matmuls per step instead of three.
"""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

__all__ = []

# Muon's quintic (Jordan et al.; the Scion and NorMuon references), 5 steps.
NS_COEFFS = (3.4445, -4.7750, 2.0315)
# Gram-side iterations between two restarts from X (see the module docstring).
_GRAM_SEGMENT = 3


def _mT(x: jax.Array) -> jax.Array:
  return jnp.swapaxes(x, -1, -2)


def _eye_like(x: jax.Array) -> jax.Array:
  """The identity of the rows of ``x`` (..., m, n), of ``x``'s rank (strict rank promotion)."""
  m = x.shape[-2]
  return jnp.eye(m, dtype=x.dtype).reshape((1,) * (x.ndim - 2) + (m, m))


def _segments(steps: int) -> list[int]:
  return [min(_GRAM_SEGMENT, steps - i) for i in range(0, steps, _GRAM_SEGMENT)]


def quintic_flops(m: int, n: int, steps: int, *, gram: bool) -> int:
  """Matmul flops of ``steps`` quintic steps on a wide ``m x n`` matrix, direct or Gram side."""
  if not gram:
    return steps * (4 * m * m * n + 2 * m**3)
  return sum(4 * m * m * n + (8 * s - 6) * m**3 for s in _segments(steps))


def use_gram_side(m: int, n: int, steps: int, dtype) -> bool:
  """Gram side where it needs fewer flops, in float32 or wider only: its restarts keep float32
  at the direct form's error; in bfloat16 the Gram form is not known to be stable."""
  return (jnp.finfo(dtype).bits >= 32
          and quintic_flops(m, n, steps, gram=True) < quintic_flops(m, n, steps, gram=False))


def quintic(x: jax.Array, steps: int = 5, coeffs=NS_COEFFS, eps: float = 1e-7) -> jax.Array:
  r"""The Newton–Schulz quintic on wide matrices ``(..., m, n)``, ``m <= n``, in ``x.dtype``.

  :math:`X_0 = X / (\|X\|_F + \epsilon)` per matrix, then ``steps`` times
  :math:`X \leftarrow aX + (bA + cA^2)X`, :math:`A = XX^\top`; on the Gram side where
  :func:`use_gram_side` says so.
  """
  a, b, c = (jnp.asarray(k, x.dtype) for k in coeffs)
  m, n = x.shape[-2:]
  x = x / (jnp.linalg.norm(x, axis=(-2, -1), keepdims=True) + eps)
  if not use_gram_side(m, n, steps, x.dtype):
    for _ in range(steps):
      gram = x @ _mT(x)
      x = a * x + (b * gram + c * gram @ gram) @ x
    return x
  eye = _eye_like(x)
  for segment in _segments(steps):
    gram = x @ _mT(x)
    p = None
    for k in range(segment):
      q = a * eye + b * gram + c * gram @ gram
      p = q if p is None else q @ p
      if k < segment - 1:
        gram = q @ (q @ gram)
    x = p @ x
  return x


def whitening(x: jax.Array, steps: int = 10) -> jax.Array:
  r""":math:`(XX^\top)^{-1/2}X` of wide matrices ``(..., m, n)`` by SWAN's coupled iteration.

  :math:`X \leftarrow X/\|X\|_F`, :math:`Y_0 = XX^\top`, :math:`Z_0 = I`, ``steps`` times
  :math:`T = 3I - Z_kY_k`, :math:`Y_{k+1} = \tfrac12 Y_kT`, :math:`Z_{k+1} = \tfrac12 TZ_k`;
  returns :math:`Z_kX`. For nearly square matrices the same polynomial as the cubic
  :math:`X_{k+1} = \tfrac12(3I - X_kX_k^\top)X_k`, which is cheaper there.
  """
  m, n = x.shape[-2:]
  x = x / jnp.maximum(jnp.linalg.norm(x, axis=(-2, -1), keepdims=True), jnp.finfo(x.dtype).tiny)
  eye = _eye_like(x)
  if steps == 0:
    return x
  # flops: cubic on X 4m^2n a step; coupled 4m^2n + 6m^3 (steps - 1) (27 m x m products for 10)
  if 4 * n * steps < 4 * n + 6 * m * (steps - 1):
    for _ in range(steps):
      x = 0.5 * (3.0 * eye - x @ _mT(x)) @ x
    return x
  y = x @ _mT(x)
  t = 3.0 * eye - y  # Z_0 = I: T = 3I - I Y, Z_1 = T I / 2
  y, z = 0.5 * y @ t, 0.5 * t
  for _ in range(steps - 1):
    t = 3.0 * eye - z @ y
    y, z = 0.5 * y @ t, 0.5 * t @ z
  return z @ x


def _default_batch() -> bool:
  return jax.default_backend() != "cpu"


def map_wide(fn: Callable[[jax.Array], jax.Array], matrices: Sequence[jax.Array], *,
             dtype: Any = None, promote: bool = True,
             batch: bool | None = None) -> list[jax.Array]:
  """``fn`` on each matrix in its wide orientation and compute dtype, same-shaped ones together.

  Args:
    fn: a function of wide matrices ``(..., m, n)`` that maps each one independently.
    matrices: 2-D arrays of any shapes and dtypes.
    dtype: the compute dtype; ``None``: each matrix's own (promoted to at least float32 unless
      ``promote=False``).
    promote: see ``dtype``.
    batch: stack each group of same-shaped matrices (``None``: on accelerators only).

  Returns:
    ``fn`` of each matrix, in its orientation and dtype, in the order given.
  """
  batch = _default_batch() if batch is None else batch
  groups: dict[tuple, list[int]] = {}
  wide = []
  for i, g in enumerate(matrices):
    if g.ndim != 2:
      raise ValueError(f"Newton-Schulz needs matrices, got shape {g.shape}")
    if dtype is not None:
      cdtype = jnp.dtype(dtype)
    else:
      cdtype = jnp.promote_types(g.dtype, jnp.float32) if promote else g.dtype
    x = g.astype(cdtype)
    x = x.T if x.shape[0] > x.shape[1] else x
    wide.append(x)
    groups.setdefault((x.shape, cdtype), []).append(i)
  out: list[Any] = [None] * len(matrices)
  for members in groups.values():
    if batch and len(members) > 1:
      results = list(fn(jnp.stack([wide[i] for i in members])))
    else:
      results = [fn(wide[i]) for i in members]
    for i, r in zip(members, results, strict=True):
      g = matrices[i]
      out[i] = (r.T if g.shape[0] > g.shape[1] else r).astype(g.dtype)
  return out


def orthogonalize(matrices: Sequence[jax.Array], *, steps: int = 5, coeffs=NS_COEFFS,
                  eps: float = 1e-7, dtype: Any = None, promote: bool = True,
                  batch: bool | None = None) -> list[jax.Array]:
  """The Newton–Schulz quintic (:func:`quintic`) of every matrix, grouped as in :func:`map_wide`.

  ``dtype`` is the iteration's dtype (``None``: each matrix's, at least float32 unless
  ``promote=False``; ``jnp.bfloat16`` runs it as the Muon and Scion references do on GPU).
  Returns arrays of the inputs' shapes and dtypes.
  """
  return map_wide(lambda x: quintic(x, steps, coeffs, eps), matrices, dtype=dtype,
                  promote=promote, batch=batch)


def whiten(matrices: Sequence[jax.Array], *, steps: int = 10,
           batch: bool | None = None) -> list[jax.Array]:
  """SWAN's whitening (:func:`whitening`) of every matrix, in at least float32."""
  return map_wide(lambda x: whitening(x, steps), matrices, batch=batch)

