"""The SDE models of ``theory`` against the optax optimizers they describe, and closed forms.

Reference values come from outside the code under test: scipy's erf and Student-t CDF, closed
forms of SGD and of the linearised SignSGD SDE on quadratics, and the optax optimizers. Each
comparison runs >= 1000 paths; optimizer and SDE share a seed, so their normal draws coincide
(common random numbers) and the Monte-Carlo error of their difference stays small. The
tolerances are the measured gaps with a margin; the measured values are in the comments.
"""

import numpy as np
import optax
import pytest
import scipy.linalg
import scipy.special
import scipy.stats

import theory

EIGENVALUES = [0.5, 1.0, 2.0, 4.0]
X0 = np.full(4, 2.0)


@pytest.fixture(scope="module")
def problem():
  return theory.quadratic(eigenvalues=EIGENVALUES)


@pytest.fixture(scope="module")
def noise():
  return theory.gaussian_noise(std=np.ones(4))


def _runs(eta, horizon, num_paths, records=12, seed=0):
  num_steps = int(round(horizon / eta))
  return dict(num_steps=num_steps, num_paths=num_paths, seed=seed,
              record_every=num_steps // records)


# --- drifts against scipy ------------------------------------------------------------------


def test_signsgd_drift_and_diffusion_are_the_erf_of_the_gradient_to_noise_ratio():
  problem = theory.quadratic(eigenvalues=[0.3, 1.0, 5.0])
  std = np.array([0.5, 1.0, 2.0])
  eta = 0.05
  sde = theory.signsgd_sde(problem, theory.gaussian_noise(std=std), eta)
  xi = np.array([1.0, -2.0, 0.5], np.float32)
  for x in ([0.1, -0.2, 0.3], [4.0, -3.0, 0.01], [0.0, 0.0, 0.0]):
    grad = np.array([0.3, 1.0, 5.0]) * np.array(x)
    expected = scipy.special.erf(grad / (np.sqrt(2.0) * std))  # E[sign(g + sigma Z)]
    np.testing.assert_allclose(sde.drift(np.array(x, np.float32), 0.0), -expected, atol=1e-6)
    np.testing.assert_allclose(sde.diffusion(np.array(x, np.float32), 0.0, xi),
                               -np.sqrt(eta * (1.0 - expected**2)) * xi, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("df", [1.0, 2.5, 4.0, 30.0])
def test_student_t_signsgd_drift_is_the_t_cdf(df):
  problem = theory.quadratic(eigenvalues=[1.0, 1.0, 1.0, 1.0])
  scale = np.array([0.5, 1.0, 2.0, 0.1])
  sde = theory.signsgd_sde(problem, theory.student_t_noise(scale, df), 0.01)
  x = np.array([0.3, -2.0, 7.0, -0.05], np.float32)
  expected = 2.0 * scipy.stats.t.cdf(x / scale, df) - 1.0  # P(g > 0) - P(g < 0)
  np.testing.assert_allclose(sde.drift(x, 0.0), -expected, atol=2e-5)


# --- SGD: closed forms -----------------------------------------------------------------------


def test_sgd_weak_error_is_first_order_in_closed_form(problem, noise):
  """Exact E f of discrete SGD vs exact E f of its SDE (an OU process): the gap is O(eta)."""
  errors = []
  for eta in (0.04, 0.01):
    steps = np.arange(0, int(3.0 / eta) + 1)
    discrete = theory.sgd_expected_loss(problem.hessian, noise.covariance, X0, eta, steps)
    sde = theory.sgd_sde_expected_loss(problem.hessian, noise.covariance, X0, eta, steps * eta)
    errors.append(np.max(np.abs(discrete - sde) / discrete))
  # measured: 6.0% at eta = 0.04, 1.4% at eta = 0.01 (ratio 4.2)
  assert errors[0] < 0.08 and errors[1] < 0.02
  assert 3.5 < errors[0] / errors[1] < 4.5


def test_sgd_paths_match_their_closed_forms(problem, noise):
  eta = 0.02
  run = _runs(eta, 2.4, num_paths=2000)
  sgd = theory.simulate_optimizer(optax.sgd(eta), problem, noise, X0, learning_rate=eta, **run)
  sde = theory.simulate_sde(theory.sgd_sde(problem, noise, eta), X0, substeps=8, **run)
  discrete = theory.sgd_expected_loss(problem.hessian, noise.covariance, X0, eta,
                                      sgd.times / eta)
  ou = theory.sgd_sde_expected_loss(problem.hessian, noise.covariance, X0, eta, sde.times)
  # measured: 0.4% (optax.sgd vs its closed form), 0.6% (SDE vs OU closed form); 2000 paths
  assert np.max(np.abs(sgd.mean() - discrete) / discrete) < 0.03
  assert np.max(np.abs(sde.mean() - ou) / ou) < 0.03


# --- optimizer vs SDE along the trajectory, and weak order one -----------------------------


def _signsgd(problem, noise, eta):
  return optax.sign_sgd(eta), theory.signsgd_sde(problem, noise, eta)


def _adam(problem, noise, eta):
  b1, b2 = 1.0 - 10.0 * eta, 1.0 - 1.0 * eta  # rho1 = 10, rho2 = 1
  return (optax.adam(eta, b1, b2, eps=1e-8),
          theory.adam_sde(problem, noise, eta, b1=b1, b2=b2, eps=1e-8))


@pytest.mark.parametrize(
    "make, etas, horizon, num_paths, tracking_tolerance, refined_tolerances",
    [
        # measured: one-step SDE 0.2% at eta = 0.02; refined SDE 3.2% / 1.1% (seeds 1, 2:
        # 2.8% / 0.6%, 3.3% / 0.7%)
        (_signsgd, (0.08, 0.02), 2.4, 8000, 0.02, (0.06, 0.02)),
        # measured: one-step SDE 0.2% at eta = 0.0025; refined SDE 5.1% / 1.7%
        (_adam, (0.01, 0.0025), 1.2, 2000, 0.02, (0.08, 0.03)),
    ],
    ids=["signsgd", "adam"])
def test_sde_tracks_the_optimizer_and_the_gap_is_first_order(
    problem, noise, make, etas, horizon, num_paths, tracking_tolerance, refined_tolerances):
  refined_errors = []
  for eta in etas:
    optimizer, sde = make(problem, noise, eta)
    run = _runs(eta, horizon, num_paths=num_paths)
    discrete = theory.simulate_optimizer(optimizer, problem, noise, X0, learning_rate=eta, **run)
    refined = theory.simulate_sde(sde, X0, substeps=4, **run)
    refined_errors.append(theory.relative_mean_error(discrete, refined))
  # the SDE as simulated (one Euler–Maruyama step per optimizer step) tracks within a few %
  assert theory.relative_mean_error(discrete, theory.simulate_sde(sde, X0, **run)) < (
      tracking_tolerance)
  # against the SDE itself (4 substeps), the gap shrinks with eta: about 3-4x for eta / 4
  assert refined_errors[0] < refined_tolerances[0] and refined_errors[1] < refined_tolerances[1]
  assert refined_errors[1] < 0.5 * refined_errors[0]


def test_adamw_sde_tracks_adamw(problem, noise):
  eta = 0.0025
  b1, b2 = 1.0 - 10.0 * eta, 1.0 - eta
  run = _runs(eta, 3.0, num_paths=1000)
  adamw = theory.simulate_optimizer(optax.adamw(eta, b1, b2, 1e-8, weight_decay=0.5), problem,
                                    noise, X0, learning_rate=eta, **run)
  sde = theory.simulate_sde(
      theory.adam_sde(problem, noise, eta, b1=b1, b2=b2, eps=1e-8, weight_decay=0.5), X0, **run)
  # measured: 1.2% (10.6% at eta = 0.01, at the floor where the loss is ~0.008)
  assert theory.relative_mean_error(adamw, sde) < 0.03
  assert adamw.mean()[-1] < 0.01  # the decay pulls it to the floor


def test_noise_free_adam_sde_follows_optax_adam():
  """Without noise the SDE's Euler steps are Adam's, but for the bias corrections 1 - e^{-rho t}."""
  problem = theory.quadratic(eigenvalues=[0.5, 4.0])
  silent = theory.gaussian_noise(std=[0.0, 0.0])
  eta = 0.02
  b1, b2 = 1.0 - 5.0 * eta, 1.0 - 0.5 * eta
  run = dict(num_steps=100, num_paths=1, seed=0, record_every=10)
  adam = theory.simulate_optimizer(optax.adam(eta, b1, b2, eps=1e-8), problem, silent,
                                   [1.0, 1.0], learning_rate=eta, **run)
  sde = theory.simulate_sde(theory.adam_sde(problem, silent, eta, b1=b1, b2=b2, eps=1e-8),
                            [1.0, 1.0], **run)
  assert adam.losses[-1, 0] < 0.1 * adam.losses[0, 0]  # it moved
  # measured: 1.2e-4 (x moved by ~1)
  np.testing.assert_allclose(sde.final_params, adam.final_params, atol=1e-3)


def test_rmsprop_sde_tracks_optax_rmsprop_with_its_eps_placement(problem, noise):
  eps_in_sqrt = True  # optax's default: g / sqrt(v + eps)
  eta, eps = 0.01, 0.5  # a large eps, so that where optax puts it matters
  decay = 1.0 - eta  # rho = 1
  run = _runs(eta, 3.0, num_paths=1000)
  rmsprop = theory.simulate_optimizer(
      optax.rmsprop(eta, decay=decay, eps=eps, initial_scale=1.0, eps_in_sqrt=eps_in_sqrt),
      problem, noise, X0, learning_rate=eta, **run)
  sde_kwargs = dict(decay=decay, eps=eps, initial_scale=1.0)
  matched = theory.simulate_sde(
      theory.rmsprop_sde(problem, noise, eta, eps_in_sqrt=eps_in_sqrt, **sde_kwargs), X0, **run)
  swapped = theory.simulate_sde(
      theory.rmsprop_sde(problem, noise, eta, eps_in_sqrt=not eps_in_sqrt, **sde_kwargs), X0,
      **run)
  # measured: 0.2% matched; 78% with eps on the other side of the root
  assert theory.relative_mean_error(rmsprop, matched) < 0.02
  assert theory.relative_mean_error(rmsprop, swapped) > 0.08


def test_rmspropw_sde_tracks_decoupled_weight_decay(problem, noise):
  eta, decay = 0.01, 0.99
  rmspropw = optax.chain(optax.scale_by_rms(decay, 1e-8, 1.0, eps_in_sqrt=False),
                         optax.add_decayed_weights(0.5), optax.scale_by_learning_rate(eta))
  run = _runs(eta, 3.0, num_paths=1000)
  discrete = theory.simulate_optimizer(rmspropw, problem, noise, X0, learning_rate=eta, **run)
  sde = theory.simulate_sde(theory.rmsprop_sde(problem, noise, eta, decay=decay, eps=1e-8,
                                               initial_scale=1.0, eps_in_sqrt=False,
                                               weight_decay=0.5), X0, **run)
  # measured: 0.4%
  assert theory.relative_mean_error(discrete, sde) < 0.02


# --- heavy tails -----------------------------------------------------------------------------


def test_student_t_sde_tracks_signsgd_under_heavy_tails_and_the_gaussian_sde_does_not(problem):
  heavy = theory.student_t_noise(np.ones(4), df=3.0)
  # the Gaussian model a practitioner would fit: the t noise's own covariance, 3 = nu/(nu-2)
  gaussian = theory.gaussian_noise(std=np.sqrt(np.asarray(heavy.variance())))
  eta = 0.02
  run = _runs(eta, 2.4, num_paths=1000)
  signsgd = theory.simulate_optimizer(optax.sign_sgd(eta), problem, heavy, X0,
                                      learning_rate=eta, **run)
  student = theory.simulate_sde(theory.signsgd_sde(problem, heavy, eta), X0, **run)
  gauss = theory.simulate_sde(theory.signsgd_sde(problem, gaussian, eta), X0, **run)
  # measured: 1.3% for the Student-t SDE; the Gaussian one's mean loss is 1.95x SignSGD's by
  # t = 2.4 (relative error 0.95, and growing: 2.4 at t = 6)
  assert theory.relative_mean_error(signsgd, student) < 0.04
  assert theory.relative_mean_error(signsgd, gauss) > 0.5


# --- SignSGD: stationary law, phases ---------------------------------------------------------


def test_stationary_losses_signsgd_linear_in_noise_sgd_quadratic(problem):
  """From the minimum, SignSGD's loss settles at the linearised SDE's value, linear in sigma."""
  eta = 0.01
  run = dict(num_steps=1200, num_paths=1000, seed=0, record_every=50)
  late = slice(-8, None)  # t >= 8: slowest variance relaxation rate 2 sqrt(2/pi) 0.5 / sigma
  for sigma in (0.5, 2.0):
    noise = theory.gaussian_noise(std=np.full(4, sigma))
    signsgd = theory.simulate_optimizer(optax.sign_sgd(eta), problem, noise, np.zeros(4),
                                        learning_rate=eta, **run)
    expected = eta * np.sqrt(np.pi / 2) * 4 * sigma / 4  # eta sqrt(pi/2) sum(sigma) / 4, by hand
    assert theory.signsgd_stationary_loss(np.full(4, sigma), eta) == (
        pytest.approx(expected, rel=1e-6))
    # measured: 1.5% (sigma = 0.5) and 0.5% (sigma = 2) apart
    assert signsgd.mean()[late].mean() == pytest.approx(expected, rel=0.05)
  # SGD's is eta tr(Sigma) / 4, quadratic in sigma (simulated SGD is checked against its closed
  # form above): at sigma = 0.5 it is 0.0025 (SignSGD 0.0063), at sigma = 2 0.04 (SignSGD 0.025)
  for sigma, expected in ((0.5, 0.0025), (2.0, 0.04)):
    covariance = theory.gaussian_noise(std=np.full(4, sigma)).covariance
    assert theory.sgd_stationary_loss(covariance, eta) == pytest.approx(expected)


def test_signsgd_stationary_loss_holds_for_a_rotated_hessian():
  """H and the preconditioner do not commute: against scipy's continuous Lyapunov solver."""
  problem = theory.quadratic(eigenvalues=[0.5, 3.0, 1.0], rotation_seed=1)
  assert np.abs(problem.hessian - np.diag(np.diagonal(problem.hessian))).max() > 0.3
  std = np.array([0.5, 2.0, 1.0])
  eta = 0.01
  drift = np.sqrt(2.0 / np.pi) * problem.hessian / std[:, None]  # A in dX = -A X dt + sqrt(eta) dW
  covariance = scipy.linalg.solve_continuous_lyapunov(drift, eta * np.eye(3))  # A S + S A^T
  assert theory.signsgd_stationary_loss(std, eta) == pytest.approx(
      0.5 * np.trace(problem.hessian @ covariance), rel=1e-9)


def test_signsgd_phases_sign_descent_far_preconditioned_sgd_near():
  eta = 0.01
  # far from the minimum (|grad| >> sigma): every coordinate moves at speed 1, whatever its
  # curvature (gradient flow would leave 3 e^{-1.5} = 0.67 and 3 e^{-15} = 0)
  far = theory.quadratic(eigenvalues=[1.0, 10.0])
  far_noise = theory.gaussian_noise(std=[0.1, 0.1])
  np.testing.assert_allclose(
      theory.simulate_optimizer(optax.sign_sgd(eta), far, far_noise, [3.0, 3.0],
                                learning_rate=eta, num_steps=150, num_paths=1000,
                                seed=0).final_params.mean(axis=0), [1.5, 1.5], atol=0.01)
  # near the minimum (|grad| << sigma): E x_i decays at the rate sqrt(2/pi) h_i / sigma_i, set
  # by the noise; equal curvatures, 4x different noise, 4x different rates (SGD: equal rates)
  near = theory.quadratic(eigenvalues=[1.0, 1.0])
  std = np.array([0.5, 2.0])
  x0, t = np.array([0.1, 0.1]), 0.5
  expected = x0 * np.exp(-np.sqrt(2.0 / np.pi) / std * t)  # [0.045, 0.082]; SGD: 0.061 both
  signsgd = theory.simulate_optimizer(optax.sign_sgd(eta), near, theory.gaussian_noise(std=std),
                                      x0, learning_rate=eta, num_steps=50, num_paths=4000, seed=0)
  np.testing.assert_allclose(signsgd.final_params.mean(axis=0), expected, atol=0.004)


# --- batch-size scaling rules ----------------------------------------------------------------


def _late_mean_losses(make_optimizer, problem, per_sample_noise, hyperparameters, kappas):
  """Mean loss over the last fifth of 1200 samples, at batch kappa with its hyperparameters."""
  losses = []
  for hyper, kappa in zip(hyperparameters, kappas, strict=True):
    num_steps = 1200 // kappa
    run = theory.simulate_optimizer(
        make_optimizer(hyper), problem, per_sample_noise.for_batch_size(kappa), np.full(4, 0.3),
        learning_rate=hyper["learning_rate"], num_steps=num_steps, num_paths=1000, seed=0,
        record_every=num_steps // 20)
    losses.append(run.mean()[-4:].mean())
  return np.array(losses)


def test_signsgd_square_root_scaling_rule_keeps_the_stationary_loss(problem, noise):
  eta, kappa = 0.01, 4
  base = dict(learning_rate=eta)
  sqrt_rule = dict(learning_rate=theory.signsgd_scaled_learning_rate(eta, kappa))
  assert sqrt_rule["learning_rate"] == pytest.approx(0.02)
  linear_rule = dict(learning_rate=kappa * eta)
  losses = _late_mean_losses(lambda h: optax.sign_sgd(h["learning_rate"]), problem, noise,
                             [base, sqrt_rule, linear_rule], [1, kappa, kappa])
  # measured: 0.99 (square root) and 2.03 (linear; the SDE predicts sqrt(kappa) = 2)
  assert losses[1] / losses[0] == pytest.approx(1.0, abs=0.1)
  assert losses[2] / losses[0] == pytest.approx(2.0, abs=0.25)


def test_adam_square_root_scaling_rule_keeps_the_stationary_loss(problem, noise):
  kappa = 4
  base = dict(learning_rate=0.005, b1=0.95, b2=0.995, eps=1e-8)
  scaled = theory.adam_scaled_hyperparameters(kappa, **base)
  assert scaled == pytest.approx(dict(learning_rate=0.01, b1=0.8, b2=0.98, eps=5e-9,
                                      weight_decay=0.0))
  make = lambda h: optax.adam(h["learning_rate"], h["b1"], h["b2"], h["eps"])
  losses = _late_mean_losses(make, problem, noise, [base, scaled], [1, kappa])
  # measured: 0.96 (the linear rule, learning rate x4 with these betas: 1.88)
  assert losses[1] / losses[0] == pytest.approx(1.0, abs=0.1)


# --- a small network -------------------------------------------------------------------------


def test_sdes_track_optimizers_on_a_small_mlp():
  problem, x0 = theory.mlp_classification(hidden=(8,), num_examples=32)
  noise = theory.gaussian_noise(std=np.full(problem.dim, 0.05))
  run = dict(num_steps=60, num_paths=64, seed=0, record_every=20)
  eta = 0.004
  adam = theory.simulate_optimizer(optax.adam(eta, 0.98, 0.998), problem, noise, x0,
                                   learning_rate=eta, **run)
  sde = theory.simulate_sde(theory.adam_sde(problem, noise, eta, b1=0.98, b2=0.998), x0, **run)
  assert adam.mean()[-1] < 0.8 * adam.mean()[0]  # it trains
  # measured: 0.1%
  assert theory.relative_mean_error(adam, sde) < 0.03


# --- reproducibility, figures, errors --------------------------------------------------------


def test_simulation_is_seeded_and_paths_do_not_depend_on_their_number(problem, noise):
  run = dict(num_steps=40, record_every=10)
  sde = theory.signsgd_sde(problem, noise, 0.02)
  first = theory.simulate_sde(sde, X0, num_paths=64, seed=3, **run)
  again_fewer = theory.simulate_sde(sde, X0, num_paths=8, seed=3, **run)
  other = theory.simulate_sde(sde, X0, num_paths=64, seed=4, **run)
  np.testing.assert_array_equal(first.losses[:, :8], again_fewer.losses)
  assert np.abs(first.losses[-1] - other.losses[-1]).min() > 0
  np.testing.assert_allclose(first.times, 0.02 * np.array([0, 10, 20, 30, 40]), rtol=1e-6)


def test_comparison_figure_is_written(tmp_path):
  rng = np.random.default_rng(0)
  times = np.linspace(0.0, 2.0, 11)
  losses = [np.exp(-times)[:, None] * rng.lognormal(0.0, 0.3, (11, 50)) for _ in range(2)]
  curves = [theory.Trajectory(name, times, loss, np.zeros((50, 2)))
            for name, loss in zip(("optimizer", "SDE"), losses, strict=True)]
  path = tmp_path / "comparison.png"
  theory.plot_loss_comparison(curves, path, title="optimizer vs SDE")
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
  quantiles = curves[0].quantiles((0.1, 0.5, 0.9))
  assert quantiles.shape == (3, 11) and np.all(quantiles[0] <= quantiles[2])


def _bad_inputs():
  two = theory.quadratic(eigenvalues=[1.0, 2.0])
  noise2 = theory.gaussian_noise(std=[1.0, 1.0])
  correlated = theory.gaussian_noise(covariance=[[1.0, 0.5], [0.5, 1.0]])
  heavy = theory.student_t_noise([1.0, 1.0], df=3.0)
  return [
      (lambda: theory.quadratic(hessian=[[1.0, 2.0], [2.0, 1.0]]), "not positive semi-definite"),
      (lambda: theory.quadratic(hessian=[[1.0, 0.0], [1.0, 1.0]]), "hessian is not symmetric"),
      (lambda: theory.quadratic(hessian=np.ones(3)), "square"),
      (lambda: theory.quadratic(eigenvalues=[1.0, -0.1]), "not positive semi-definite"),
      (lambda: theory.gaussian_noise(covariance=[[1.0, 2.0], [2.0, 1.0]]),
       "covariance is not positive semi-definite"),
      (lambda: theory.sgd_sde(two, noise2, 0.0), "learning_rate=0.0 must be"),
      (lambda: theory.adam_sde(two, noise2, -0.1), "learning_rate=-0.1 must be"),
      (lambda: theory.simulate_optimizer(optax.sgd(0.1), two, noise2, [1.0, 1.0],
                                         learning_rate=0.0, num_steps=1, num_paths=1, seed=0),
       "learning_rate"),
      (lambda: theory.simulate_sde(theory.sgd_sde(two, noise2, 0.1), [1.0, 1.0, 1.0],
                                   num_steps=1, num_paths=1, seed=0),
       r"x0 has shape \(3,\) but the problem has dimension 2"),
      (lambda: theory.simulate_sde(theory.sgd_sde(two, noise2, 0.1), np.ones((2, 1)),
                                   num_steps=1, num_paths=1, seed=0), "x0 must be a 1-D array"),
      (lambda: theory.sgd_sde(two, theory.gaussian_noise(std=[1.0, 1.0, 1.0]), 0.1),
       "noise has dimension 3 but the problem has dimension 2"),
      (lambda: theory.signsgd_sde(two, correlated, 0.1), "covariance must be diagonal"),
      (lambda: theory.adam_sde(two, heavy, 0.1), "Gaussian noise only"),
      (lambda: theory.adam_sde(two, noise2, 0.1, b1=1.0), r"b1=1.0 must lie in \[0, 1\)"),
      (lambda: theory.student_t_noise([1.0], df=0.0), "df=0.0"),
      (lambda: theory.simulate_sde(theory.sgd_sde(two, noise2, 0.1), [1.0, 1.0], num_steps=10,
                                   num_paths=1, seed=0, record_every=3), "multiple of"),
      (lambda: theory.adam_scaled_hyperparameters(20, learning_rate=0.1, b1=0.9, b2=0.99,
                                                  eps=1e-8), "too large for b1"),
  ]


@pytest.mark.parametrize("index", range(len(_bad_inputs())))
def test_bad_inputs_raise_one_line_value_errors(index):
  call, message = _bad_inputs()[index]
  with pytest.raises(ValueError, match=message) as error:
    call()
  assert "\n" not in str(error.value)
