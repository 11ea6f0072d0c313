"""Tests of the Adam–SGD gap model: bound, crossover condition, simulation, estimation, fit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from theory import gap_model


def _numpy_proxy(method, hessian, x0, noise, lr, beta):
  """Independent float64 transcription of the two proxies' update rules."""
  x, m, xs = x0.copy(), np.zeros_like(x0), []
  for z in noise:
    g = hessian @ x + z
    m = beta * m + (1 - beta) * g
    if method == "signsgd_momentum":
      x = x - lr * np.sign(m)
    else:
      x = x - lr * m / np.linalg.norm(m)
    xs.append(x.copy())
  return np.array(xs)


def _rotated_hessian(rng, eigenvalues):
  q, _ = np.linalg.qr(rng.normal(size=(len(eigenvalues),) * 2))
  return q @ np.diag(eigenvalues) @ q.T


@pytest.mark.parametrize("method", gap_model.PROXIES)
def test_simulation_matches_numpy_transcription(method):
  rng = np.random.default_rng(0)
  hessian = _rotated_hessian(rng, [0.5, 1.0, 3.0, 10.0])
  x0 = rng.normal(size=4)
  noise = 0.3 * rng.normal(size=(6, 4))
  expected = _numpy_proxy(method, hessian, x0, noise, 0.05, 0.9)
  with jax.enable_x64(True):
    got = gap_model.proxy_trajectory(method, jnp.asarray(hessian), jnp.asarray(x0),
                                     jnp.asarray(noise), 0.05, 0.9)
    assert got.dtype == jnp.float64
  # float64 on both sides: only reordering of a few dozen flops separates them.
  np.testing.assert_allclose(np.asarray(got), expected, rtol=0, atol=1e-12)


def _constants(r, d, **kw):
  base = dict(l2=2.0, linf=2.0 * r, sigma=0.5, dim=d, delta=3.0, budget=1e6, source="fitted")
  return gap_model.GapConstants(**{**base, **kw})


@pytest.mark.parametrize("d", [8, 1000, 10**6])
@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_crossover_iff_r_below_cube_root_of_d(d, factor):
  r = max(1.0, factor * d ** (1 / 3))
  constants = _constants(r, d)
  exists = gap_model.crossover_exists(r, d)
  assert exists == (factor < 1)
  # The range spans both regimes: the bound is B-independent below ~1e-3 and deterministic
  # (gap growing like sqrt(B)) far above sigma*d*sqrt(T/(4 Delta L_inf)) <= 1e10 here.
  crossover = gap_model.predicted_crossover(constants, (1e-6, 1e16), num=600)
  assert (crossover is not None) == exists
  gaps = gap_model.predicted_gap(np.array([1e-6, 1e16]), constants)
  assert gaps[0] > 0  # SGD wins at small batch in either case.
  if exists:
    assert gaps[1] < 0
    assert abs(gap_model.predicted_gap(np.array([crossover]), constants)[0]) < 1e-2 * abs(
        gaps[0])


def test_gap_sign_flip_in_measured_simulation_is_well_formed():
  rng = np.random.default_rng(1)
  hessian = np.diag([100.0, 1.0, 1.0, 1.0])
  result = gap_model.simulate_gap(hessian, rng.normal(size=4), sigma=1.0, budget=64,
                                  batches=[8, 32], learning_rates=np.geomspace(1e-3, 1e-1, 3),
                                  beta=0.9, num_seeds=4, seed=0)
  assert result["gap"].shape == (2,)
  np.testing.assert_allclose(result["gap"], result["adam"] - result["sgd"])
  assert np.all(np.isfinite(result["adam"])) and np.all(result["sgd"] >= 0)


def test_estimate_constants_on_known_quadratic():
  rng = np.random.default_rng(2)
  eigenvalues = np.array([10.0, 5.0, 3.0, 2.0, 1.0, 0.5, 0.2, 0.1])
  hessian = _rotated_hessian(rng, eigenvalues)
  d, n, sigma = 8, 4000, 0.7
  examples = jnp.asarray(sigma * rng.normal(size=(n, d)), jnp.float32)
  x = {"w": jnp.asarray(rng.normal(size=d), jnp.float32)}
  h = jnp.asarray(hessian, jnp.float32)

  def loss_fn(params, xi):
    w = params["w"]
    return 0.5 * w @ h @ w + xi @ w

  c = gap_model.estimate_constants(loss_fn, x, examples, budget=1e5, power_iters=60)
  assert c.source == "measured" and c.dim == d
  # Power iteration: relative error <= tan^2(theta_0) (lambda_2/lambda_1)^(2k) = tan^2 * 2^-120,
  # negligible; what remains is float32 rounding of the HVPs (~1e-6 relative), so 1e-4.
  np.testing.assert_allclose(c.l2, eigenvalues[0], rtol=1e-4)
  # The gradient noise is exactly xi, so the per-coordinate sample variance of n Gaussian draws
  # has relative std sqrt(2/(n-1)); the mean over d coordinates of a rotation-free isotropic
  # noise has relative std sqrt(2/((n-1) d)). Five of those.
  assert abs(c.sigma**2 / sigma**2 - 1) < 5 * np.sqrt(2 / ((n - 1) * d))
  # L_inf = max_s s^T H s lies in [L_2, d L_2] and at least tr(H) (the mean of s^T H s).
  assert eigenvalues[0] * (1 - 1e-4) <= c.linf <= d * eigenvalues[0]


def test_estimate_constants_linf_exact_on_diagonal():
  d = 6
  lam = jnp.array([4.0, 3.0, 2.0, 1.0, 0.5, 0.25])
  examples = jnp.asarray(np.random.default_rng(3).normal(size=(4, d)), jnp.float32)
  c = gap_model.estimate_constants(lambda p, e: 0.5 * jnp.sum(lam * p**2) + e @ p,
                                   jnp.ones(d), examples, budget=10.0)
  # For diagonal H every sign vector gives s^T H s = tr H, the l_inf -> l_1 norm.
  np.testing.assert_allclose(c.linf, float(jnp.sum(lam)), rtol=1e-6)
  mean_xi = float(jnp.sum(jnp.mean(examples, axis=0)))
  np.testing.assert_allclose(c.delta, 0.5 * float(jnp.sum(lam)) + mean_xi, rtol=1e-5)


def test_fit_constants_recovers_synthetic_constants():
  true = _constants(3.0, 1000, l2=1.5, sigma=0.4, source="measured")
  batches = np.geomspace(1e-2, 1e12, 40)
  gaps = gap_model.predicted_gap(batches, true)
  fitted = gap_model.fit_constants(batches, gaps, dim=true.dim, delta=true.delta,
                                   budget=true.budget, initial=(1.0, 3.0, 1.0))
  assert fitted.source == "fitted"
  # Noise-free synthetic data: the fit is limited only by the solver's float64 tolerance.
  np.testing.assert_allclose([fitted.l2, fitted.linf, fitted.sigma],
                             [true.l2, true.linf, true.sigma], rtol=1e-6)


def test_validation_errors():
  with pytest.raises(ValueError, match="source"):
    _constants(2.0, 10, source="guessed")
  with pytest.raises(ValueError, match="l2"):
    _constants(2.0, 10, l2=0.0)
  with pytest.raises(ValueError, match="method"):
    gap_model.proxy_step("adam", jnp.eye(2), 0.1, 0.9, (jnp.ones(2), jnp.zeros(2)), jnp.zeros(2))
