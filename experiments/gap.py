"""The Adam-SGD gap study from sweep rows: best over a grid, gaps, crossover, robustness.

Rows are those of ``training.sweep`` (``values`` holds the swept keys). A run's loss is its
``final_min_loss`` (the least training loss over its last 1% of steps); a diverged run counts
as worse than any finished one.

- ``best_over_grid``: per (cell, optimizer, batch), the learning rate with the least loss, and
  whether it sits at an edge of the rates tried (then the grid did not decide the answer).
- ``gaps``: per (cell, batch), ``Gap(B) = L*_adam(B) - L*_sgd(B)`` (negative: Adam wins) from the
  seeds of each optimizer's best rate, with a 95% Welch interval.
- ``crossover``: the batch size where the gap changes sign, interpolated in log B, with an
  interval from resampling the gaps within their standard errors; ``None`` if it stays of one
  sign over the range (a valid answer).
- ``robustness_width``: the span in decades of learning rate, around the best, over which the
  loss stays within 10% of the best.
"""

import dataclasses
import math
from collections import defaultdict

import numpy as np
import scipy.stats

LR, BATCH, OPTIMIZER, SEED = ("optimizer.learning_rate", "train.global_batch", "optimizer.name",
                              "seed")


def loss_of(row: dict) -> float:
  """The row's loss; ``inf`` for a diverged run or a missing value."""
  value = row.get("final_min_loss")
  if row.get("status") != "ok" or value is None:
    return math.inf
  value = float(value)
  return value if math.isfinite(value) else math.inf


def _value(row: dict, key: str, default=None):
  return row["values"].get(key, default)


def pair_and_optimizer(row: dict) -> tuple[str, str]:
  """The (pair, optimizer) of a row: from the swept ``optimizer.name``, else from a cell named
  ``<pair>-<optimizer>`` as ``configs/gap.py`` names them."""
  if OPTIMIZER in row["values"]:
    return row["cell"], row["values"][OPTIMIZER]
  pair, _, optimizer = row["cell"].rpartition("-")
  return pair, optimizer


@dataclasses.dataclass(frozen=True)
class Best:
  """The best learning rate of one (cell, optimizer, batch) and where it sits in the grid."""

  learning_rate: float
  loss: float
  rates: tuple[float, ...]  # every rate tried, ascending
  at_edge: str  # "" | "low" | "high": the best is the smallest or the largest rate tried


def best_over_grid(rows: list[dict], *, seed: int = 0) -> dict[tuple, Best]:
  """``(pair, optimizer, batch) -> Best`` over the rows of seed ``seed``."""
  curves = defaultdict(dict)
  for row in rows:
    if _value(row, SEED, 0) != seed:
      continue
    key = (*pair_and_optimizer(row), _value(row, BATCH))
    curves[key][float(_value(row, LR))] = loss_of(row)
  best = {}
  for key, curve in curves.items():
    rates = tuple(sorted(curve))
    lr = min(rates, key=lambda r: (curve[r], r))
    edge = ""
    if math.isfinite(curve[lr]) and len(rates) > 1:
      edge = "low" if lr == rates[0] else "high" if lr == rates[-1] else ""
    best[key] = Best(lr, curve[lr], rates, edge)
  return best


def next_rate(best: Best, factor: float) -> float | None:
  """The rate beyond the edge the best sits at (``factor`` times the grid's step), or None."""
  if not best.at_edge:
    return None
  return best.rates[0] / factor if best.at_edge == "low" else best.rates[-1] * factor


@dataclasses.dataclass(frozen=True)
class Gap:
  batch: int
  adam: float  # mean loss over seeds at Adam's best rate
  sgd: float
  gap: float  # adam - sgd
  low: float  # 95% interval
  high: float
  se: float  # standard error of the gap
  seeds: tuple[int, int]  # seeds behind each mean (adam, sgd)


def _seed_losses(rows, pair, optimizer, batch, lr) -> list[float]:
  return [loss_of(r) for r in rows
          if pair_and_optimizer(r) == (pair, optimizer)
          and _value(r, BATCH) == batch and math.isclose(float(_value(r, LR)), lr)]


def gap_at(adam: list[float], sgd: list[float], batch: int) -> Gap:
  """The gap of two samples of losses, with Welch's 95% interval (a single seed: no interval)."""
  a, s = np.asarray(adam, float), np.asarray(sgd, float)
  diff = float(a.mean() - s.mean())
  if len(a) > 1 and len(s) > 1 and np.isfinite(diff):
    va, vs = a.var(ddof=1) / len(a), s.var(ddof=1) / len(s)
    se = math.sqrt(va + vs)
    dof = (va + vs) ** 2 / (va**2 / (len(a) - 1) + vs**2 / (len(s) - 1)) if se > 0 else 1.0
    half = float(scipy.stats.t.ppf(0.975, dof)) * se
  else:
    se, half = math.nan, math.nan
  return Gap(batch, float(a.mean()), float(s.mean()), diff, diff - half, diff + half, se,
             (len(a), len(s)))


def gaps(rows: list[dict], *, adam: str = "adam", sgd: str = "sgd") -> dict[str, list[Gap]]:
  """``pair -> [Gap per batch size, ascending]`` at each optimizer's best rate (seed 0's grid)."""
  best = best_over_grid(rows)
  out = defaultdict(list)
  cells = sorted({cell for cell, _, _ in best})
  for cell in cells:
    batches = sorted({b for c, o, b in best if c == cell and o in (adam, sgd)})
    for batch in batches:
      if (cell, adam, batch) not in best or (cell, sgd, batch) not in best:
        continue
      la = _seed_losses(rows, cell, adam, batch, best[cell, adam, batch].learning_rate)
      ls = _seed_losses(rows, cell, sgd, batch, best[cell, sgd, batch].learning_rate)
      out[cell].append(gap_at(la, ls, batch))
  return dict(out)


def _crossing(batches: np.ndarray, values: np.ndarray) -> float | None:
  """The first sign change of ``values`` over ``batches``, interpolated in log B."""
  logs = np.log(batches)
  for i in range(len(values) - 1):
    v0, v1 = values[i], values[i + 1]
    if v0 == 0:
      return float(batches[i])
    if np.sign(v0) != np.sign(v1) and np.isfinite(v0) and np.isfinite(v1):
      t = v0 / (v0 - v1)
      return float(np.exp(logs[i] + t * (logs[i + 1] - logs[i])))
  if len(values) and values[-1] == 0:
    return float(batches[-1])
  return None


@dataclasses.dataclass(frozen=True)
class Crossover:
  batch: float | None  # None: no sign change in the range
  low: float | None  # 2.5% and 97.5% of the resampled crossovers (None where too few cross)
  high: float | None
  fraction: float  # of resamples that cross in the range


def crossover(points: list[Gap], *, draws: int = 2000, seed: int = 0) -> Crossover:
  """Where ``Gap(B)`` changes sign; its interval from gaps drawn within their standard errors."""
  batches = np.array([p.batch for p in points], float)
  values = np.array([p.gap for p in points], float)
  point = _crossing(batches, values)
  se = np.array([p.se if math.isfinite(p.se) else 0.0 for p in points])
  rng = np.random.default_rng(seed)
  found = []
  for _ in range(draws if se.any() else 0):
    x = _crossing(batches, values + se * rng.standard_normal(len(values)))
    if x is not None:
      found.append(x)
  fraction = len(found) / draws if se.any() else float(point is not None)
  if len(found) >= 0.5 * draws:
    low, high = (float(v) for v in np.exp(np.percentile(np.log(found), [2.5, 97.5])))
  else:
    low = high = None
  return Crossover(point, low, high, fraction)


def robustness_width(curve: dict[float, float], *, within: float = 0.10) -> float:
  """Decades of learning rate, around the best, where the loss stays within ``within`` of it.

  ``curve`` maps rate -> loss (``inf``: diverged). The span runs over the contiguous rates around
  the best whose loss is at most ``(1 + within)`` times the best (losses are positive).
  """
  rates = sorted(curve)
  losses = [curve[r] for r in rates]
  i = int(np.argmin(losses))
  if not math.isfinite(losses[i]):
    return 0.0
  bound = losses[i] * (1 + within)
  lo = hi = i
  while lo > 0 and losses[lo - 1] <= bound:
    lo -= 1
  while hi < len(rates) - 1 and losses[hi + 1] <= bound:
    hi += 1
  return math.log10(rates[hi] / rates[lo])


def model_fit(rows: list[dict], pair: str, points: list[Gap]):
  """The gap model (``theory.gap_model``) fitted to one pair's measured gaps, or ``None``.

  The dimension is the model's parameter count, the initial suboptimality its mean first
  logged loss and the budget its examples per run, all from the rows; L_2, L_inf and the noise
  scale are fitted (``source="fitted"``). Fewer than three finite gaps: no fit.
  """
  from theory import gap_model  # noqa: PLC0415 -- JAX-free reports until a model is asked for
  mine = [r for r in rows if pair_and_optimizer(r)[0] == pair and r["status"] == "ok"
          and r.get("num_params") and r.get("initial_loss") is not None]
  finite = [p for p in points if math.isfinite(p.gap)]
  if len(finite) < 3 or not mine:
    return None
  try:
    with np.errstate(over="ignore", invalid="ignore"):  # the search may try huge constants
      return gap_model.fit_constants(
          [p.batch for p in finite], [p.gap for p in finite], dim=int(mine[0]["num_params"]),
          delta=float(np.mean([r["initial_loss"] for r in mine])),
          budget=int(mine[0]["examples_seen"]))
  except (ValueError, RuntimeError, FloatingPointError):
    return None
