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


def test_simulate_gap_matches_transcription_without_noise():
  # sigma = 0 makes every seed identical, so the tuned loss at a one-point grid is f(x_K) of
  # the NumPy transcription (the grid repeats one value only to share the next test's shapes,
  # hence its compilation); float32 in the simulation, hence a float32-sized tolerance.
  rng = np.random.default_rng(1)
  hessian = _rotated_hessian(rng, [100.0, 1.0, 1.0, 1.0])
  x0 = rng.normal(size=4)
  result = gap_model.simulate_gap(hessian, x0, sigma=0.0, budget=64, batches=[8, 32],
                                  learning_rates=[0.02, 0.02], beta=0.9, num_seeds=4, seed=0)
  for i, b in enumerate([8, 32]):
    for method, key in (("signsgd_momentum", "adam"), ("normalized_sgd_momentum", "sgd")):
      x = _numpy_proxy(method, hessian, x0, np.zeros((64 // b, 4)), 0.02, 0.9)[-1]
      np.testing.assert_allclose(result[key][i], 0.5 * x @ hessian @ x, rtol=1e-4)
  np.testing.assert_allclose(result["gap"], result["adam"] - result["sgd"])


def test_simulate_gap_tunes_over_the_grid():
  result = gap_model.simulate_gap(np.diag([100.0, 1.0, 1.0, 1.0]), np.ones(4), sigma=1.0,
                                  budget=64, batches=[8, 32],
                                  learning_rates=[1e-2, 1e-1], beta=0.9,
                                  num_seeds=4, seed=0)
  single = gap_model.simulate_gap(np.diag([100.0, 1.0, 1.0, 1.0]), np.ones(4), sigma=1.0,
                                  budget=64, batches=[8, 32], learning_rates=[1e-1, 1e-1], beta=0.9,
                                  num_seeds=4, seed=0)
  # Same seeds, a grid containing 1e-1: the tuned loss can only be lower or equal.
  assert np.all(result["adam"] <= single["adam"] * (1 + 1e-6))
  assert np.all(result["sgd"] <= single["sgd"] * (1 + 1e-6))


def test_estimate_constants_on_known_quadratic():
  # Diagonal H, so every constant is known exactly, L_inf included (power iteration does not
  # see the basis, so a rotation would test nothing more).
  rng = np.random.default_rng(2)
  eigenvalues = np.array([10.0, 5.0, 3.0, 2.0, 1.0, 0.5, 0.2, 0.1])
  d, n, sigma = 8, 4000, 0.7
  examples = jnp.asarray(sigma * rng.normal(size=(n, d)), jnp.float32)
  w = jnp.asarray(rng.normal(size=d), jnp.float32)
  lam = jnp.asarray(eigenvalues, jnp.float32)

  def loss_fn(params, xi):
    return 0.5 * jnp.sum(lam * params["w"] ** 2) + xi @ params["w"]

  c = gap_model.estimate_constants(loss_fn, {"w": w}, examples, budget=1e5, power_iters=60)
  assert c.source == "measured" and c.dim == d
  # Power iteration: relative error <= tan^2(theta_0) (lambda_2/lambda_1)^(2k) = tan^2 * 2^-120,
  # negligible; what remains is float32 rounding of the HVPs (~1e-6 relative), so 1e-4.
  np.testing.assert_allclose(c.l2, eigenvalues[0], rtol=1e-4)
  # For diagonal H every sign vector gives s^T H s = tr H, the l_inf -> l_1 norm.
  np.testing.assert_allclose(c.linf, eigenvalues.sum(), rtol=1e-5)
  # The gradient noise is exactly xi, so the per-coordinate sample variance of n Gaussian draws
  # has relative std sqrt(2/(n-1)); the mean over d independent coordinates has relative std
  # sqrt(2/((n-1) d)). Five of those.
  assert abs(c.sigma**2 / sigma**2 - 1) < 5 * np.sqrt(2 / ((n - 1) * d))
  loss = 0.5 * float(jnp.sum(lam * w**2)) + float(jnp.mean(examples, axis=0) @ w)
  np.testing.assert_allclose(c.delta, loss, rtol=1e-5)


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
