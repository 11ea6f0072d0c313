r"""Closed forms on the quadratic $f(x) = \tfrac12 x^\top H x$ under gradient noise $\Sigma$.

These are independent of the simulators (NumPy, float64): the expected loss of SGD and of its
SDE at any time, and the stationary losses of SGD and SignSGD.
"""

import numpy as np

from theory import _validation


def _eigenbasis(hessian, covariance, x0):
  hessian = _validation.check_psd_matrix("hessian", hessian)
  dim = hessian.shape[0]
  covariance = _validation.check_psd_matrix("covariance", covariance, dim)
  x0 = _validation.check_vector("x0", x0, dim)
  eigenvalues, q = np.linalg.eigh(hessian)
  return eigenvalues, q.T @ covariance @ q, q.T @ x0


def sgd_sde_expected_loss(hessian, covariance, x0, learning_rate, times) -> np.ndarray:
  r"""$E f(X_t)$ for the SGD SDE $dX = -HX\,dt + \sqrt\eta\,\Sigma^{1/2}dW$ (an OU process).

  In the eigenbasis of $H$ (eigenvalues $\lambda_i$, $\tilde\Sigma = Q^\top\Sigma Q$):
  $E f(X_t) = \tfrac12\sum_i \lambda_i\big(e^{-2\lambda_i t}\tilde x_{0,i}^2
  + \eta\tilde\Sigma_{ii}\,(1 - e^{-2\lambda_i t})/(2\lambda_i)\big)$.
  """
  eta = _validation.check_learning_rate(learning_rate)
  lam, sigma, y0 = _eigenbasis(hessian, covariance, x0)
  t = np.asarray(times, np.float64)[:, None]
  decay = np.exp(-2.0 * lam * t)
  # (1 - e^{-2 lam t}) / (2 lam), whose limit at lam = 0 is t.
  spread = np.where(lam > 0, -np.expm1(-2.0 * lam * t) / np.where(lam > 0, 2.0 * lam, 1.0), t)
  return 0.5 * np.sum(lam * (decay * y0**2 + eta * np.diagonal(sigma) * spread), axis=1)


def sgd_expected_loss(hessian, covariance, x0, learning_rate, steps) -> np.ndarray:
  r"""$E f(x_k)$ for discrete SGD $x_{k+1} = x_k - \eta(Hx_k + Z_k)$, $\mathrm{Cov}\,Z = \Sigma$.

  With $a_i = 1 - \eta\lambda_i$: $E f(x_k) = \tfrac12\sum_i \lambda_i\big(a_i^{2k}
  \tilde x_{0,i}^2 + \eta^2\tilde\Sigma_{ii}\,(1 - a_i^{2k})/(1 - a_i^2)\big)$.
  """
  eta = _validation.check_learning_rate(learning_rate)
  lam, sigma, y0 = _eigenbasis(hessian, covariance, x0)
  k = np.asarray(steps, np.float64)[:, None]
  a2 = (1.0 - eta * lam) ** 2
  geometric = np.where(a2 != 1.0, (1.0 - a2**k) / np.where(a2 != 1.0, 1.0 - a2, 1.0), k)
  return 0.5 * np.sum(lam * (a2**k * y0**2 + eta**2 * np.diagonal(sigma) * geometric), axis=1)


def sgd_stationary_loss(covariance, learning_rate) -> float:
  r"""$\lim_t E f(X_t) = \eta\,\mathrm{tr}(\Sigma)/4$ for the SGD SDE on any quadratic, $H \succ 0$.

  The stationary covariance $S$ solves $HS + SH = \eta\Sigma$, so
  $E f = \tfrac12\mathrm{tr}(HS) = \tfrac14\mathrm{tr}(HS + SH)$: quadratic in the noise's size.
  """
  eta = _validation.check_learning_rate(learning_rate)
  return eta * float(np.trace(_validation.check_psd_matrix("covariance", covariance))) / 4.0


def signsgd_stationary_loss(noise_std, learning_rate) -> float:
  r"""Stationary $E f$ of the SignSGD SDE near a minimum, Gaussian noise of std $\sigma_i$:
  $\tfrac{\eta}{4}\sqrt{\pi/2}\,\sum_i \sigma_i$.

  Near the minimum the SDE is linear, $dX = -AX\,dt + \sqrt\eta\,dW$ with
  $A = \sqrt{2/\pi}\,D^{-1}H$, $D = \mathrm{diag}(\sigma)$; its stationary covariance $S$ solves
  $AS + SA^\top = \eta I$. Multiplying by $D$ and taking the trace gives
  $2\sqrt{2/\pi}\,\mathrm{tr}(HS) = \eta\,\mathrm{tr}(D)$, so $E f = \tfrac12\mathrm{tr}(HS)$ is
  the value above for every $H \succ 0$: independent of the curvature and linear in the noise's
  size (SGD's, ``sgd_stationary_loss``, is quadratic). Valid while $\eta\lambda_i \ll \sigma_i$.
  """
  eta = _validation.check_learning_rate(learning_rate)
  std = _validation.check_vector("noise_std", noise_std)
  if np.any(std <= 0):
    raise ValueError("noise_std must be > 0 in every coordinate")
  return eta * np.sqrt(np.pi / 2.0) * float(std.sum()) / 4.0
