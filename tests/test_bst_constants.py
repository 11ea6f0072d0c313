"""Scion's norm and its dual (the geometry the BST constants are measured in), the regimes that
measured constants imply, and the measurement itself on a tiny run."""

import math

import numpy as np
import pytest

import optimizers
from theory import batch_size

RNG = np.random.default_rng(0)


def _polar(g):
  """U V^T by an SVD: the exact spectral LMO's direction (Newton-Schulz only approximates it)."""
  u, _, vt = np.linalg.svd(g, full_matrices=False)
  return u @ vt


# Each role's LMO written from its definition (Pethick et al. 2025, Table 2), exact.
def _lmo(lmo, g):
  if lmo == "spectral":
    return _polar(g) * math.sqrt(g.shape[1] / g.shape[0])
  if lmo == "spectral_conv":
    m = g.reshape(-1, g.shape[-1])
    window = math.prod(g.shape[:-2])
    return (_polar(m) * math.sqrt(g.shape[-1] / g.shape[-2]) / window).reshape(g.shape)
  if lmo == "sign":
    return np.sign(g) / math.prod(g.shape[:-1])
  if lmo == "column_norm":
    return g / np.sqrt(np.mean(g**2, axis=-1, keepdims=True))
  if lmo == "row_norm":
    return g / (np.linalg.norm(g, axis=0, keepdims=True) * math.sqrt(g.shape[0]))
  if lmo == "bias_rms":
    return g / np.sqrt(np.mean(g**2))
  raise AssertionError(lmo)


TREE = {"embed": (7, 6), "wide": (5, 9), "tall": (9, 4), "conv": (3, 3, 2, 5), "head": (6, 7),
        "rows": (4, 3), "bias": (5,)}
LABELS = {"embed": "embedding", "wide": "hidden", "tall": "hidden", "conv": "conv",
          "head": "head", "rows": "rows", "bias": "bias"}
LMOS = {"embedding": "column_norm", "hidden": "spectral", "conv": "spectral_conv",
        "head": "sign", "rows": "row_norm", "bias": "bias_rms"}
RADII = {"embedding": 2.0, "hidden": 50.0, "conv": 3.0, "head": 300.0, "rows": 0.5, "bias": 7.0}


def _random():
  return {k: RNG.standard_normal(shape) for k, shape in TREE.items()}


def test_the_dual_norm_is_attained_by_the_radius_times_the_exact_lmo():
  g = _random()
  direction = {k: RADII[LABELS[k]] * _lmo(LMOS[LABELS[k]], v) for k, v in g.items()}
  inner = sum(float(np.sum(g[k] * direction[k])) for k in g)
  dual = optimizers.scion_dual_norm(g, LABELS, radii=RADII, lmos=LMOS)
  assert dual == pytest.approx(inner, rel=1e-9)
  # ... and that direction lies on the unit sphere of the primal norm.
  assert optimizers.scion_norm(direction, LABELS, radii=RADII, lmos=LMOS) == pytest.approx(1.0)


def test_hoelder_holds_for_random_pairs_and_the_norms_scale():
  for _ in range(20):
    g, x = _random(), _random()
    inner = abs(sum(float(np.sum(g[k] * x[k])) for k in g))
    dual = optimizers.scion_dual_norm(g, LABELS, radii=RADII, lmos=LMOS)
    primal = optimizers.scion_norm(x, LABELS, radii=RADII, lmos=LMOS)
    assert inner <= dual * primal * (1 + 1e-12)
  x = _random()
  assert optimizers.scion_norm({k: 3 * v for k, v in x.items()}, LABELS, radii=RADII,
                               lmos=LMOS) == pytest.approx(
      3 * optimizers.scion_norm(x, LABELS, radii=RADII, lmos=LMOS))


def test_a_custom_lmo_or_unknown_role_has_no_norm():
  with pytest.raises(ValueError, match="custom LMO"):
    optimizers.scion_norm({"w": np.ones((2, 2))}, {"w": "hidden"}, lmos={"hidden": np.sign})
  with pytest.raises(ValueError, match="no radius or LMO"):
    optimizers.scion_dual_norm({"w": np.ones((2, 2))}, {"w": "nope"})


def _terms(bs, t, mu, ns, lip):
  """The bound's three terms (Islamov et al. 2026, Corollary 4.1), factors taken as 1."""
  return (lip * bs / (mu**2 * t), (lip * ns**2 / (mu**4 * t)) ** (1 / 3),
          ns / (mu * (t**2 * bs) ** (1 / 6)))


@pytest.mark.parametrize("mu,ns,lip,t", [(0.5, 30.0, 4.0, 1e6), (2.0, 1e3, 50.0, 3e8)])
def test_the_regimes_lie_where_the_bound_s_terms_cross(mu, ns, lip, t):
  r = batch_size.bst_regimes(t, mu=mu, rho_sigma=ns, smoothness=lip)
  starved, flat, noisy = _terms(r["optimum"], t, mu, ns, lip)
  assert starved == pytest.approx(flat, rel=1e-9)
  starved, flat, noisy = _terms(r["low"], t, mu, ns, lip)
  assert noisy == pytest.approx(flat, rel=1e-9)
  # Below the low edge the noise term leads, above the optimum the starved one; between, flat.
  for bs, leader in ((r["low"] / 4, 2), (math.sqrt(r["low"] * r["optimum"]), 1),
                     (4 * r["optimum"], 0)):
    terms = batch_size.bst_bound_terms(bs, t, mu=mu, rho_sigma=ns, smoothness=lip)
    assert np.allclose(terms, _terms(bs, t, mu, ns, lip))
    assert int(np.argmax(terms)) == leader
  assert r["stepsize"] == pytest.approx(r["optimum"] / (mu * t))
  # The optimum grows as T^(2/3): the transfer rule's exponent.
  assert batch_size.bst_regimes(8 * t, mu=mu, rho_sigma=ns, smoothness=lip)["optimum"] == (
      pytest.approx(4 * r["optimum"]))
