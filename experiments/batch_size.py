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


def steps_by_batch(rows: list[dict], cell: str, target: float) -> dict[int, tuple]:
  """Per batch size of ``cell``'s rows: ``(S, rate, reached)``, the fewest steps to an eval loss
  <= ``target`` over the rates (from each row's ``eval_curve``), the rate that took them, and
  how many rates got there; ``(None, None, 0)`` where none did."""
  found = {}
  for row in rows:
    if row["cell"] != cell:
      continue
    batch = int(row["values"]["train.global_batch"])
    curve = [{"step": s, "eval_loss": v} for s, v in row.get("eval_curve") or []]
    steps = steps_to_target(curve, target, key="eval_loss")
    best, rate, reached = found.get(batch, (None, None, 0))
    if steps is not None:
      reached += 1
      if best is None or steps < best:
        best, rate = steps, float(row["values"]["optimizer.learning_rate"])
    found[batch] = (best, rate, reached)
  return dict(sorted(found.items()))


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


# ------------------------------------------------------------ noisy linear regression, exactly


def linear_regression(**kwargs):
  """The embedded task's eigenvalues, target and noise (``data.linear_regression``), for
  ``theory.batch_size.sgd_linear_regression_risk``: ``(eigenvalues, w_star, noise_std)``."""
  from data.linear_regression import LinearRegression  # noqa: PLC0415 -- numpy only
  task = LinearRegression(seed=0, eval_examples=1, **kwargs)
  return task.eigenvalues, task.w_star, task.noise_std


def schedule_risks(problem, stages) -> tuple[np.ndarray, np.ndarray]:
  """``(examples, risk)`` after each step of SGD run over ``stages``, a list of
  ``(learning_rate, batch, steps)`` (exact expected risk: ``theory.batch_size``)."""
  from theory import batch_size as theory_batch  # noqa: PLC0415
  lrs = np.concatenate([np.full(n, lr, np.float64) for lr, _, n in stages])
  batches = np.concatenate([np.full(n, b, np.float64) for _, b, n in stages])
  return np.cumsum(batches), theory_batch.sgd_linear_regression_risk(*problem, lrs, batches)


def seesaw_equivalence(problem, *, learning_rate: float, batch: int, alpha: float, cuts: int,
                       examples_per_stage: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """SGD's risk against examples for three schedules of ``cuts + 1`` stages of equal examples:
  ``decay`` (the rate divided by ``alpha`` at each cut, batch fixed), ``ramp`` (the batch
  multiplied by ``alpha``, the rate fixed: SGD's equivalent, decay x growth the same) and
  ``seesaw`` (the rate divided by sqrt(alpha), the batch multiplied by alpha)."""
  plans = {"decay": lambda k: (learning_rate / alpha**k, batch),
           "ramp": lambda k: (learning_rate, batch * alpha**k),
           "seesaw": lambda k: (learning_rate / alpha ** (k / 2), batch * alpha**k)}
  curves = {}
  for name, plan in plans.items():
    stages = []
    for k in range(cuts + 1):
      lr, b = plan(k)
      stages.append((lr, int(round(b)), max(1, int(round(examples_per_stage / b)))))
    curves[name] = schedule_risks(problem, stages)
  return curves


def steps_to_risk(problem, batches, learning_rates, target: float,
                  max_steps: int) -> dict[int, tuple[int | None, float]]:
  """Per batch size: the fewest constant-rate SGD steps to an expected risk <= ``target``, best
  over ``learning_rates`` (``(None, nan)`` if none gets there in ``max_steps``), and that rate.

  All rates advance together through the recursion of ``theory.batch_size`` (one row each) and
  stop at the first step where one reaches the target: that rate is the best.
  """
  h, w_star, noise_std = (np.asarray(problem[0], np.float64), np.asarray(problem[1]),
                          float(problem[2]))
  lrs = np.asarray(learning_rates, np.float64)[:, None]
  out = {}
  for b in batches:
    c = np.tile(w_star.astype(np.float64) ** 2, (len(lrs), 1))
    out[int(b)] = (None, math.nan)
    for step in range(1, max_steps + 1):
      with np.errstate(over="ignore", invalid="ignore"):  # rates past stability blow up
        c = (1 - lrs * h) ** 2 * c + lrs**2 / b * (h**2 * c + h * (c @ h)[:, None]
                                                 + noise_std**2 * h)
      risk = 0.5 * (c @ h) + 0.5 * noise_std**2
      if np.any(risk <= target):
        out[int(b)] = (step, float(lrs[int(np.argmin(risk)), 0]))
        break
  return out
