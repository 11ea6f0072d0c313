"""Input checks shared by the theory testbeds: each failure is one line that names the problem."""

import numpy as np


def check_learning_rate(learning_rate) -> float:
  learning_rate = float(learning_rate)
  if not np.isfinite(learning_rate) or learning_rate <= 0:
    raise ValueError(f"learning_rate={learning_rate} must be a finite number > 0")
  return learning_rate


def check_decay(name: str, value) -> float:
  value = float(value)
  if not 0.0 <= value < 1.0:
    raise ValueError(f"{name}={value} must lie in [0, 1)")
  return value


def check_nonnegative(name: str, value) -> float:
  value = float(value)
  if not np.isfinite(value) or value < 0:
    raise ValueError(f"{name}={value} must be a finite number >= 0")
  return value


def check_positive_int(name: str, value) -> int:
  if int(value) != value or value < 1:
    raise ValueError(f"{name}={value} must be an integer >= 1")
  return int(value)


def check_vector(name: str, value, dim: int | None = None) -> np.ndarray:
  """A finite 1-D float array, of length ``dim`` when given."""
  array = np.asarray(value, dtype=np.float64)
  if array.ndim != 1:
    raise ValueError(f"{name} must be a 1-D array, got shape {array.shape}")
  if dim is not None and array.shape[0] != dim:
    raise ValueError(f"{name} has shape {array.shape} but the problem has dimension {dim}")
  if not np.all(np.isfinite(array)):
    raise ValueError(f"{name} has non-finite entries")
  return array


def check_psd_matrix(name: str, value, dim: int | None = None) -> np.ndarray:
  """A symmetric positive semi-definite (d, d) matrix, as float64."""
  matrix = np.asarray(value, dtype=np.float64)
  if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
    raise ValueError(f"{name} must be a square (d, d) matrix, got shape {matrix.shape}")
  if dim is not None and matrix.shape[0] != dim:
    raise ValueError(f"{name} has shape {matrix.shape} but the problem has dimension {dim}")
  if not np.all(np.isfinite(matrix)):
    raise ValueError(f"{name} has non-finite entries")
  scale = max(1.0, float(np.abs(matrix).max()))
  if not np.allclose(matrix, matrix.T, rtol=0.0, atol=1e-8 * scale):
    raise ValueError(f"{name} is not symmetric")
  smallest = float(np.linalg.eigvalsh(matrix).min())
  if smallest < -1e-8 * scale:
    raise ValueError(
        f"{name} is not positive semi-definite: smallest eigenvalue {smallest:.3g} < 0")
  return matrix
