r"""Batch-size scaling rules implied by the SDEs: how to retune when the batch grows $\kappa$-fold.

A batch of size $B$ divides the noise covariance by $B$. A rule maps the hyperparameters at $B$ to
those at $\kappa B$ so that the SDE is unchanged as a function of samples seen: its solution at
$\kappa B$ after $k/\kappa$ steps has the law of the one at $B$ after $k$ steps.
"""

import math

from theory import _validation


def _check_ratio(batch_ratio) -> float:
  batch_ratio = float(batch_ratio)
  if not math.isfinite(batch_ratio) or batch_ratio <= 0:
    raise ValueError(f"batch_ratio={batch_ratio} must be a finite number > 0")
  return batch_ratio


def signsgd_scaled_learning_rate(learning_rate: float, batch_ratio: float) -> float:
  r"""SignSGD's square-root rule: $B \to \kappa B$, $\eta \to \sqrt\kappa\,\eta$.

  Near the minimum the SignSGD SDE reads $dX = -\sqrt{2/\pi}\sqrt B\,\Sigma^{-1/2}\nabla f\,dt
  + \sqrt\eta\,dW$. With $\eta' = \sqrt\kappa\eta$, $B' = \kappa B$ and time $s = \sqrt\kappa t$,
  it becomes the original SDE, and $s$ after $k/\kappa$ steps of $\eta'$ is $t$ after $k$ steps
  of $\eta$. The stationary loss $\propto \eta/\sqrt B$ (``theory.signsgd_stationary_loss``) is
  kept. Far from the minimum (sign descent, drift $-\mathrm{sign}\nabla f$) no rule keeps the
  dynamics per sample: the speed per step is $\eta$ whatever $B$.
  """
  return _validation.check_learning_rate(learning_rate) * math.sqrt(_check_ratio(batch_ratio))


def adam_scaled_hyperparameters(batch_ratio: float, *, learning_rate: float, b1: float,
                                b2: float, eps: float, weight_decay: float = 0.0) -> dict:
  r"""Adam(W)'s square-root rule: $\eta \to \sqrt\kappa\eta$, $1-\beta_i \to \kappa(1-\beta_i)$,
  $\epsilon \to \epsilon/\sqrt\kappa$, $\lambda \to \sqrt\kappa\lambda$.

  In the Adam SDE (``theory.adam_sde``), where the noise dominates the squared gradient,
  $V \approx \mathrm{diag}(\Sigma)/B$. Then $\sqrt\kappa\eta$, $\rho_i \to \sqrt\kappa\rho_i$
  (that is $1-\beta_i = \eta\rho_i \to \kappa(1-\beta_i)$), $\epsilon/\sqrt\kappa$ and time
  $s = \sqrt\kappa t$ give back the original SDE up to its $O(\eta)$ term; the decoupled weight
  decay $-\lambda X\,dt$ needs $\lambda \to \sqrt\kappa\lambda$ (optax's ``weight_decay``,
  applied as $\eta\lambda x$ per step). The $\eta$, $\beta$ and $\epsilon$ parts are the rule of
  Malladi et al. (2022).

  Returns:
    ``dict(learning_rate=, b1=, b2=, eps=, weight_decay=)`` for the batch $\kappa B$.

  Raises:
    ValueError: $\kappa(1 - \beta_i) \ge 1$, which leaves no valid $\beta_i$.
  """
  kappa = _check_ratio(batch_ratio)
  scaled = {}
  for name, beta in (("b1", b1), ("b2", b2)):
    one_minus = kappa * (1.0 - _validation.check_decay(name, beta))
    if one_minus >= 1.0:
      raise ValueError(f"batch_ratio={kappa} is too large for {name}={beta}: "
                       f"1 - {name} would become {one_minus:.3g} >= 1")
    scaled[name] = 1.0 - one_minus
  return dict(learning_rate=_validation.check_learning_rate(learning_rate) * math.sqrt(kappa),
              b1=scaled["b1"], b2=scaled["b2"],
              eps=_validation.check_nonnegative("eps", eps) / math.sqrt(kappa),
              weight_decay=_validation.check_nonnegative("weight_decay", weight_decay)
              * math.sqrt(kappa))
