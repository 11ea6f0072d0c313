r"""Gradient-noise models: the optimizer sees $g = \nabla f(x) + Z$, with $Z$ independent of $x$.

``sample(key, shape)`` returns draws of shape ``shape + (d,)``. ``GaussianNoise`` draws
$\xi \sim \mathcal N(0, I_d)$ with ``jax.random.normal(key, shape + (d,))``, the very draw an
SDE simulation with the same key uses for its Brownian increments: an optimizer and its SDE run
with one seed share their random numbers (common random numbers), which leaves each one's law
unchanged and shrinks the Monte-Carlo error of their difference.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import betainc, erf

from theory import _validation


class GaussianNoise(NamedTuple):
  r"""$Z = \Sigma^{1/2}\xi$, $\xi \sim \mathcal N(0, I)$: covariance $\Sigma$ (constant in $x$).

  Build it with ``gaussian_noise``. ``sqrt_covariance`` is the symmetric square root.
  """

  covariance: jax.Array
  sqrt_covariance: jax.Array

  @property
  def dim(self) -> int:
    return self.covariance.shape[0]

  @property
  def is_diagonal(self) -> bool:
    covariance = np.asarray(self.covariance)
    return bool(np.all(covariance == np.diag(np.diagonal(covariance))))

  def variance(self) -> jax.Array:
    """Per-coordinate variances, $\\mathrm{diag}(\\Sigma)$."""
    return jnp.diagonal(self.covariance)

  def sample(self, key: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
    """Draws of shape ``shape + (d,)``."""
    return jax.random.normal(key, (*shape, self.dim)) @ self.sqrt_covariance.T

  def expected_sign(self, grad: jax.Array) -> jax.Array:
    r"""$E[\mathrm{sign}(\nabla f + Z)]_i = \mathrm{erf}(\partial_i f / (\sqrt 2\,\sigma_i))$."""
    return erf(grad / jnp.sqrt(2.0 * self.variance()))

  def for_batch_size(self, batch_size: float) -> "GaussianNoise":
    r"""The noise of a mean over ``batch_size`` independent draws: covariance $\Sigma / B$."""
    batch_size = float(batch_size)
    if batch_size <= 0:
      raise ValueError(f"batch_size={batch_size} must be > 0")
    return GaussianNoise(self.covariance / batch_size,
                         self.sqrt_covariance / float(np.sqrt(batch_size)))


class StudentTNoise(NamedTuple):
  r"""$Z_i = s_i T_i$, $T_i$ i.i.d. Student-t with $\nu$ degrees of freedom (heavy tails).

  Build it with ``student_t_noise``. Its variance is $s_i^2 \nu/(\nu-2)$ for $\nu > 2$ and
  infinite otherwise.
  """

  scale: jax.Array
  df: float

  @property
  def dim(self) -> int:
    return self.scale.shape[0]

  @property
  def is_diagonal(self) -> bool:
    return True

  def variance(self) -> jax.Array:
    factor = self.df / (self.df - 2.0) if self.df > 2.0 else np.inf
    return self.scale**2 * factor

  def sample(self, key: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
    """Draws of shape ``shape + (d,)``."""
    scale = self.scale.reshape((1,) * len(shape) + (self.dim,))
    return scale * jax.random.t(key, self.df, (*shape, self.dim))

  def expected_sign(self, grad: jax.Array) -> jax.Array:
    r"""$E[\mathrm{sign}(\nabla f + Z)]_i = 2F_\nu(\partial_i f / s_i) - 1$, $F_\nu$ the t CDF.

    Computed as $\mathrm{sign}(u)\,(1 - I_{\nu/(\nu+u^2)}(\nu/2, 1/2))$, $I$ the regularized
    incomplete beta function.
    """
    u = grad / self.scale
    return jnp.sign(u) * (1.0 - betainc(self.df / 2.0, 0.5, self.df / (self.df + u**2)))


def gaussian_noise(covariance=None, *, std=None) -> GaussianNoise:
  r"""Gaussian gradient noise from a ``covariance`` $\Sigma$ (d, d) or a per-coordinate ``std``.

  Raises:
    ValueError: neither or both given, a covariance that is not symmetric positive
      semi-definite, or a negative std.
  """
  if (covariance is None) == (std is None):
    raise ValueError("gaussian_noise takes exactly one of covariance= or std=")
  if std is not None:
    std = _validation.check_vector("std", std)
    if np.any(std < 0):
      raise ValueError(f"std has negative entries: {std[std < 0]}")
    covariance = np.diag(std**2)
  covariance = _validation.check_psd_matrix("covariance", covariance)
  eigenvalues, eigenvectors = np.linalg.eigh(covariance)
  sqrt_covariance = (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T
  if np.all(covariance == np.diag(np.diagonal(covariance))):
    sqrt_covariance = np.diag(np.sqrt(np.diagonal(covariance)))  # exact for the diagonal case
  return GaussianNoise(jnp.asarray(covariance, jnp.float32),
                       jnp.asarray(sqrt_covariance, jnp.float32))


def student_t_noise(scale, df: float) -> StudentTNoise:
  """Student-t gradient noise: per-coordinate ``scale`` > 0, ``df`` > 0 degrees of freedom."""
  scale = _validation.check_vector("scale", scale)
  if np.any(scale <= 0):
    raise ValueError(f"scale must be > 0 in every coordinate, got min {scale.min()}")
  df = float(df)
  if not np.isfinite(df) or df <= 0:
    raise ValueError(f"df={df} (degrees of freedom) must be a finite number > 0")
  return StudentTNoise(jnp.asarray(scale, jnp.float32), df)


def check_noise(noise, dim: int) -> None:
  if not isinstance(noise, (GaussianNoise, StudentTNoise)):
    raise ValueError(f"noise must be a GaussianNoise or StudentTNoise, got {type(noise).__name__}")
  if noise.dim != dim:
    raise ValueError(f"noise has dimension {noise.dim} but the problem has dimension {dim}")
