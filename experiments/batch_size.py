"""Critical batch size from steps-to-target (Zhang et al., 2024, arXiv 2410.21676).

``steps_to_target``: the first logged step at which a run's training loss reaches a target.
``fit_critical_batch``: over batch sizes B, the fewest steps S(B) (best over a sweep's other
hyperparameters) fitted by S = a + b/B: ``b/B`` is perfect linear scaling (doubling the batch
halves the steps) and ``a`` the floor of steps no batch removes. The critical batch size is
where S is ``overhead`` (20%) above linear scaling: a + b/B = 1.2 b/B, i.e. B* = 0.2 b / a.

The fit minimises the error in log S, as the authors' code does (``log(a + b/B)``), so small
and large batches weigh alike; their code then adds a constant (``+ 1.2 * 256``, from their
normalisation), which is not part of the definition and not done here.
"""

import dataclasses
import math

import numpy as np
import scipy.optimize


def steps_to_target(history: list[dict], target: float, *, key: str = "loss") -> int | None:
  """The first logged ``step`` whose ``key`` is at or below ``target`` (``None``: never)."""
  for record in history:
    value = record.get(key)
    if value is not None and math.isfinite(float(value)) and float(value) <= target:
      return int(record["step"])
  return None


@dataclasses.dataclass(frozen=True)
class CriticalBatch:
  a: float  # steps no batch size removes
  b: float  # steps x examples of perfect linear scaling
  overhead: float  # the CBS is where S(B) is this fraction above linear scaling
  points: int  # batch sizes fitted

  @property
  def batch(self) -> float:
    """B* = overhead * b / a (inf when a = 0: linear scaling everywhere)."""
    return math.inf if self.a <= 0 else self.overhead * self.b / self.a

  def steps(self, batch) -> np.ndarray:
    return self.a + self.b / np.asarray(batch, np.float64)


def fit_critical_batch(batches, steps, *, overhead: float = 0.2) -> CriticalBatch:
  """S(B) = a + b/B fitted to ``steps`` at ``batches`` (a, b >= 0; least squares in log S).

  Raises ``ValueError`` with fewer than two distinct batch sizes or a step count <= 0.
  """
  B, S = np.asarray(batches, np.float64), np.asarray(steps, np.float64)
  if B.shape != S.shape or B.ndim != 1 or len(np.unique(B)) < 2:
    raise ValueError("fit_critical_batch needs steps at two or more distinct batch sizes")
  if np.any(B <= 0) or np.any(S <= 0) or not np.all(np.isfinite(S)):
    raise ValueError("batch sizes and steps must be finite and > 0")
  if not overhead > 0:
    raise ValueError(f"overhead={overhead} must be > 0")
  # A start from least squares in S weighted by 1/S (the log fit to first order), then the
  # log fit itself, in log-parameters so that a and b stay positive.
  design = np.stack([np.ones_like(B), 1.0 / B], 1) / S[:, None]
  (a0, b0), *_ = np.linalg.lstsq(design, np.ones_like(S), rcond=None)
  scale = float(S.max())
  start = np.log(np.maximum([a0, b0 / B.min()], 1e-6 * scale) / scale)
  residual = lambda p: np.log(scale * (np.exp(p[0]) + np.exp(p[1]) * B.min() / B)) - np.log(S)
  fit = scipy.optimize.least_squares(residual, start, xtol=1e-14, ftol=1e-14, gtol=1e-14)
  a, b = scale * math.exp(fit.x[0]), scale * math.exp(fit.x[1]) * B.min()
  return CriticalBatch(a=a, b=b, overhead=float(overhead), points=len(B))
