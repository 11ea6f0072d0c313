"""The fast paths of the matrix methods compute what the plain ones do.

``optimizers/_newton_schulz.py`` stacks same-shaped matrices (on accelerators), runs the quintic
on the Gram side of wide matrices and SWAN's whitening as a cubic on nearly square ones; Muon
runs optax's rule through it; SOAP keeps its first moment in the eigenbasis; SOAP's and
Shampoo's eigendecompositions and QR run inside ``lax.cond``. The checks against the papers are
in ``test_optimizers_matrix.py`` and ``test_optimizers_recent.py``.

Tolerances. Two evaluations of the same polynomial of a matrix differ by rounding only. Each
quintic step chains three products of length at most n, each rounding by at most 10 sqrt(n) u in
spectral norm (the probabilistic bound for dot products, Higham & Mary 2019, with a margin, as
the quintic test in ``test_optimizers_matrix.py``), and a step carries an earlier error forward
by at most L = max(|p'(x)|, p(x)/x) over [0, 1.22], about 4.6 (the divided differences of the
odd map X -> p(X); p sends [0, 1] into [0, 1.21] and keeps [0, 1.22]): after 5 steps at most
30 sqrt(n) u (1 + L + ... + L^4) ~ 1.8e4 sqrt(n) u per evaluation (SWAN's whitening, 10 steps
of a map with slope at most 1.5, stays below it). The identities are checked in
float64 (u = 1.1e-16), where twice that is 6e-11 for n <= 256 and ``_TOL = 1e-10`` cannot fail a
correct rewrite, while a transposed result, a matrix crossed between two leaves of a stack or a
rounded coefficient moves entries by 1e-3 to 1.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optax import contrib

import optimizers
from optimizers import _newton_schulz
from optimizers._newton_schulz import (
  NS_COEFFS,
  orthogonalize,
  quintic,
  use_gram_side,
  whiten,
  whitening,
)
from optimizers._normuon import scale_by_normuon
from optimizers._scion import _apply_lmos, newton_schulz, spectral, spectral_conv
from optimizers._shampoo import scale_by_shampoo
from optimizers._soap import scale_by_soap
from optimizers._swan import scale_by_swan

_TOL = 1e-10  # float64, see the module docstring


def _rounding_bound(n, u, steps=5):
  """The module docstring's worst-case bound on one evaluation's rounding error."""
  a, b, c = NS_COEFFS
  x = np.linspace(1e-6, 1.22, 100_001)
  assert (a * x + b * x**3 + c * x**5).max() <= 1.22  # the interval the iterates stay in
  lipschitz = max(np.abs(a + 3 * b * x**2 + 5 * c * x**4).max(), (a + b * x**2 + c * x**4).max())
  return 30 * math.sqrt(n) * u * sum(lipschitz**k for k in range(steps))


def test_the_tolerance_covers_float64_rounding_and_nothing_more():
  assert 1e-11 < 2 * _rounding_bound(256, 2.0**-53) < _TOL < 1e-4


def _ref_quintic(g, steps=5, eps=1e-7):
  """The plain direct quintic in NumPy float64 (the Scion reference's loop)."""
  a, b, c = NS_COEFFS
  x = np.asarray(g, np.float64)
  tall = x.shape[0] > x.shape[1]
  x = x.T if tall else x
  x = x / (np.linalg.norm(x) + eps)
  for _ in range(steps):
    s = x @ x.T
    x = a * x + (b * s + c * s @ s) @ x
  return x.T if tall else x


def _spectrum(rng, m, n, kappa):
  """A matrix with singular values spread log-uniformly over [1/kappa, 1]."""
  u, _ = np.linalg.qr(rng.standard_normal((m, m)))
  v, _ = np.linalg.qr(rng.standard_normal((n, n)))
  k = min(m, n)
  s = np.exp(rng.uniform(-np.log(kappa), 0, k))
  s[0], s[-1] = 1.0, 1.0 / kappa
  return u[:, :k] @ np.diag(s) @ v[:, :k].T


def _matrices(rng, dtype):
  """Repeated shapes (a tall one among wide ones), squares, one lone shape; some ill-conditioned."""
  shapes = [(16, 64), (64, 16), (16, 64), (24, 24), (24, 24), (8, 40), (40, 96)]
  out = [_spectrum(rng, *s, 1e4) if i % 2 else rng.standard_normal(s)
         for i, s in enumerate(shapes)]
  return [jnp.asarray(x, dtype) for x in out]


def test_gram_side_where_it_saves_flops_and_only_in_float32_or_wider():
  assert use_gram_side(256, 1024, 5, jnp.float32)  # (256, 1024): 1.5x fewer flops
  assert use_gram_side(256, 768, 5, jnp.float64)
  assert not use_gram_side(256, 256, 5, jnp.float32)
  assert not use_gram_side(256, 1024, 5, jnp.bfloat16)


def test_stacked_and_one_by_one_orthogonalisation_equal_the_plain_quintic():
  with jax.enable_x64(True):
    matrices = _matrices(np.random.default_rng(0), jnp.float64)
    stacked = jax.jit(lambda ms: orthogonalize(ms, batch=True))(matrices)
    one_by_one = jax.jit(lambda ms: orthogonalize(ms, batch=False))(matrices)
    for g, s, o in zip(matrices, stacked, one_by_one, strict=True):
      want = _ref_quintic(g)
      assert s.shape == o.shape == g.shape and s.dtype == o.dtype == g.dtype
      np.testing.assert_allclose(s, want, rtol=0, atol=_TOL)
      np.testing.assert_allclose(o, want, rtol=0, atol=_TOL)
    # The Gram side was taken for the wide shapes (16, 64) and (40, 96), not for the others.
    assert use_gram_side(16, 64, 5, jnp.float64) and not use_gram_side(24, 24, 5, jnp.float64)


@jax.jit
def _direct_quintic(x):
  a, b, c = NS_COEFFS
  x = x / (jnp.linalg.norm(x) + 1e-7)
  for _ in range(5):
    s = x @ x.T
    x = a * x + (b * s + c * s @ s) @ x
  return x


def test_gram_side_in_float32_is_as_accurate_as_the_direct_form():
  """Its restarts keep float32 rounding at the direct form's level on ill-conditioned input
  (without them the accumulated polynomial leaks 20-100x more)."""
  rng = np.random.default_rng(1)
  for kappa in (1e3, 1e6):
    g = jnp.asarray(_spectrum(rng, 32, 256, kappa), jnp.float32)
    assert use_gram_side(32, 256, 5, jnp.float32)
    exact = _ref_quintic(np.asarray(g))
    gram = np.abs(np.asarray(jax.jit(quintic)(g), np.float64) - exact).max()
    direct = np.abs(np.asarray(_direct_quintic(g), np.float64) - exact).max()
    assert gram < 4 * direct + 1e-7, (kappa, gram, direct)


def _ref_whitening(g, steps):
  """SWAN's coupled iteration as written in the paper's appendix (the old per-leaf code)."""
  x = np.asarray(g, np.float64)
  tall = x.shape[0] > x.shape[1]
  x = x.T if tall else x
  x = x / np.linalg.norm(x)
  eye = np.eye(x.shape[0])
  y, z = x @ x.T, eye
  for _ in range(steps):
    t = 3 * eye - z @ y
    y, z = 0.5 * y @ t, 0.5 * t @ z
  out = z @ x
  return out.T if tall else out


def test_whitening_rewrites_equal_the_coupled_iteration():
  with jax.enable_x64(True):
    rng = np.random.default_rng(2)
    matrices = [jnp.asarray(rng.standard_normal(s)) for s in
                [(24, 24), (24, 24), (20, 24), (16, 64), (64, 16)]]
    for batch in (True, False):
      whitened = jax.jit(lambda ms, b=batch: whiten(ms, steps=10, batch=b))(matrices)
      for g, w in zip(matrices, whitened, strict=True):
        np.testing.assert_allclose(w, _ref_whitening(g, 10), rtol=0, atol=_TOL)
  # Wide: the coupled loop with the two products by Z_0 = I skipped is the same, bit for bit.
  x = jnp.asarray(rng.standard_normal((16, 64)), jnp.float32)
  x = x / jnp.linalg.norm(x)
  eye = jnp.eye(16)
  y, z = x @ x.T, eye
  for _ in range(10):
    t = 3.0 * eye - z @ y
    y, z = 0.5 * y @ t, 0.5 * t @ z
  np.testing.assert_array_equal(jax.jit(whitening)(x), z @ x)


def _tree(rng, dtype):
  """A model-like tree with repeated shapes: what stacking groups."""
  shape = {"embedding": (64, 16), "qkv_0": (16, 48), "qkv_1": (16, 48), "out_0": (16, 16),
           "out_1": (16, 16), "mlp_in_0": (16, 64), "mlp_out_0": (64, 16), "head": (16, 64),
           "conv": (3, 3, 4, 16), "scale": (16,)}
  return {k: jnp.asarray(rng.standard_normal(s), dtype) for k, s in shape.items()}


_ROLES = {"embedding": "embedding", "qkv_0": "hidden", "qkv_1": "hidden", "out_0": "hidden",
          "out_1": "hidden", "mlp_in_0": "hidden", "mlp_out_0": "hidden", "head": "head",
          "conv": "conv", "scale": "norm"}


def _matrix_leaves(tree):
  return {k: v for k, v in tree.items() if v.ndim == 2}


@pytest.mark.parametrize("name", ["scion", "normuon", "swan", "muon"])
def test_stacking_does_not_change_a_methods_updates(name, monkeypatch):
  """Two updates with stacking forced on and off (CPU's default is off), float64."""
  rng = np.random.default_rng(3)
  with jax.enable_x64(True):
    params = _tree(rng, jnp.float64)
    grads = [jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape)), params)
             for _ in range(2)]
    make = {"scion": lambda: optimizers.scion(0.1, param_labels=_ROLES),
            "normuon": lambda: scale_by_normuon(nesterov=True),
            "swan": lambda: scale_by_swan(),
            "muon": lambda: optimizers.muon(0.02)}[name]
    if name in ("normuon", "swan"):
      params = _matrix_leaves(params)
      grads = [_matrix_leaves(g) for g in grads]

    def run(batch):
      monkeypatch.setattr(_newton_schulz, "_default_batch", lambda: batch)
      tx = make()
      update = jax.jit(tx.update)
      state, out = tx.init(params), []
      for g in grads:
        u, state = update(g, state, params)
        out.append(u)
      return out

    for stacked, alone in zip(run(True), run(False), strict=True):
      for k in stacked:
        scale = float(jnp.abs(alone[k]).max())
        np.testing.assert_allclose(stacked[k], alone[k], rtol=0, atol=_TOL * max(scale, 1.0))


def test_scion_lmos_together_equal_each_lmo_alone():
  rng = np.random.default_rng(4)
  leaves = [jnp.asarray(rng.standard_normal(s), jnp.float32)
            for s in [(16, 48), (48, 16), (16, 48), (3, 3, 4, 16), (8, 8)]]
  lmos = [spectral, spectral, spectral, spectral_conv, lambda x: 2 * x]
  together = jax.jit(lambda xs: _apply_lmos(lmos, xs, batch=False))(leaves)
  for lmo, x, got in zip(lmos, leaves, together, strict=True):
    np.testing.assert_array_equal(got, jax.jit(lmo)(x))  # on CPU, the same program per leaf
  with pytest.raises(ValueError, match="spectral needs a \\(in, out\\) kernel"):
    _apply_lmos([spectral], [jnp.zeros((2, 3, 4))])


def _muon_trajectory(tx, params, grads):
  state, out = tx.init(params), []
  update = jax.jit(tx.update)
  for g in grads:
    u, state = update(g, state, params)
    params = optax.apply_updates(params, u)
    out.append(params)
  return out


@pytest.mark.parametrize("kwargs", [{}, dict(nesterov=False), dict(adaptive=True),
                                    dict(consistent_rms=0.2, weight_decay=0.1, beta=0.9)])
def test_muon_equals_optax_contrib_muon(kwargs):
  rng = np.random.default_rng(5)
  with jax.enable_x64(True):
    params = {"a": jnp.asarray(rng.standard_normal((24, 96))),
              "b": jnp.asarray(rng.standard_normal((96, 24))),
              "c": jnp.asarray(rng.standard_normal((16, 16))), "v": jnp.zeros(7)}
    grads = [jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape)), params)
             for _ in range(4)]
    ours = _muon_trajectory(optimizers.muon(0.02, **kwargs), params, grads)
    theirs = _muon_trajectory(contrib.muon(0.02, **kwargs), params, grads)
    for a, b in zip(ours, theirs, strict=True):
      for k in params:
        moved = float(jnp.abs(b[k] - params[k]).max())
        assert moved > 1e-3
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=_TOL * max(1.0, moved))
    state = optimizers.muon(0.02, **kwargs).init(params)
    assert jax.tree.structure(state) == jax.tree.structure(contrib.muon(0.02, **kwargs)
                                                           .init(params))


def test_muon_passes_other_options_to_optax():
  params = {"w": jnp.ones((8, 4)), "b": jnp.zeros(4)}
  grads = jax.tree.map(lambda p: jnp.cos(jnp.arange(p.size, dtype=p.dtype)).reshape(p.shape),
                       params)
  for kwargs in (dict(preconditioning="aol"), dict(ns_coeffs="dion")):
    ours, theirs = optimizers.muon(0.1, **kwargs), contrib.muon(0.1, **kwargs)
    np.testing.assert_array_equal(ours.update(grads, ours.init(params), params)[0]["w"],
                                  theirs.update(grads, theirs.init(params), params)[0]["w"])
  with pytest.raises(ValueError, match="ns_dtype"):
    optimizers.muon(0.1, preconditioning="aol", ns_dtype=jnp.bfloat16)


def test_bfloat16_iterations_stay_in_the_quintics_band():
  """The references' bfloat16 Newton–Schulz (a GPU option here): the singular values of the
  components above 1% of the norm stay in the quintic's float32 band [0.68, 1.14] widened by a
  bfloat16 rounding of each step, [0.6, 1.25], and the direction keeps its alignment with G
  (<G, O>, the dual-norm value the LMO attains: 85% of the nuclear norm in float32 on these
  inputs) within 8% of float32's (measured: 2-5% lower). The entries move by 4-14% in
  Frobenius norm, mostly along the small singular values, which the quintic leaves anywhere in
  [0, 1.2] in any precision."""
  rng = np.random.default_rng(6)
  both = jax.jit(lambda g: (orthogonalize([g])[0], orthogonalize([g], dtype=jnp.bfloat16)[0]))
  for shape in [(64, 256), (96, 96)]:
    g = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    f32, b16 = both(g)
    assert b16.dtype == jnp.float32
    sv = np.linalg.svd(np.asarray(b16, np.float64), compute_uv=False)
    sg = np.linalg.svd(np.asarray(g, np.float64), compute_uv=False)
    kept = sv[sg >= 0.01 * np.linalg.norm(sg)]
    assert 0.6 <= kept.min() and kept.max() <= 1.25, (kept.min(), kept.max())
    assert 0.92 < float(jnp.vdot(g, b16) / jnp.vdot(g, f32)) < 1.02
    assert 0.005 < float(jnp.linalg.norm(b16 - f32) / jnp.linalg.norm(f32)) < 0.2
  # Each method takes the option.
  params = {"w": jnp.asarray(rng.standard_normal((16, 32)), jnp.float32)}
  for tx in (optimizers.scion(0.1, param_labels={"w": "hidden"}, ns_dtype=jnp.bfloat16),
             optimizers.normuon(0.1, ns_dtype=jnp.bfloat16),
             optimizers.muon(0.1, ns_dtype=jnp.bfloat16)):
    updates, _ = tx.update(params, tx.init(params), params)
    assert updates["w"].dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(updates["w"])))


def test_scion_newton_schulz_is_the_shared_quintic():
  g = jnp.asarray(np.random.default_rng(7).standard_normal((24, 80)), jnp.float32)
  np.testing.assert_array_equal(newton_schulz(g), orthogonalize([g], batch=False)[0])


# --- SOAP and Shampoo: the expensive parts run only on the steps that need them.

def _primitives_outside_cond(jaxpr, found, inside=False):
  """Names of the primitives met, each with whether it sits inside a ``cond`` branch."""
  for eqn in jaxpr.eqns:
    found.add((eqn.primitive.name, inside))
    for value in eqn.params.values():
      for sub in value if isinstance(value, tuple | list) else (value,):
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          _primitives_outside_cond(inner, found, inside or eqn.primitive.name == "cond")
  return found


@pytest.mark.parametrize("tx", [scale_by_soap(), scale_by_shampoo(precondition_frequency=10)],
                         ids=["soap", "shampoo"])
def test_eigendecompositions_and_qr_only_inside_cond(tx):
  params = {"w": jnp.ones((6, 4)), "b": jnp.ones(4)}
  found = _primitives_outside_cond(jax.make_jaxpr(tx.update)(params, tx.init(params)).jaxpr,
                                   set())
  heavy = {name for name, _ in found} & {"eigh", "qr", "householder_product", "geqrf", "svd"}
  assert heavy, found  # the walk reaches them
  assert not any((name, False) in found for name in heavy)


def test_soap_refreshes_its_basis_on_its_schedule_and_shampoo_its_roots():
  rng = np.random.default_rng(8)
  params = {"w": jnp.asarray(rng.standard_normal((5, 5)), jnp.float32)}
  grads = [{"w": jnp.asarray(rng.standard_normal((5, 5)), jnp.float32)} for _ in range(8)]

  def changes(tx, field):
    state, changed = tx.init(params), []
    for g in grads:
      _, new = jax.jit(tx.update)(g, state, params)
      old_leaf, new_leaf = getattr(state, field)["w"][0], getattr(new, field)["w"][0]
      changed.append(bool(jnp.any(old_leaf != new_leaf)))
      state = new
    return changed

  # SOAP: call 0 initialises Q; the step of call t refreshes it when t % 3 == 0.
  assert changes(scale_by_soap(precondition_frequency=3), "q") == [
      True, False, False, True, False, False, True, False]
  # Shampoo: the roots at calls 0, 3, 6.
  assert changes(scale_by_shampoo(precondition_frequency=3), "roots") == [
      True, False, False, True, False, False, True, False]
