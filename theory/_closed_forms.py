r"""Closed forms on the quadratic $f(x) = \tfrac12 x^\top H x$ under constant gradient noise $\Sigma$.

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


def signsgd_stationary_loss(hessian, noise_std, learning_rate) -> float:
  r"""Stationary $E f$ of the SignSGD SDE near the minimum (Gaussian noise, std $\sigma_i$).

  Near the minimum the SDE is linear, $dX = -\sqrt{2/\pi}\,D^{-1}HX\,dt + \sqrt\eta\,dW$,
  $D = \mathrm{diag}(\sigma)$; its stationary covariance $S$ solves $AS + SA^\top = \eta I$,
  $A = \sqrt{2/\pi}\,D^{-1}H$, and $E f = \tfrac12\mathrm{tr}(HS)$. For diagonal $H$ this is
  $\tfrac{\eta}{4}\sqrt{\pi/2}\,\sum_i\sigma_i$, independent of $H$ and linear in the noise's
  size (SGD's is quadratic, ``sgd_stationary_loss``). Valid while $\eta\lambda_i \ll \sigma_i$.
  """
  eta = _validation.check_learning_rate(learning_rate)
  hessian = _validation.check_psd_matrix("hessian", hessian)
  std = _validation.check_vector("noise_std", noise_std, hessian.shape[0])
  if np.any(std <= 0):
    raise ValueError("noise_std must be > 0 in every coordinate")
  a = np.sqrt(2.0 / np.pi) * hessian / std[:, None]
  eye = np.eye(len(std))
  # vec(AS + SA^T) = (I kron A + A kron I) vec(S), row-major vec.
  s = np.linalg.solve(np.kron(a, eye) + np.kron(eye, a), eta * eye.ravel()).reshape(a.shape)
  return 0.5 * float(np.trace(hessian @ s))
