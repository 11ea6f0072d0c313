"""SDE models of optimizers, tested against the optimizers themselves.

Testbeds (a quadratic with a chosen Hessian, a small MLP on full-batch digits), gradient noise
(Gaussian with covariance Sigma, Student-t), the SDEs of SGD, SignSGD, RMSprop(W) and Adam(W)
of Compagnoni et al. (ICLR 2025, arXiv 2411.15958) and the older ones of Malladi et al. (2022),
an Euler–Maruyama integrator over many paths, closed forms on quadratics, the batch-size
scaling rules, and the optimizer-vs-SDE figure. The discrete side is optax itself::

  problem = theory.quadratic(eigenvalues=[1.0, 4.0])
  noise = theory.gaussian_noise(std=[0.5, 0.5])
  x0 = [2.0, 2.0]
  run = dict(num_steps=500, num_paths=2000, seed=0)
  adam = theory.simulate_optimizer(optax.adam(0.01), problem, noise, x0, learning_rate=0.01,
                                   **run)
  sde = theory.simulate_sde(theory.adam_sde(problem, noise, 0.01), x0, **run)
  theory.relative_mean_error(adam, sde)
"""

from theory._closed_forms import (
    sgd_expected_loss,
    sgd_sde_expected_loss,
    sgd_stationary_loss,
    signsgd_stationary_loss,
)
from theory._comparison import plot_loss_comparison, relative_mean_error
from theory._noise import GaussianNoise, StudentTNoise, gaussian_noise, student_t_noise
from theory._problems import Problem, mlp_classification, quadratic
from theory._scaling_rules import adam_scaled_hyperparameters, signsgd_scaled_learning_rate
from theory._sdes import (
    SDE,
    AdamState,
    RMSpropState,
    adam_sde,
    malladi_adam_sde,
    malladi_rmsprop_sde,
    rmsprop_sde,
    sgd_sde,
    signsgd_sde,
)
from theory._simulation import Trajectory, simulate_optimizer, simulate_sde
from theory.gap_model import (
    GapConstants,
    crossover_exists,
    estimate_constants,
    fit_constants,
    predicted_crossover,
    predicted_gap,
    simulate_gap,
)

__all__ = [
    "SDE", "AdamState", "GapConstants", "GaussianNoise", "Problem", "RMSpropState",
    "StudentTNoise", "Trajectory", "adam_scaled_hyperparameters", "adam_sde",
    "crossover_exists", "estimate_constants", "fit_constants", "gaussian_noise",
    "malladi_adam_sde", "malladi_rmsprop_sde", "mlp_classification", "plot_loss_comparison",
    "predicted_crossover", "predicted_gap", "quadratic", "relative_mean_error", "rmsprop_sde",
    "sgd_expected_loss", "sgd_sde", "sgd_sde_expected_loss", "sgd_stationary_loss",
    "signsgd_scaled_learning_rate", "signsgd_sde", "signsgd_stationary_loss", "simulate_gap",
    "simulate_optimizer", "simulate_sde", "student_t_noise",
]
