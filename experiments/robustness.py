"""Learning-rate robustness from sweep rows: best rate, width, and the loss past the tuned rate.

Rows are those of ``training.sweep`` from ``configs/robustness.py``: cells named
``<task>-<optimizer>``, swept ``optimizer.learning_rate`` and ``seed``. A run's loss is
``experiments.gap.loss_of`` (``inf`` for a diverged run, so it lies outside any band).

- ``curves``: per (task, optimizer), loss against learning rate over seed 0's runs.
- ``band``: the contiguous rates around the best whose loss is within ``within`` of it, with
  whether the band reaches an end of the rates tried (then its width is a lower bound);
  its width in decades is ``experiments.gap.robustness_width``.
- ``overshoot``: the loss at ``factor`` x the tuned rate against the loss at the tuned rate, per
  seed (a seed's two runs share its initialisation and data order), with a 95% t interval, over
  the seeds other than 0 (seed 0 picked the rate; measuring on it would favour the pick).
"""

import dataclasses
import math
from collections import defaultdict

import numpy as np
import scipy.stats

from experiments import gap as gap_lib

LR, SEED = gap_lib.LR, gap_lib.SEED


def curves(rows: list[dict], *, seed: int = 0) -> dict[tuple[str, str], dict[float, float]]:
  """``(task, optimizer) -> {rate: loss}`` over the rows of seed ``seed``."""
  out = defaultdict(dict)
  for row in rows:
    if row["values"].get(SEED, 0) == seed:
      out[gap_lib.pair_and_optimizer(row)][float(row["values"][LR])] = gap_lib.loss_of(row)
  return dict(out)


def rate_near(rates, target: float, *, rtol: float = 1e-3) -> float:
  """The rate of ``rates`` equal to ``target`` up to rounding (the grid keeps three digits),
  else ``target`` itself: a run at it then has the grid's own value, not a near copy."""
  for rate in rates:
    if math.isclose(rate, target, rel_tol=rtol):
      return rate
  return target


@dataclasses.dataclass(frozen=True)
class Band:
  """The rates around the best whose loss is within ``within`` of the best."""

  low: float  # smallest rate in the band
  high: float  # largest
  decades: float  # log10(high / low)
  open_low: bool  # the band reaches the smallest rate tried: its width is a lower bound
  open_high: bool  # ... the largest


def band(curve: dict[float, float], *, within: float = 0.10) -> Band | None:
  """The band of ``curve`` (rate -> loss, ``inf`` diverged); ``None`` if every run diverged."""
  rates = sorted(curve)
  losses = [curve[r] for r in rates]
  i = int(np.argmin(losses))
  if not math.isfinite(losses[i]):
    return None
  bound = losses[i] * (1 + within)
  lo = hi = i
  while lo > 0 and losses[lo - 1] <= bound:
    lo -= 1
  while hi < len(rates) - 1 and losses[hi + 1] <= bound:
    hi += 1
  decades = gap_lib.robustness_width(curve, within=within)
  return Band(rates[lo], rates[hi], decades, lo == 0, hi == len(rates) - 1)


@dataclasses.dataclass(frozen=True)
class Mean:
  """A mean over seeds with its 95% t interval (nan with one seed; inf if any run diverged)."""

  mean: float
  low: float
  high: float
  n: int  # seeds
  diverged: int  # of them, diverged (loss inf)


def mean_interval(values) -> Mean:
  x = np.asarray(list(values), float)
  bad = int(np.sum(~np.isfinite(x)))
  if len(x) == 0:
    return Mean(math.nan, math.nan, math.nan, 0, 0)
  if bad:
    return Mean(math.inf, math.nan, math.nan, len(x), bad)
  mean = float(x.mean())
  if len(x) < 2:
    return Mean(mean, math.nan, math.nan, 1, 0)
  half = float(scipy.stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
  return Mean(mean, mean - half, mean + half, len(x), 0)


def seed_losses(rows: list[dict], task: str, optimizer: str, rate: float) -> dict[int, float]:
  """``seed -> loss`` of the runs of ``(task, optimizer)`` at ``rate``, seed 0 left out (it
  chose the rate; the others measure it)."""
  return {int(r["values"].get(SEED, 0)): gap_lib.loss_of(r) for r in rows
          if gap_lib.pair_and_optimizer(r) == (task, optimizer) and r["values"].get(SEED, 0)
          and math.isclose(float(r["values"][LR]), rate, rel_tol=1e-9)}


@dataclasses.dataclass(frozen=True)
class Overshoot:
  """The loss at ``factor`` x the tuned rate against the loss at it, over seeds."""

  rate: float  # factor x the tuned rate
  best: Mean  # loss at the tuned rate
  over: Mean  # loss at the overshot rate
  ratio: Mean  # per seed: over / best (1 = no loss of quality; inf: diverged)


def overshoot(at_best: dict[int, float], at_over: dict[int, float], rate: float) -> Overshoot:
  """``Overshoot`` from the seeds that ran at both rates."""
  seeds = sorted(set(at_best) & set(at_over))
  ratios = [at_over[s] / at_best[s] if math.isfinite(at_best[s]) else math.nan for s in seeds]
  return Overshoot(rate, mean_interval(at_best[s] for s in seeds),
                   mean_interval(at_over[s] for s in seeds), mean_interval(ratios))


@dataclasses.dataclass(frozen=True)
class Summary:
  task: str
  optimizer: str
  best: gap_lib.Best  # seed 0's best rate over the rates tried
  band: Band | None
  overshoot: Overshoot | None  # None: no finite best


def overshoot_rate(best: gap_lib.Best, factor: float) -> float:
  """``factor`` x the tuned rate, as the grid spells it where the grid has it."""
  return rate_near(best.rates, best.learning_rate * factor)


def summarize(rows: list[dict], *, factor: float = 10.0,
              within: float = 0.10) -> list[Summary]:
  """One ``Summary`` per (task, optimizer), sorted by task then optimizer."""
  out = []
  seed0 = curves(rows)
  for (task, optimizer, _), best in sorted(gap_lib.best_over_grid(rows).items(),
                                           key=lambda kv: kv[0][:2]):
    found = None
    if math.isfinite(best.loss):
      rate = overshoot_rate(best, factor)
      found = overshoot(seed_losses(rows, task, optimizer, best.learning_rate),
                        seed_losses(rows, task, optimizer, rate), rate)
    out.append(Summary(task, optimizer, best, band(seed0[task, optimizer], within=within),
                       found))
  return out
