"""The SDE models of ``theory`` against the optax optimizers they describe, and closed forms.

Reference values come from outside the code under test: scipy's erf and Student-t CDF, closed
forms of SGD and of the linearised SignSGD SDE on quadratics, and the optax optimizers. Each
Monte-Carlo comparison on a quadratic runs >= 1000 paths; optimizer and SDE share a seed, so
their normal draws coincide (common random numbers) and the Monte-Carlo error of their
difference stays small. Each tolerance is derived next to its check from what is known about
the comparison: the Monte-Carlo error as ``SIGMAS`` standard errors computed from the paths the
test itself simulates; the approximation's own error from its order (one unit of its expansion
parameter, the step size times the fastest rate of the dynamics) or from a closed form; and
roundoff as the unit roundoff times the number of operations accumulated.
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
SCALING_X0 = 0.3  # where the batch-size runs start
U = 2.0**-24  # float32 unit roundoff, 6e-8
# Monte-Carlo allowance, in standard errors: a correct implementation lands outside it with
# probability 6e-7 per check (two-sided normal tail), about 1e-4 over the few hundred records
# this file checks.
SIGMAS = 5.0


@pytest.fixture(scope="module")
def problem():
  return theory.quadratic(eigenvalues=EIGENVALUES)


@pytest.fixture(scope="module")
def noise():
  return theory.gaussian_noise(std=np.ones(4))


def _runs(eta, horizon, num_paths, records=10, seed=0):
  num_steps = int(round(horizon / eta))
  return dict(num_steps=num_steps, num_paths=num_paths, seed=seed,
              record_every=num_steps // records)


# --- Monte-Carlo comparisons -----------------------------------------------------------------


def _gap_influence(reference, model):
  """Per record, the relative gap of mean losses (E f_model - E f_ref) / E f_ref, and each
  path's influence on it (the delta method for a ratio of means: the influences' standard
  deviation over sqrt(P) is the gap's standard error). Path p of both runs is one pair, so
  whatever correlation their shared draws leave is counted."""
  ref = np.asarray(reference.losses, np.float64)
  diff = np.asarray(model.losses, np.float64) - ref
  mean = ref.mean(axis=1)
  gap = diff.mean(axis=1) / mean
  return gap, (diff - gap[:, None] * ref) / mean[:, None]


def _stderr(influence):
  return influence.std(axis=-1, ddof=1) / np.sqrt(influence.shape[-1])


def _relative_gaps(reference, model):
  """The relative gap at each record and its Monte-Carlo standard error."""
  gap, influence = _gap_influence(reference, model)
  # theory's float32 summary of the same gaps: a float32 mean over P paths (pairwise
  # summation) is off by at most (log2 P + 8) u relative, the gap by twice that plus the
  # difference's and the quotient's own roundings
  worst = np.abs(gap).max()
  roundoff = (2 * (np.log2(influence.shape[1]) + 8) + 2) * U * (1 + worst)
  assert theory.relative_mean_error(reference, model) == pytest.approx(worst, rel=0,
                                                                       abs=roundoff)
  return gap, _stderr(influence)


def _assert_tracks(reference, model, bias):
  """At every record the relative gap is within ``bias`` plus SIGMAS standard errors."""
  gap, stderr = _relative_gaps(reference, model)
  allowed = bias + SIGMAS * stderr
  assert np.all(np.abs(gap) <= allowed), (
      f"{model.name} vs {reference.name}: relative gaps {gap}, allowed {allowed}")


def _assert_departs(reference, model, bias):
  """The criterion of ``_assert_tracks`` rejects the model: at some record the relative gap
  exceeds ``bias`` by more than SIGMAS standard errors."""
  gap, stderr = _relative_gaps(reference, model)
  assert np.any(np.abs(gap) > bias + SIGMAS * stderr), (
      f"{model.name} vs {reference.name}: relative gaps {gap} within {bias} + {SIGMAS} sigma")


def _mean_relative_gap(reference, model):
  """The relative gap averaged over the records after the first, and its standard error."""
  gap, influence = _gap_influence(reference, model)
  return gap[1:].mean(), _stderr(influence[1:].mean(axis=0))


def _signsgd_rate(std, eigenvalues=EIGENVALUES):
  """The SignSGD SDE's fastest rate under Gaussian noise: its drift's largest slope,
  sqrt(2/pi) lambda_max / sigma_min."""
  return np.sqrt(2.0 / np.pi) * max(eigenvalues) / float(np.min(std))


def _adaptive_step_bias(eta, rho1, rho2):
  """How far, relatively, one Euler step (dt = eta) of the RMSprop / Adam SDE is from the
  optimizer's step with the same normal draw; to first order the mean loss is off as much.

  The steps differ only in (i) Adam's bias corrections, 1 - e^{-rho k eta} for 1 - beta^k, at
  most eta rho / 2 apart relatively (at k = 1), which puts sqrt(gamma2) / gamma1 within
  eta rho1 / 2 + eta rho2 / 4; and (ii) V's increment, which takes E g^2 where the optimizer
  takes g^2: v's relative variance is at most 2 (1 - beta2) / (1 + beta2) < 2 eta rho2 (g^2's
  is at most 2), and it moves E[1 / sqrt(v)] by 3/8 of that (Jensen), under 3/4 eta rho2.
  """
  return eta * rho1 / 2 + eta * rho2 / 4 + 0.75 * eta * rho2


# --- drifts against scipy ------------------------------------------------------------------


def test_signsgd_drift_and_diffusion_are_the_erf_of_the_gradient_to_noise_ratio():
  problem = theory.quadratic(eigenvalues=[0.3, 1.0, 5.0])
  std = np.array([0.5, 1.0, 2.0])
  eta = 0.05
  sde = theory.signsgd_sde(problem, theory.gaussian_noise(std=std), eta)
  xi = np.array([1.0, -2.0, 0.5], np.float32)
  # float32 Psi = erf(h x / sqrt(2 sigma^2)): x, h, h x, sigma^2, the root and the quotient
  # round (6 u on the argument z, which moves erf by at most 6 u max z erf'(z) < 3 u), and erf
  # itself is good to a few u: 8 u in all
  psi_error = 8 * U
  for x in ([0.1, -0.2, 0.3], [4.0, -3.0, 0.01], [0.0, 0.0, 0.0]):
    grad = np.array([0.3, 1.0, 5.0]) * np.array(x)
    expected = scipy.special.erf(grad / (np.sqrt(2.0) * std))  # E[sign(g + sigma Z)]
    np.testing.assert_allclose(sde.drift(np.array(x, np.float32), 0.0), -expected, rtol=0,
                               atol=psi_error)
    # sqrt(eta (1 - Psi^2)) xi: Psi's error moves 1 - Psi^2 by 2 |Psi| psi_error, the root by
    # |Psi| psi_error / (1 - Psi^2) relative (large where |Psi| -> 1), plus its own 6 roundings
    want = -np.sqrt(eta * (1.0 - expected**2)) * xi
    allowed = np.abs(want) * (np.abs(expected) * psi_error / (1.0 - expected**2) + 6 * U)
    got = np.asarray(sde.diffusion(np.array(x, np.float32), 0.0, xi), np.float64)
    np.testing.assert_array_less(np.abs(got - want), allowed)


@pytest.mark.parametrize("df", [1.0, 2.5, 4.0, 30.0])
def test_student_t_signsgd_drift_is_the_t_cdf(df):
  problem = theory.quadratic(eigenvalues=[1.0, 1.0, 1.0, 1.0])
  scale = np.array([0.5, 1.0, 2.0, 0.1])
  sde = theory.signsgd_sde(problem, theory.student_t_noise(scale, df), 0.01)
  x = np.array([0.3, -2.0, 7.0, -0.05], np.float32)
  expected = 2.0 * scipy.stats.t.cdf(x / scale, df) - 1.0  # P(g > 0) - P(g < 0)
  # float32 betainc: a continued fraction of at most 200 terms (jax's float32 cap), each of
  # ~8 roundings, times exp(a log x + b log1p(-x) - log B(a, b)), whose exponent's terms
  # (|lgamma| < 30 for df <= 30) round by u each: (200 * 8 + 4 * 30) u, 1e-4
  np.testing.assert_allclose(sde.drift(x, 0.0), -expected, rtol=0, atol=(200 * 8 + 4 * 30) * U)


# --- SGD: closed forms -----------------------------------------------------------------------


def test_sgd_weak_error_is_first_order_in_closed_form(problem, noise):
  """Exact E f of discrete SGD vs exact E f of its SDE (an OU process): the gap is O(eta)."""
  etas = (0.04, 0.01)
  errors = []
  for eta in etas:
    steps = np.arange(0, int(3.0 / eta) + 1)
    discrete = theory.sgd_expected_loss(problem.hessian, noise.covariance, X0, eta, steps)
    sde = theory.sgd_sde_expected_loss(problem.hessian, noise.covariance, X0, eta, steps * eta)
    errors.append(np.max(np.abs(discrete - sde) / discrete))
  # Both closed forms are series in x_i = eta lambda_i: (1 - x)^(2t/eta) = e^{-2 lambda t}
  # e^{-lambda t (x + 2x^2/3 + ...)} and eta^2 / (1 - (1 - x)^2) = (eta / 2 lambda)(1 + x/2 +
  # x^2/4 + ...), so the relative gap is at most one unit of eta lambda_max, and its
  # second-order part at most x = eta lambda_max times its first: e(eta) / e(eta/4) lies in
  # 4 (1 -+ x) / (1 -+ x/4) about 4.
  x = etas[0] * max(EIGENVALUES)
  assert errors[0] < etas[0] * max(EIGENVALUES) and errors[1] < etas[1] * max(EIGENVALUES)
  assert 4.0 * (1.0 - x) / (1.0 - x / 4) < errors[0] / errors[1] < 4.0 * (1.0 + x) / (1.0 + x / 4)


def test_sgd_paths_match_their_closed_forms(problem, noise):
  eta, substeps = 0.02, 8
  run = _runs(eta, 2.4, num_paths=3000)
  sgd = theory.simulate_optimizer(optax.sgd(eta), problem, noise, X0, learning_rate=eta, **run)
  sde = theory.simulate_sde(theory.sgd_sde(problem, noise, eta), X0, substeps=substeps, **run)
  discrete = theory.sgd_expected_loss(problem.hessian, noise.covariance, X0, eta,
                                      sgd.times / eta)
  # Euler-Maruyama at dt = eta / 8 on this linear SDE is SGD with learning rate dt and noise
  # covariance (eta / dt) Sigma (the substeps' draws are i.i.d. normal): its exact mean is
  # that closed form
  dt = eta / substeps
  euler = theory.sgd_expected_loss(problem.hessian, (eta / dt) * np.asarray(noise.covariance),
                                   X0, dt, sde.times / dt)
  ou = theory.sgd_sde_expected_loss(problem.hessian, noise.covariance, X0, eta, sde.times)
  # paths against the exact mean of what they simulate: Monte-Carlo error, plus float32
  # roundoff, ~4 u on x per step (2x that on the loss) summed over the steps
  roundoff = lambda num_steps, exact: 8 * num_steps * U * exact
  for paths, exact, num_steps in ((sgd, discrete, run["num_steps"]),
                                  (sde, euler, substeps * run["num_steps"])):
    stderr = paths.losses.std(axis=1, ddof=1) / np.sqrt(paths.losses.shape[1])
    np.testing.assert_array_less(np.abs(paths.mean() - exact),
                                 SIGMAS * stderr + roundoff(num_steps, exact))
  # sharper, their difference: path p of both shares its draws, which leaves a small
  # Monte-Carlo error on the paired differences
  paired = np.asarray(sde.losses, np.float64) - np.asarray(sgd.losses, np.float64)
  stderr = paired.std(axis=1, ddof=1) / np.sqrt(paired.shape[1])
  np.testing.assert_array_less(
      np.abs(paired.mean(axis=1) - (euler - discrete)),
      SIGMAS * stderr + roundoff((1 + substeps) * run["num_steps"], np.maximum(euler, discrete)))
  # and the Euler scheme is a weak first-order approximation of the OU process: within one
  # unit of dt lambda_max
  assert np.max(np.abs(euler - ou) / ou) < dt * max(EIGENVALUES)


# --- optimizer vs SDE along the trajectory, and weak order one -----------------------------


def _signsgd(problem, noise, eta):
  """SignSGD, its SDE, the SDE's fastest rate r, and the one-step SDE's bias allowance.

  An Euler step of dt = eta has the optimizer's conditional mean and covariance exactly
  (E sign = Psi, Var sign = 1 - Psi^2): the steps' laws differ from the third moment on, so
  the one-step SDE's gap is second order, (eta r)^2.
  """
  rate = _signsgd_rate(np.sqrt(np.asarray(noise.variance())))
  return optax.sign_sgd(eta), theory.signsgd_sde(problem, noise, eta), rate, (eta * rate)**2


def _adam(problem, noise, eta):
  """Adam with rho1 = 10, rho2 = 1, its SDE, r = rho1 (its fastest rate: the Hessian's
  preconditioned rates are <= lambda_max / sigma = 4), and ``_adaptive_step_bias``."""
  rho1, rho2 = 10.0, 1.0
  b1, b2 = 1.0 - rho1 * eta, 1.0 - rho2 * eta
  return (optax.adam(eta, b1, b2, eps=1e-8),
          theory.adam_sde(problem, noise, eta, b1=b1, b2=b2, eps=1e-8), rho1,
          _adaptive_step_bias(eta, rho1, rho2))


@pytest.mark.parametrize(
    "make, etas, horizon, num_paths, order_from",
    [(_signsgd, (0.08, 0.02), 2.4, 2000, "one_step"),
     (_adam, (0.01, 0.0025), 1.2, 1000, "optimizer")],
    ids=["signsgd", "adam"])
def test_sde_tracks_the_optimizer_and_the_gap_is_first_order(
    problem, noise, make, etas, horizon, num_paths, order_from):
  """The order of the gap is read where its Monte-Carlo error is small: on Adam's
  optimizer-vs-SDE gap itself; SignSGD's sign steps decorrelate from the SDE's Gaussian ones
  near the floor, leaving that gap's error as large as the gap at eta / 4, so its order is read
  on the SDE's own discretisation gap (one Euler step per optimizer step against four), the
  optimizer entering through the one-step SDE's second-order bound."""
  gaps = []
  for seed, eta in enumerate(etas):  # a seed per step size: the two estimates are independent
    optimizer, sde, rate, one_step_bias = make(problem, noise, eta)
    run = _runs(eta, horizon, num_paths=num_paths, seed=seed)
    discrete = theory.simulate_optimizer(optimizer, problem, noise, X0, learning_rate=eta, **run)
    refined = theory.simulate_sde(sde, X0, substeps=4, **run)
    # the SDE itself (4 substeps) is a weak first-order approximation: one unit of eta r
    _assert_tracks(discrete, refined, eta * rate)
    if order_from == "one_step" or eta == etas[-1]:
      one_step = theory.simulate_sde(sde, X0, **run)
      # the SDE as simulated (one Euler–Maruyama step per optimizer step) tracks the optimizer
      _assert_tracks(discrete, one_step, one_step_bias)
    gaps.append(_mean_relative_gap(one_step if order_from == "one_step" else discrete, refined))
  # A first-order gap has order log4(gap(eta) / gap(eta / 4)) = 1, not 0 (a gap that does not
  # shrink) nor 2. The band runs halfway to each, less SIGMAS standard errors of the order (the
  # two gaps' relative errors in quadrature, over log 4).
  (gap, gap_se), (quarter, quarter_se) = gaps
  order = np.log(gap / quarter) / np.log(4.0)
  order_se = np.hypot(gap_se / gap, quarter_se / quarter) / np.log(4.0)
  assert 0.5 + SIGMAS * order_se < order < 1.5 - SIGMAS * order_se, (order, order_se)


def test_adamw_sde_tracks_adamw(problem, noise):
  eta, rho1, rho2 = 0.0025, 10.0, 1.0
  b1, b2 = 1.0 - rho1 * eta, 1.0 - rho2 * eta
  run = _runs(eta, 3.0, num_paths=1000)
  adamw = theory.simulate_optimizer(optax.adamw(eta, b1, b2, 1e-8, weight_decay=0.5), problem,
                                    noise, X0, learning_rate=eta, **run)
  sde = theory.simulate_sde(
      theory.adam_sde(problem, noise, eta, b1=b1, b2=b2, eps=1e-8, weight_decay=0.5), X0, **run)
  _assert_tracks(adamw, sde, _adaptive_step_bias(eta, rho1, rho2))
  # The decay pulls it down to the noise floor, where the relative gap is most sensitive:
  # from 15 to within a few times Adam's floor without the decay, eta sum(sigma_i) / 4 (v ~
  # sigma^2 near the minimum; the decay lowers it).
  floor = eta * np.sqrt(np.asarray(noise.variance())).sum() / 4
  assert adamw.mean()[-1] < 4 * floor


def _noise_free_adam(hessian_diagonal, x0, eta, b1, b2, eps, num_steps, corrections):
  """Noise-free Adam in float64, with the bias corrections (c1, c2) = ``corrections(k)``."""
  x, m, v = np.array(x0, np.float64), np.zeros(len(x0)), np.zeros(len(x0))
  for k in range(1, num_steps + 1):
    g = hessian_diagonal * x
    m = b1 * m + (1.0 - b1) * g
    v = b2 * v + (1.0 - b2) * g**2
    c1, c2 = corrections(k)
    x = x - eta * (m / c1) / (np.sqrt(v / c2) + eps)
  return x


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
  recursion = lambda corrections: _noise_free_adam(np.array([0.5, 4.0]), [1.0, 1.0], eta, b1,
                                                   b2, 1e-8, run["num_steps"], corrections)
  power = recursion(lambda k: (1.0 - b1**k, 1.0 - b2**k))  # optax's
  rho1, rho2 = (1.0 - b1) / eta, (1.0 - b2) / eta  # the SDE's, at the end of step k
  exponential = recursion(lambda k: (-np.expm1(-rho1 * k * eta), -np.expm1(-rho2 * k * eta)))
  # float32 against float64: a step rounds x (|x| <= 1) once and its update (size eta) through
  # ~16 operations, under 2 u; allow 16 u a step for what earlier errors carry, over 100 steps
  atol = 16 * run["num_steps"] * U
  np.testing.assert_allclose(adam.final_params[0], power, rtol=0, atol=atol)
  np.testing.assert_allclose(sde.final_params[0], exponential, rtol=0, atol=atol)
  # the corrections alone part the two by more than that, so an SDE with Adam's own
  # corrections would fail; and the SDE follows Adam up to that part
  assert np.min(np.abs(exponential - power)) > atol
  np.testing.assert_allclose(sde.final_params, adam.final_params, rtol=0,
                             atol=np.max(np.abs(exponential - power)) + 2 * atol)


def test_rmsprop_sde_tracks_optax_rmsprop_with_its_eps_placement(problem, noise):
  eps_in_sqrt = True  # optax's default: g / sqrt(v + eps)
  eta, eps = 0.01, 0.5  # a large eps, so that where optax puts it matters
  rho = 1.0
  decay = 1.0 - rho * eta
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
  # one criterion, no bias corrections: it accepts the matched SDE and rejects the swapped one
  bias = _adaptive_step_bias(eta, 0.0, rho)
  _assert_tracks(rmsprop, matched, bias)
  _assert_departs(rmsprop, swapped, bias)


def test_rmspropw_sde_tracks_decoupled_weight_decay(problem, noise):
  eta, rho = 0.01, 1.0
  decay = 1.0 - rho * eta
  rmspropw = optax.chain(optax.scale_by_rms(decay, 1e-8, 1.0, eps_in_sqrt=False),
                         optax.add_decayed_weights(0.5), optax.scale_by_learning_rate(eta))
  run = _runs(eta, 3.0, num_paths=1000)
  discrete = theory.simulate_optimizer(rmspropw, problem, noise, X0, learning_rate=eta, **run)
  sde = theory.simulate_sde(theory.rmsprop_sde(problem, noise, eta, decay=decay, eps=1e-8,
                                               initial_scale=1.0, eps_in_sqrt=False,
                                               weight_decay=0.5), X0, **run)
  _assert_tracks(discrete, sde, _adaptive_step_bias(eta, 0.0, rho))


# --- heavy tails -----------------------------------------------------------------------------


@pytest.mark.slow  # compiles several programs: seconds on two cores
def test_student_t_sde_tracks_signsgd_under_heavy_tails_and_the_gaussian_sde_does_not(problem):
  df = 3.0
  heavy = theory.student_t_noise(np.ones(4), df=df)
  # the Gaussian model a practitioner would fit: the t noise's own covariance, 3 = nu/(nu-2)
  gaussian = theory.gaussian_noise(std=np.sqrt(np.asarray(heavy.variance())))
  eta = 0.02
  run = _runs(eta, 2.4, num_paths=3000)
  signsgd = theory.simulate_optimizer(optax.sign_sgd(eta), problem, heavy, X0,
                                      learning_rate=eta, **run)
  student = theory.simulate_sde(theory.signsgd_sde(problem, heavy, eta), X0, **run)
  gauss = theory.simulate_sde(theory.signsgd_sde(problem, gaussian, eta), X0, **run)
  # The Euler step matches SignSGD's conditional mean and covariance under any noise, so the
  # bias is second order, (eta r)^2, with r the t drift's largest slope 2 p_nu(0) lambda_max / s
  # (s = 1). The t draws are not the SDE's normal ones: the standard error counts both runs'.
  rate = 2.0 * scipy.stats.t.pdf(0.0, df) * max(EIGENVALUES) / 1.0
  bias = (eta * rate)**2
  _assert_tracks(signsgd, student, bias)
  _assert_departs(signsgd, gauss, bias)


# --- SignSGD: stationary law, phases ---------------------------------------------------------


def _signsgd_nonlinearity(eta, std):
  """Relative excess of SignSGD's stationary loss over the linearised SDE's, to first order.

  The chain's second moment obeys E x'^2 = E x^2 - 2 eta E[x Psi(x)] + eta^2, whose fixed point
  is the linearised SDE's stationary variance S = eta / (2a), a = sqrt(2/pi) lambda / sigma,
  exactly when Psi = a x. Erf's cubic term, Psi = a x (1 - lambda^2 x^2 / (6 sigma^2)), raises
  it by lambda^2 S / (2 sigma^2) = sqrt(pi/2) eta lambda / (4 sigma) (Gaussian fourth moment),
  for every coordinate, each carrying the same share of the loss.
  """
  return float(np.mean(np.sqrt(np.pi / 2.0) * eta * np.array(EIGENVALUES) / (4.0 * std)))


def test_stationary_losses_signsgd_linear_in_noise_sgd_quadratic(problem):
  """From the minimum, SignSGD's loss settles at the linearised SDE's value, linear in sigma."""
  eta = 0.01
  run = dict(num_steps=1200, num_paths=2000, seed=0, record_every=10)
  late = slice(80, None)  # t >= 8: slowest variance relaxation rate 2 sqrt(2/pi) 0.5 / sigma
  for sigma in (0.5, 2.0):
    noise = theory.gaussian_noise(std=np.full(4, sigma))
    signsgd = theory.simulate_optimizer(optax.sign_sgd(eta), problem, noise, np.zeros(4),
                                        learning_rate=eta, **run)
    expected = eta * np.sqrt(np.pi / 2) * 4 * sigma / 4  # eta sqrt(pi/2) sum(sigma) / 4, by hand
    # float64, a handful of operations
    assert theory.signsgd_stationary_loss(np.full(4, sigma), eta) == (
        pytest.approx(expected, rel=1e-12))
    # from x0 = 0 the linearised variance is S (1 - e^{-2 a t}) (the chain's 1 - (1 - 2 eta a)^k
    # is nearer 1): the window lacks at most this share, every coordinate weighing the same
    rates = np.sqrt(2.0 / np.pi) * np.array(EIGENVALUES) / sigma
    deficit = np.exp(-2.0 * rates[:, None] * signsgd.times[late]).mean()
    per_path = np.asarray(signsgd.losses[late], np.float64).mean(axis=0)  # independent
    stderr = per_path.std(ddof=1) / np.sqrt(per_path.size)
    assert abs(per_path.mean() - expected) <= (
        expected * (_signsgd_nonlinearity(eta, sigma) + deficit) + SIGMAS * stderr)
  # SGD's is eta tr(Sigma) / 4, quadratic in sigma (simulated SGD is checked against its closed
  # form above): at sigma = 0.5 it is 0.0025 (SignSGD 0.0063), at sigma = 2 0.04 (SignSGD 0.025)
  for sigma, expected in ((0.5, 0.0025), (2.0, 0.04)):
    covariance = theory.gaussian_noise(std=np.full(4, sigma)).covariance
    assert theory.sgd_stationary_loss(covariance, eta) == pytest.approx(expected, rel=1e-12)


def test_signsgd_stationary_loss_holds_for_a_rotated_hessian():
  """H and the preconditioner do not commute: against scipy's continuous Lyapunov solver."""
  problem = theory.quadratic(eigenvalues=[0.5, 3.0, 1.0], rotation_seed=1)
  assert np.abs(problem.hessian - np.diag(np.diagonal(problem.hessian))).max() > 0.3
  std = np.array([0.5, 2.0, 1.0])
  eta = 0.01
  drift = np.sqrt(2.0 / np.pi) * problem.hessian / std[:, None]  # A in dX = -A X dt + sqrt(eta) dW
  covariance = scipy.linalg.solve_continuous_lyapunov(drift, eta * np.eye(3))  # A S + S A^T
  # float64 (u = 1.1e-16): a 3x3 Schur solve, some hundred operations, cond(A) ~ 20
  assert theory.signsgd_stationary_loss(std, eta) == pytest.approx(
      0.5 * np.trace(problem.hessian @ covariance), rel=1e-12)


def test_signsgd_phases_sign_descent_far_preconditioned_sgd_near():
  # One run, four coordinates that do not interact (diagonal Hessian and noise: each sign sees
  # its own coordinate only): two far from the minimum, two near it.
  eta, num_steps = 0.01, 50
  t = num_steps * eta
  curvature = np.array([1.0, 10.0, 1.0, 1.0])
  std = np.array([0.1, 0.1, 0.5, 2.0])
  x0 = np.array([3.0, 3.0, 0.1, 0.1])
  final = theory.simulate_optimizer(optax.sign_sgd(eta), theory.quadratic(eigenvalues=curvature),
                                    theory.gaussian_noise(std=std), x0, learning_rate=eta,
                                    num_steps=num_steps, num_paths=8000, seed=0).final_params
  # far from the minimum (|grad| >> sigma): every coordinate moves at speed 1, whatever its
  # curvature (gradient flow would leave 3 e^{-0.5} = 1.8 and 3 e^{-5} = 0.02). |grad| / sigma
  # >= 2.5 / 0.1 = 25 all along: a wrong sign has probability < 1e-100, so every path takes the
  # same steps; float32 rounds x (|x| <= 3) once a step, and eta once
  far = final[:, :2]
  assert np.all(far == far[0])
  np.testing.assert_allclose(far[0], x0[:2] - t, rtol=0, atol=num_steps * (3.0 + eta) * U)
  # near the minimum (|grad| << sigma): E x_i decays at the rate sqrt(2/pi) h_i / sigma_i, set
  # by the noise; equal curvatures, 4x different noise, 4x different rates (SGD: equal rates)
  near, x0, std = final[:, 2:].astype(np.float64), x0[2:], std[2:]
  rates = np.sqrt(2.0 / np.pi) * curvature[2:] / std
  expected = x0 * np.exp(-rates * t)  # [0.045, 0.082]; SGD: 0.061 both
  # with a linear Psi the chain's mean is x0 (1 - eta a)^k exactly: that far from e^{-a t} is
  # discretisation; erf's cubic term slows the drift by at most (x0^2 + 3 eta t) / (6 sigma^2)
  # relative (E x^3 ~ m^3 + 3 m Var x, Var x <= eta t), delaying the decay by that times a t
  discretisation = np.abs(x0 * (1.0 - eta * rates)**num_steps - expected)
  nonlinearity = expected * rates * t * (x0**2 + 3.0 * eta * t) / (6.0 * std**2)
  stderr = near.std(axis=0, ddof=1) / np.sqrt(near.shape[0])
  np.testing.assert_array_less(np.abs(near.mean(axis=0) - expected),
                               discretisation + nonlinearity + SIGMAS * stderr)


# --- batch-size scaling rules ----------------------------------------------------------------


def _late_mean_losses(make_optimizer, problem, per_sample_noise, hyperparameters, kappas,
                      num_paths=2000, records=100):
  """Mean loss over the last fifth of 1200 samples at batch kappa with its hyperparameters, its
  standard error (from the per-path means over the window), and the window's first SDE time;
  a seed per run, so the runs are independent."""
  means, stderrs, starts = [], [], []
  for seed, (hyper, kappa) in enumerate(zip(hyperparameters, kappas, strict=True)):
    num_steps = 1200 // kappa
    run = theory.simulate_optimizer(
        make_optimizer(hyper), problem, per_sample_noise.for_batch_size(kappa),
        np.full(4, SCALING_X0), learning_rate=hyper["learning_rate"], num_steps=num_steps,
        num_paths=num_paths, seed=seed, record_every=num_steps // records)
    window = np.asarray(run.losses[-(records // 5):], np.float64).mean(axis=0)
    means.append(window.mean())
    stderrs.append(window.std(ddof=1) / np.sqrt(num_paths))
    starts.append(run.times[-(records // 5)])
  return np.array(means), np.array(stderrs), np.array(starts)


def _ratio_stderr(means, stderrs, i):
  """Standard error of means[i] / means[0], for independent runs."""
  return means[i] / means[0] * np.hypot(stderrs[i] / means[i], stderrs[0] / means[0])


def test_signsgd_square_root_scaling_rule_keeps_the_stationary_loss(problem, noise):
  eta, kappa = 0.01, 4
  base = dict(learning_rate=eta)
  sqrt_rule = dict(learning_rate=theory.signsgd_scaled_learning_rate(eta, kappa))
  assert sqrt_rule["learning_rate"] == pytest.approx(0.02, rel=1e-12)  # float64
  linear_rule = dict(learning_rate=kappa * eta)
  rules, kappas = [base, sqrt_rule, linear_rule], [1, kappa, kappa]
  losses, stderrs, starts = _late_mean_losses(lambda h: optax.sign_sgd(h["learning_rate"]),
                                              problem, noise, rules, kappas)
  # Each run departs from the linearised SDE's stationary loss by erf's cubic term and by what
  # is left of the transient from SCALING_X0 (linearised: the squared mean and the variance
  # relax at the rate 2a)
  departures = []
  for hyper, kappa_i, start in zip(rules, kappas, starts, strict=True):
    std = 1.0 / np.sqrt(kappa_i)
    rates = np.sqrt(2.0 / np.pi) * np.array(EIGENVALUES) / std
    stationary = hyper["learning_rate"] / (2.0 * rates)
    transient = abs(np.sum(np.array(EIGENVALUES) * (SCALING_X0**2 - stationary)
                           * np.exp(-2.0 * rates * start)) / np.sum(np.array(EIGENVALUES)
                                                                    * stationary))
    departures.append(_signsgd_nonlinearity(hyper["learning_rate"], std) + transient)
  # the SDE keeps the loss under the square-root rule and doubles it (sqrt(kappa)) under the
  # linear one; to first order the ratio moves by the two runs' departures
  assert abs(losses[1] / losses[0] - 1.0) <= (
      departures[0] + departures[1] + SIGMAS * _ratio_stderr(losses, stderrs, 1))
  assert abs(losses[2] / losses[0] - 2.0) <= (
      2.0 * (departures[0] + departures[2]) + SIGMAS * _ratio_stderr(losses, stderrs, 2))


def _frozen_v_adam_stationary_loss(eta, b1, std):
  """Adam's stationary E f near the minimum with v frozen at sigma_B^2 and the bias corrections
  at 1: per coordinate the linear recursion m' = b1 m + (1 - b1)(lambda x + sigma_B xi),
  x' = x - eta m' / sigma_B, whose stationary covariance solves a discrete Lyapunov equation."""
  loss, c = 0.0, 1.0 - b1
  for lam in EIGENVALUES:
    transition = np.array([[1.0 - eta * c * lam / std, -eta * b1 / std], [c * lam, b1]])
    kick = np.array([[-eta * c], [c * std]])
    loss += 0.5 * lam * scipy.linalg.solve_discrete_lyapunov(transition, kick @ kick.T)[0, 0]
  return loss


def test_adam_square_root_scaling_rule_keeps_the_stationary_loss(problem, noise):
  kappa = 4
  base = dict(learning_rate=0.005, b1=0.95, b2=0.995, eps=1e-8)
  scaled = theory.adam_scaled_hyperparameters(kappa, **base)
  assert scaled == pytest.approx(dict(learning_rate=0.01, b1=0.8, b2=0.98, eps=5e-9,
                                      weight_decay=0.0), rel=1e-12)  # float64
  make = lambda h: optax.adam(h["learning_rate"], h["b1"], h["b2"], h["eps"])
  losses, stderrs, _ = _late_mean_losses(make, problem, noise, [base, scaled], [1, kappa],
                                         num_paths=3000)
  # With v frozen at sigma_B^2 the discrete runs' loss ratio is this closed form (the rule up to
  # second order). The windows are the same SDE time, so the transients cancel. Left out, per
  # run: v's gradient part, (lambda x)^2 ~ eta lambda sigma_B / 2 against sigma_B^2, slows the
  # step by eta lambda / (4 sigma_B); v's fluctuation, relative variance <= 2 (1 - b2) / (1 + b2),
  # moves it by less than that (Jensen).
  runs = ((base, 1.0), (scaled, 1.0 / np.sqrt(kappa)))  # (hyperparameters, sigma_B)
  predicted = (_frozen_v_adam_stationary_loss(scaled["learning_rate"], scaled["b1"], runs[1][1])
               / _frozen_v_adam_stationary_loss(base["learning_rate"], base["b1"], runs[0][1]))
  left_out = sum(h["learning_rate"] * max(EIGENVALUES) / (4.0 * std)
                 + 2.0 * (1.0 - h["b2"]) / (1.0 + h["b2"]) for h, std in runs)
  assert abs(losses[1] / losses[0] - 1.0) <= (
      abs(predicted - 1.0) + left_out + SIGMAS * _ratio_stderr(losses, stderrs, 1))


# --- a small network -------------------------------------------------------------------------


@pytest.mark.slow  # compiles several programs: seconds on two cores
def test_sdes_track_optimizers_on_a_small_mlp():
  problem, x0 = theory.mlp_classification(hidden=(8,), num_examples=32)
  noise = theory.gaussian_noise(std=np.full(problem.dim, 0.05))
  run = dict(num_steps=60, num_paths=64, seed=0, record_every=20)
  eta, b1, b2 = 0.004, 0.98, 0.998
  adam = theory.simulate_optimizer(optax.adam(eta, b1, b2), problem, noise, x0,
                                   learning_rate=eta, **run)
  sde = theory.simulate_sde(theory.adam_sde(problem, noise, eta, b1=b1, b2=b2), x0, **run)
  assert adam.mean()[-1] < 0.8 * adam.mean()[0]  # it trains
  _assert_tracks(adam, sde, _adaptive_step_bias(eta, (1.0 - b1) / eta, (1.0 - b2) / eta))


# --- reproducibility, figures, errors --------------------------------------------------------


def test_simulation_is_seeded_and_paths_do_not_depend_on_their_number(problem, noise):
  run = dict(num_steps=40, record_every=10)
  sde = theory.signsgd_sde(problem, noise, 0.02)
  first = theory.simulate_sde(sde, X0, num_paths=64, seed=3, **run)
  again_fewer = theory.simulate_sde(sde, X0, num_paths=8, seed=3, **run)
  other = theory.simulate_sde(sde, X0, num_paths=64, seed=4, **run)
  np.testing.assert_array_equal(first.losses[:, :8], again_fewer.losses)
  assert np.abs(first.losses[-1] - other.losses[-1]).min() > 0
  # float64 products eta k: within a float64 rounding or two
  np.testing.assert_allclose(first.times, 0.02 * np.array([0, 10, 20, 30, 40]), rtol=1e-15)


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
