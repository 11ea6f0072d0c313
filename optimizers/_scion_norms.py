r"""The norm that Scion's LMOs belong to, and its dual: for measuring constants in Scion's geometry.

Scion steers each parameter by the LMO of a norm chosen by its role, scaled by the role's radius
$\rho_r$ (``optimizers/_scion.py``). Over the whole model the feasible set is the product of the
layers' balls, so the norm of a pytree and its dual are

$$\|x\| = \max_l \frac{\|x_l\|_{(l)}}{\rho_l}, \qquad \|g\|_* = \sum_l \rho_l \|g_l\|_{(l)*},$$

and $\langle g, \rho\,\mathrm{lmo}(g)\rangle = \|g\|_*$ (Scion's direction at momentum 1 attains
the dual norm). Per LMO, for a kernel ``(d_in, d_out)`` (Flax's layout):

- ``spectral``: $\|x\| = \sqrt{d_\text{in}/d_\text{out}}\,\sigma_\max(x)$,
  $\|g\|_* = \sqrt{d_\text{out}/d_\text{in}}\,\|g\|_\text{nuclear}$;
- ``spectral_conv``: the same on ``(k d_in, d_out)``, the norm times $k$, the dual over $k$;
- ``sign``: $\|x\| = d_\text{in}\max_{ij}|x_{ij}|$, $\|g\|_* = \sum_{ij}|g_{ij}|/d_\text{in}$;
- ``column_norm``: $\|x\| = \max_i\operatorname{rms}(x_{i,:})$,
  $\|g\|_* = \sqrt{d_\text{out}}\sum_i\|g_{i,:}\|_2$;
- ``row_norm``: $\|x\| = \sqrt{d_\text{in}}\max_j\|x_{:,j}\|_2$,
  $\|g\|_* = \sum_j\|g_{:,j}\|_2/\sqrt{d_\text{in}}$;
- ``bias_rms``: $\|x\| = \operatorname{rms}(x)$, $\|g\|_* = \sqrt n\,\|g\|_2$

($k$: the convolution window's size; $d_\text{in}$ of ``sign`` and ``row_norm`` is the product of
all axes but the last.) The spectral norms are computed exactly (an SVD), not by Newton–Schulz.
Computed on the host in float64: these measure a run, they are not part of a step.
"""

import math
from collections.abc import Mapping

import jax
import numpy as np

from optimizers._scion import DEFAULT_LMOS, DEFAULT_RADII

__all__ = ["scion_dual_norm", "scion_norm"]


def _matrix(x: np.ndarray, lmo: str) -> tuple[np.ndarray, float, float]:
  """``(x as (rows, d_out), d_in, window)`` for the spectral LMOs."""
  if x.ndim < 2:
    raise ValueError(f"the {lmo} norm needs a matrix or a kernel, got shape {x.shape}")
  window = math.prod(x.shape[:-2]) if lmo == "spectral_conv" else 1
  if lmo == "spectral" and x.ndim != 2:
    raise ValueError(f"the spectral norm needs a (in, out) kernel, got shape {x.shape}")
  return x.reshape(-1, x.shape[-1]), x.shape[-2], window


def _layer(x: np.ndarray, lmo: str, dual: bool) -> float:
  """The unit-radius norm (or its dual) of one array under the LMO named ``lmo``."""
  x = np.asarray(x, np.float64)
  if lmo in ("spectral", "spectral_conv"):
    m, d_in, window = _matrix(x, lmo)
    s = np.linalg.svd(m, compute_uv=False)
    scale = math.sqrt(m.shape[1] / d_in)
    return float(s.sum() * scale / window) if dual else float(s.max() * window / scale)
  d_out = x.shape[-1] if x.ndim else 1
  n_in = x.size // d_out if x.ndim else 1
  if lmo == "sign":
    return float(np.abs(x).sum() / n_in) if dual else float(n_in * np.abs(x).max())
  if lmo == "column_norm":
    rows = np.linalg.norm(x.reshape(-1, d_out), axis=1)
    return float(math.sqrt(d_out) * rows.sum()) if dual else float(rows.max() / math.sqrt(d_out))
  if lmo == "row_norm":
    cols = np.linalg.norm(x.reshape(-1, d_out), axis=0)
    return float(cols.sum() / math.sqrt(n_in)) if dual else float(math.sqrt(n_in) * cols.max())
  if lmo == "bias_rms":
    return (float(math.sqrt(x.size) * np.linalg.norm(x)) if dual
            else float(np.sqrt(np.mean(np.square(x)))))
  raise ValueError(f"no norm is known for the LMO {lmo!r}: the named ones are bias_rms, "
                   "column_norm, row_norm, sign, spectral, spectral_conv")


def _layers(tree, labels, radii, lmos, dual: bool) -> list[float]:
  radii = {**DEFAULT_RADII, **dict(radii or {})}
  lmos = {**DEFAULT_LMOS, **dict(lmos or {})}
  leaves, treedef = jax.tree.flatten(tree)
  roles = treedef.flatten_up_to(labels)
  out = []
  for x, role in zip(leaves, roles, strict=True):
    if role not in radii or role not in lmos:
      raise ValueError(f"parameter role {role!r} has no radius or LMO: known roles are "
                       f"{', '.join(sorted(set(radii) & set(lmos)))}")
    if not isinstance(lmos[role], str):
      raise ValueError(f"role {role!r} has a custom LMO: its norm is known for the named LMOs "
                       "only (pass the LMO's name)")
    value = _layer(np.asarray(jax.device_get(x)), lmos[role], dual)
    out.append(radii[role] * value if dual else value / radii[role])
  return out


def scion_norm(tree, labels, *, radii: Mapping[str, float] | None = None,
               lmos: Mapping[str, str] | None = None) -> float:
  """$\\max_l \\|x_l\\|_{(l)}/\\rho_l$: the norm whose radius-1 ball Scion's direction lies on
  (module doc). ``labels``: a pytree of roles like ``tree``; ``radii``/``lmos`` as for
  ``scion`` (merged over its defaults)."""
  return max(_layers(tree, labels, radii, lmos, dual=False))


def scion_dual_norm(tree, labels, *, radii: Mapping[str, float] | None = None,
                    lmos: Mapping[str, str] | None = None) -> float:
  """$\\sum_l \\rho_l \\|g_l\\|_{(l)*}$: the dual of ``scion_norm`` (module doc)."""
  return sum(_layers(tree, labels, radii, lmos, dual=True))
