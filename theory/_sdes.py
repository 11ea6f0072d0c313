r"""SDE models of SGD, SignSGD, RMSprop(W) and Adam(W), in the time of Compagnoni et al. (2025).

Time is $t = k\eta$ after $k$ optimizer steps of learning rate $\eta$; the averaging constants of
the adaptive methods are written $\beta_i = 1 - \eta\rho_i$, so that $\rho_i = (1-\beta_i)/\eta$
stays fixed as $\eta \to 0$. Each constructor takes the optimizer's own (optax) hyperparameters
and converts them. The gradient noise $Z$ (``theory.gaussian_noise`` / ``student_t_noise``)
has covariance $\Sigma$, constant in $x$.

An ``SDE`` carries its drift $b(Y, t)$, its diffusion applied to a standard normal draw
$\sigma(Y, t)\,\xi$, and one Euler–Maruyama step of size $dt$,
$Y \leftarrow Y + b(Y, t)\,dt + \sigma(Y, t)\,\xi\sqrt{dt}$. ``theory.simulate_sde`` runs the
step over many paths. The diffusions are signed so that $\xi$ plays the part of the gradient
noise's normal draw (the parameters move against it, as in $x - \eta(\nabla f + Z)$): $W$ and
$-W$ have one law, and the sign makes an optimizer and its SDE run with one seed move together.

Each drift is the optimizer's expected one-step update divided by $\eta$, and each diffusion
matches the covariance of the update's noise, to first order in $\eta$ (weak order one);
``tests/test_theory.py`` checks every SDE against the optax optimizer it models.

References:
  Compagnoni, Liu, Islamov, Proske, Orvieto, Lucchi, *Adaptive Methods through the Lens of
  SDEs: Theoretical Insights on the Role of Noise*, ICLR 2025 (arXiv 2411.15958).
  Malladi, Lyu, Panigrahi, Arora, *On the SDEs and Scaling Rules for Adaptive Gradient
  Algorithms*, NeurIPS 2022 (arXiv 2205.10287).
"""

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from theory import _noise, _validation
from theory._problems import Problem


class SDE(NamedTuple):
  """An SDE for an optimizer's state $Y$ (the parameters $X$ and the method's moments).

  Attributes:
    name: a short label for plots.
    problem: the loss it runs on.
    learning_rate: the $\\eta$ of the optimizer it models; simulation time is $t = k\\eta$.
    init: ``x0 -> Y0``.
    drift: ``(Y, t) -> b(Y, t)``, with the structure of ``Y``.
    diffusion: ``(Y, t, xi) -> sigma(Y, t) xi`` for ``xi ~ N(0, I_d)``, structure of ``Y``.
    step: ``(Y, t, dt, xi) -> Y`` after one Euler–Maruyama step.
    position: ``Y -> X``, the parameters.
  """

  name: str
  problem: Problem
  learning_rate: float
  init: Callable[[jax.Array], Any]
  drift: Callable[[Any, jax.Array], Any]
  diffusion: Callable[[Any, jax.Array, jax.Array], Any]
  step: Callable[[Any, jax.Array, jax.Array, jax.Array], Any]
  position: Callable[[Any], jax.Array]


def _euler_maruyama(drift, diffusion):
  def step(state, t, dt, xi):
    return jax.tree.map(lambda y, b, s: y + b * dt + s * jnp.sqrt(dt),
                        state, drift(state, t), diffusion(state, t, xi))
  return step


def _check(problem: Problem, noise, learning_rate) -> float:
  if not isinstance(problem, Problem):
    raise ValueError(f"problem must be a theory.Problem, got {type(problem).__name__}")
  _noise.check_noise(noise, problem.dim)
  return _validation.check_learning_rate(learning_rate)


def _require_gaussian(name: str, noise) -> None:
  if not isinstance(noise, _noise.GaussianNoise):
    raise ValueError(f"{name} models Gaussian noise only, got {type(noise).__name__}; "
                     "signsgd_sde has a Student-t form")


def sgd_sde(problem: Problem, noise: _noise.GaussianNoise, learning_rate: float) -> SDE:
  r"""SGD, $x_{k+1} = x_k - \eta g_k$: the SDE of Li, Tai and E (2017).

  .. math::
    dX_t = -\nabla f(X_t)\,dt + \sqrt{\eta}\,\Sigma^{1/2}\,dW_t .

  With one Euler–Maruyama step per optimizer step ($dt = \eta$) this *is* SGD with Gaussian
  noise; compare at ``substeps > 1`` or with ``theory.sgd_sde_expected_loss`` (closed form).
  """
  eta = _check(problem, noise, learning_rate)
  _require_gaussian("sgd_sde", noise)
  drift = lambda x, t: -problem.grad(x)
  diffusion = lambda x, t, xi: -math.sqrt(eta) * (noise.sqrt_covariance @ xi)
  return SDE("SGD SDE", problem, eta, lambda x0: x0, drift, diffusion,
             _euler_maruyama(drift, diffusion), lambda x: x)


def signsgd_sde(problem: Problem, noise, learning_rate: float) -> SDE:
  r"""SignSGD, $x_{k+1} = x_k - \eta\,\mathrm{sign}(g_k)$ (Compagnoni et al. 2025).

  The drift is the expected sign of the noisy gradient and the diffusion its covariance
  (coordinates of the noise are independent, so the signs are too):

  .. math::
    dX_t = -\Psi(X_t)\,dt + \sqrt{\eta}\,\sqrt{I - \mathrm{diag}(\Psi(X_t))^2}\,dW_t,
    \qquad \Psi(x) = E[\mathrm{sign}(\nabla f(x) + Z)].

  Gaussian noise $Z \sim \mathcal N(0, \Sigma)$, $\Sigma$ diagonal:
  $\Psi(x) = \mathrm{Erf}\big(\Sigma^{-1/2}\nabla f(x)/\sqrt2\big)$. Student-t noise
  $Z_i = s_i T_i$, $T_i \sim t_\nu$: $\Psi(x) = 2F_\nu(\nabla f(x)/s) - 1$, $F_\nu$ the CDF of
  $t_\nu$. Passing a ``GaussianNoise`` of the t-noise's covariance gives the Gaussian-model SDE
  that mis-describes heavy tails.

  Phases: where $|\partial_i f| \gg \sigma_i$, $\Psi_i \approx \mathrm{sign}(\partial_i f)$
  (sign descent, speed 1 per unit time, no diffusion); where $|\partial_i f| \ll \sigma_i$,
  $\Psi \approx \sqrt{2/\pi}\,\Sigma^{-1/2}\nabla f$ and the SDE is SGD preconditioned by
  $\sqrt{2/\pi}\,\Sigma^{-1/2}$ with diffusion $\sqrt\eta\,I$, whatever the size of the noise.

  Raises:
    ValueError: a Gaussian noise with a non-diagonal covariance or a zero variance (the
      expected sign of correlated coordinates is not this SDE's).
  """
  eta = _check(problem, noise, learning_rate)
  if not noise.is_diagonal:
    raise ValueError("signsgd_sde needs independent noise coordinates: the covariance must be "
                     "diagonal")
  if bool(jnp.any(noise.variance() <= 0)):
    raise ValueError("signsgd_sde needs a noise variance > 0 in every coordinate")
  spread = lambda psi: math.sqrt(eta) * jnp.sqrt(jnp.clip(1.0 - psi**2, 0.0, None))
  drift = lambda x, t: -noise.expected_sign(problem.grad(x))
  diffusion = lambda x, t, xi: -spread(noise.expected_sign(problem.grad(x))) * xi

  def step(x, t, dt, xi):
    psi = noise.expected_sign(problem.grad(x))
    return x - psi * dt - spread(psi) * xi * jnp.sqrt(dt)

  name = "SignSGD SDE (Student-t)" if isinstance(noise, _noise.StudentTNoise) else "SignSGD SDE"
  return SDE(name, problem, eta, lambda x0: x0, drift, diffusion, step, lambda x: x)


class RMSpropState(NamedTuple):
  x: jax.Array
  v: jax.Array


def _preconditioner(v, eps, eps_in_sqrt):
  return jnp.sqrt(v + eps) if eps_in_sqrt else jnp.sqrt(v) + eps


def _rmsprop(name, problem, noise, learning_rate, decay, eps, initial_scale, eps_in_sqrt,
             weight_decay, gradient_in_second_moment):
  eta = _check(problem, noise, learning_rate)
  _require_gaussian("rmsprop_sde" if gradient_in_second_moment else "malladi_rmsprop_sde", noise)
  decay = _validation.check_decay("decay", decay)
  eps = _validation.check_nonnegative("eps", eps)
  initial_scale = _validation.check_nonnegative("initial_scale", initial_scale)
  weight_decay = _validation.check_nonnegative("weight_decay", weight_decay)
  rho = (1.0 - decay) / eta
  variance = noise.variance()

  def v_drift(g, v):
    second_moment = g**2 + variance if gradient_in_second_moment else variance
    return rho * (second_moment - v)

  def x_drift(x, g, v):
    return -g / _preconditioner(v, eps, eps_in_sqrt) - weight_decay * x

  def drift(state, t):
    g = problem.grad(state.x)
    return RMSpropState(x_drift(state.x, g, state.v), v_drift(g, state.v))

  def diffusion(state, t, xi):
    noise_x = -math.sqrt(eta) * (noise.sqrt_covariance @ xi) / _preconditioner(
        state.v, eps, eps_in_sqrt)
    return RMSpropState(noise_x, jnp.zeros_like(state.v))

  def step(state, t, dt, xi):
    # V's increment is deterministic given X: apply it first and let X read the new V, as
    # the discrete method divides by v_{k+1}. A first-order change that keeps the first step
    # finite when V_0 = 0.
    g = problem.grad(state.x)
    v = state.v + dt * v_drift(g, state.v)
    x = (state.x + dt * x_drift(state.x, g, v)
         - jnp.sqrt(dt) * math.sqrt(eta) * (noise.sqrt_covariance @ xi)
         / _preconditioner(v, eps, eps_in_sqrt))
    return RMSpropState(x, v)

  init = lambda x0: RMSpropState(x0, jnp.full_like(x0, initial_scale))
  return SDE(name, problem, eta, init, drift, diffusion, step, lambda state: state.x)


def rmsprop_sde(problem: Problem, noise: _noise.GaussianNoise, learning_rate: float, *,
                decay: float = 0.9, eps: float = 1e-8, initial_scale: float = 0.0,
                eps_in_sqrt: bool = True, weight_decay: float = 0.0) -> SDE:
  r"""RMSprop(W) (Compagnoni et al. 2025), with $\beta = 1 - \eta\rho$:

  .. math::
    dX_t &= -P_t^{-1}\big(\nabla f(X_t)\,dt + \sqrt\eta\,\Sigma^{1/2}\,dW_t\big)
            - \lambda X_t\,dt, \\
    dV_t &= \rho\,\big((\nabla f(X_t))^2 + \mathrm{diag}(\Sigma) - V_t\big)\,dt,

  $P_t = \mathrm{diag}(\sqrt{V_t}) + \epsilon I$ for ``eps_in_sqrt=False``, or
  $\mathrm{diag}(\sqrt{V_t + \epsilon})$ for ``eps_in_sqrt=True`` (optax's default, which puts
  $\epsilon$ inside the root). $V_0$ = ``initial_scale``. No bias correction: as
  ``optax.rmsprop`` with ``bias_correction=False``.

  The discrete method it models is ``optax.rmsprop(learning_rate, decay, eps,
  initial_scale=..., eps_in_sqrt=...)``; for $\lambda > 0$ (RMSpropW, decoupled weight decay)
  ``optax.chain(optax.scale_by_rms(decay, eps, initial_scale, eps_in_sqrt),
  optax.add_decayed_weights(weight_decay), optax.scale_by_learning_rate(learning_rate))``.
  """
  return _rmsprop("RMSprop SDE", problem, noise, learning_rate, decay, eps, initial_scale,
                  eps_in_sqrt, weight_decay, gradient_in_second_moment=True)


def malladi_rmsprop_sde(problem: Problem, noise: _noise.GaussianNoise, learning_rate: float, *,
                        decay: float = 0.9, eps: float = 1e-8, initial_scale: float = 0.0,
                        eps_in_sqrt: bool = True, weight_decay: float = 0.0) -> SDE:
  r"""The older RMSprop SDE of Malladi et al. (2022), written in the same time $t = k\eta$.

  As ``rmsprop_sde`` but $dV_t = \rho\,(\mathrm{diag}(\Sigma) - V_t)\,dt$: the second moment
  sees the noise only, which holds where the noise dominates the gradient (near a minimum, or
  under the large-noise scaling that model assumes).
  """
  return _rmsprop("Malladi RMSprop SDE", problem, noise, learning_rate, decay, eps,
                  initial_scale, eps_in_sqrt, weight_decay, gradient_in_second_moment=False)


class AdamState(NamedTuple):
  x: jax.Array
  m: jax.Array
  v: jax.Array


def _adam(name, problem, noise, learning_rate, b1, b2, eps, weight_decay, refined):
  eta = _check(problem, noise, learning_rate)
  _require_gaussian("adam_sde" if refined else "malladi_adam_sde", noise)
  b1 = _validation.check_decay("b1", b1)
  b2 = _validation.check_decay("b2", b2)
  eps = _validation.check_nonnegative("eps", eps)
  weight_decay = _validation.check_nonnegative("weight_decay", weight_decay)
  rho1, rho2 = (1.0 - b1) / eta, (1.0 - b2) / eta
  variance = noise.variance()

  def corrections(t):
    return 1.0 - jnp.exp(-rho1 * t), 1.0 - jnp.exp(-rho2 * t)

  def v_drift(g, v):
    return rho2 * ((g**2 + variance if refined else variance) - v)

  def x_drift(x, g, m, v, t):
    gamma1, gamma2 = corrections(t)
    direction = m + eta * rho1 * (g - m) if refined else m
    return (-jnp.sqrt(gamma2) / gamma1 * direction / (jnp.sqrt(v) + eps * jnp.sqrt(gamma2))
            - weight_decay * x)

  def drift(state, t):
    g = problem.grad(state.x)
    return AdamState(x_drift(state.x, g, state.m, state.v, t), rho1 * (g - state.m),
                     v_drift(g, state.v))

  def diffusion(state, t, xi):
    return AdamState(jnp.zeros_like(state.x), math.sqrt(eta) * rho1 * (noise.sqrt_covariance @ xi),
                     jnp.zeros_like(state.v))

  def step(state, t, dt, xi):
    # X reads V and the bias corrections gamma_i at the end of the step (V's increment is
    # deterministic given X), as Adam divides by v_{k+1} and corrects with 1 - beta^(k+1);
    # at t = 0 the drift is otherwise 0/0 (V_0 = 0, gamma(0) = 0). A first-order change.
    g = problem.grad(state.x)
    v = state.v + dt * v_drift(g, state.v)
    x = state.x + dt * x_drift(state.x, g, state.m, v, t + dt)
    m = (state.m + dt * rho1 * (g - state.m)
         + jnp.sqrt(dt) * math.sqrt(eta) * rho1 * (noise.sqrt_covariance @ xi))
    return AdamState(x, m, v)

  init = lambda x0: AdamState(x0, jnp.zeros_like(x0), jnp.zeros_like(x0))
  return SDE(name, problem, eta, init, drift, diffusion, step, lambda state: state.x)


def adam_sde(problem: Problem, noise: _noise.GaussianNoise, learning_rate: float, *,
             b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
             weight_decay: float = 0.0) -> SDE:
  r"""Adam(W) (Compagnoni et al. 2025), with $\beta_i = 1 - \eta\rho_i$:

  .. math::
    dX_t &= -\frac{\sqrt{\gamma_2(t)}}{\gamma_1(t)}\,P_t^{-1}
            \big(M_t + \eta\rho_1(\nabla f(X_t) - M_t)\big)\,dt - \lambda X_t\,dt, \\
    dM_t &= \rho_1\big(\nabla f(X_t) - M_t\big)\,dt + \sqrt\eta\,\rho_1\,\Sigma^{1/2}\,dW_t, \\
    dV_t &= \rho_2\big((\nabla f(X_t))^2 + \mathrm{diag}(\Sigma) - V_t\big)\,dt,

  $\gamma_i(t) = 1 - e^{-\rho_i t}$ (the bias corrections $1 - \beta_i^k$),
  $P_t = \mathrm{diag}(\sqrt{V_t}) + \epsilon\sqrt{\gamma_2(t)}\,I$, $M_0 = V_0 = 0$. The term
  $\eta\rho_1(\nabla f - M)$ is the expected momentum update Adam applies in the same step.

  The discrete method it models is ``optax.adam(learning_rate, b1, b2, eps)`` ($\lambda = 0$)
  or ``optax.adamw(learning_rate, b1, b2, eps, weight_decay=lambda)``: optax puts $\epsilon$
  outside the root, $\hat m / (\sqrt{\hat v} + \epsilon)$, as this SDE does.
  """
  return _adam("Adam SDE", problem, noise, learning_rate, b1, b2, eps, weight_decay, refined=True)


def malladi_adam_sde(problem: Problem, noise: _noise.GaussianNoise, learning_rate: float, *,
                     b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                     weight_decay: float = 0.0) -> SDE:
  r"""The older Adam SDE of Malladi et al. (2022), written in the same time $t = k\eta$.

  .. math::
    dX_t = -\frac{\sqrt{\gamma_2}}{\gamma_1} P_t^{-1} M_t\,dt - \lambda X_t\,dt, \quad
    dM_t = \rho_1(\nabla f - M_t)\,dt + \sqrt\eta\,\rho_1\Sigma^{1/2}dW_t, \quad
    dV_t = \rho_2(\mathrm{diag}(\Sigma) - V_t)\,dt:

  no $(\nabla f)^2$ in the second moment and no $\eta\rho_1(\nabla f - M)$ correction, the
  noise-dominated regime that model is derived in.
  """
  return _adam("Malladi Adam SDE", problem, noise, learning_rate, b1, b2, eps, weight_decay,
               refined=False)
