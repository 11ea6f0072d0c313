"""Noisy linear regression with power-law spectra: the theory-sized testbed.

The model of the batch-size and scaling-law analyses (e.g. Zhang et al., 2024, "How does
critical batch size scale in pre-training?"; Paquette et al., 2024, "4+3 phases of compute-
optimal neural scaling laws"): inputs ``x ~ N(0, H)`` with eigenvalues ``lambda_i = i **
-spectrum_exponent``, a target ``w*`` with ``(w*_i)^2 lambda_i ∝ i ** -(spectrum_exponent +
2 target_exponent)``, labels ``y = <x, w*> + noise_std * xi``. Under the MSE/2 loss the best
possible risk (the Bayes risk) is ``noise_std^2 / 2``; ``info`` records it, the same quantity
measured on the fixed evaluation set, and the risk of the zero predictor, so that curves can be
read as excess risk.

The covariance is diagonal, so the curvature is axis-aligned: the case where Adam's diagonal
preconditioner can help. ``rotate=True`` turns the problem by a fixed random orthogonal matrix
(same spectrum, same risk, eigenvectors no longer on the axes) to take that help away.
"""

import numpy as np

from data.source import check_bool, check_eval_examples, check_int, check_number

_EVAL_STREAM = 0x0E7A1  # entropy tag that separates evaluation examples from training ones


class LinearRegression:
  """Regression of float targets on ``dim`` Gaussian features with a power-law covariance.

  Training example ``i`` is drawn from ``default_rng((seed, i))``; the evaluation set
  (``eval_examples`` examples, large so its loss is a precise estimate of the risk) depends on
  none of the run's seeds. ``w*`` is scaled so that the signal variance ``E<x, w*>^2`` is
  ``signal_variance``.
  """

  tokens_per_example = 0

  def __init__(self, *, seed: int, dim: int = 128, spectrum_exponent: float = 1.0,
               target_exponent: float = 1.0, noise_std: float = 0.5,
               signal_variance: float = 1.0, rotate: bool = False, eval_examples: int = 8192):
    check_int("dim", dim, low=1, hint=" (input dimension)")
    check_number("spectrum_exponent", spectrum_exponent, hint=" (eigenvalues i^-alpha)")
    check_number("target_exponent", target_exponent, hint=" (w*_i ∝ i^-beta)")
    check_number("noise_std", noise_std, low=0.0, hint=" (label noise; 0 = noiseless)")
    check_number("signal_variance", signal_variance, low=0.0, low_open=True)
    check_bool("rotate", rotate)
    check_eval_examples(eval_examples)
    self.seed, self.dim, self.eval_examples = seed, dim, eval_examples
    self.noise_std = float(noise_std)
    index = np.arange(1, dim + 1, dtype=np.float64)
    self.eigenvalues = index**-float(spectrum_exponent)
    w_star = index**-float(target_exponent)
    w_star *= np.sqrt(signal_variance / (self.eigenvalues @ w_star**2))
    # x = z * sqrt(lambda) @ R with z ~ N(0, I): covariance R^T diag(lambda) R, target R^T w*.
    self._rotation = (np.linalg.qr(np.random.default_rng(0).normal(size=(dim, dim)))[0].T
                      if rotate else None)
    self.w_star = w_star if self._rotation is None else self._rotation.T @ w_star
    self._eval = self._draw([(_EVAL_STREAM, j) for j in range(eval_examples)])
    residual = self._eval["targets"] - self._eval["inputs"] @ self.w_star.astype(np.float32)
    self.info = {
        "generator": "power-law-linear-regression",
        "dim": dim,
        "spectrum_exponent": float(spectrum_exponent),
        "target_exponent": float(target_exponent),
        "noise_std": self.noise_std,
        "signal_variance": float(signal_variance),
        "rotate": bool(rotate),
        "eval_examples": eval_examples,
        "bayes_risk": 0.5 * self.noise_std**2,
        "eval_bayes_risk": float(0.5 * np.mean(residual.astype(np.float64)**2)),
        "null_risk": 0.5 * (float(signal_variance) + self.noise_std**2),
        "hessian_trace": float(self.eigenvalues.sum()),
    }

  def excess_risk(self, w) -> float:
    """Population risk of the predictor ``x -> <x, w>`` minus the Bayes risk (closed form)."""
    delta = np.asarray(w, np.float64).reshape(-1) - self.w_star
    if self._rotation is not None:
      delta = self._rotation @ delta
    return float(0.5 * self.eigenvalues @ delta**2)

  def _draw(self, entropies) -> dict[str, np.ndarray]:
    draws = np.stack([np.random.default_rng(e).standard_normal(self.dim + 1) for e in entropies])
    x = draws[:, :-1] * np.sqrt(self.eigenvalues)[None]
    if self._rotation is not None:
      x = x @ self._rotation
    y = x @ self.w_star + self.noise_std * draws[:, -1]
    return {"inputs": x.astype(np.float32), "targets": y.astype(np.float32)}

  def examples(self, start: int, count: int) -> dict[str, np.ndarray]:
    """Training examples ``start .. start + count - 1`` of the infinite stream."""
    return self._draw([(self.seed, i) for i in range(start, start + count)])

  def eval_set(self) -> dict[str, np.ndarray]:
    return self._eval
