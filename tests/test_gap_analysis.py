"""experiments/gap.py on synthetic sweep rows whose answers are known."""

import math

import numpy as np
import pytest
import scipy.stats

from experiments import gap


def _row(cell, optimizer, batch, lr, loss, seed=0, status="ok"):
  return {"run_id": f"{cell}-{optimizer}-{batch}-{lr}-{seed}", "cell": cell, "status": status,
          "final_min_loss": loss,
          "values": {"optimizer.name": optimizer, "train.global_batch": batch,
                     "optimizer.learning_rate": lr, "seed": seed}}


def test_best_over_grid_names_the_edge_it_sits_at():
  rows = [_row("lm", "adam", 32, lr, loss) for lr, loss in [(1e-3, 3.0), (1e-2, 2.0), (1e-1, 2.5)]]
  rows += [_row("lm", "sgd", 32, lr, loss) for lr, loss in [(0.1, 3.0), (0.3, 2.8), (1.0, 2.1)]]
  rows += [_row("lm", "sgd", 64, lr, x) for lr, x in [(0.1, 2.0), (0.3, 2.2), (1.0, math.nan)]]
  rows.append(_row("lm", "adam", 64, 1e-3, 5.0, status="diverged"))
  rows.append(_row("lm", "adam", 64, 1e-2, 4.0))
  best = gap.best_over_grid(rows)
  assert best["lm", "adam", 32].learning_rate == 1e-2 and best["lm", "adam", 32].at_edge == ""
  assert best["lm", "sgd", 32].at_edge == "high"
  assert gap.next_rate(best["lm", "sgd", 32], 3.0) == pytest.approx(3.0)
  assert best["lm", "sgd", 64].at_edge == "low"  # a nan loss never wins
  assert gap.next_rate(best["lm", "sgd", 64], 3.0) == pytest.approx(0.1 / 3)
  assert best["lm", "adam", 64].learning_rate == 1e-2  # a diverged run never wins either
  assert best["lm", "adam", 64].at_edge == "high"


def test_the_gap_and_its_interval_are_welchs():
  rng = np.random.default_rng(0)
  adam, sgd = 2.0 + 0.05 * rng.standard_normal(4), 2.3 + 0.1 * rng.standard_normal(3)
  rows = [_row("lm", "adam", 64, 1e-2, float(x), seed=i) for i, x in enumerate(adam)]
  rows += [_row("lm", "sgd", 64, 0.3, float(x), seed=i) for i, x in enumerate(sgd)]
  rows += [_row("lm", "sgd", 64, 0.1, 9.0)]  # a worse rate: not the one the gap uses
  (point,) = gap.gaps(rows)["lm"]
  assert point.gap == pytest.approx(adam.mean() - sgd.mean())
  want = scipy.stats.ttest_ind(adam, sgd, equal_var=False).confidence_interval(0.95)
  assert (point.low, point.high) == pytest.approx((want.low, want.high))
  assert point.seeds == (4, 3)


def _points(batches, values, se=0.01):
  return [gap.Gap(b, 0.0, 0.0, v, v - 2 * se, v + 2 * se, se, (3, 3))
          for b, v in zip(batches, values, strict=True)]


def test_the_crossover_is_interpolated_in_log_batch_size():
  batches = [16, 32, 128, 256]
  # Gap(B) = 0.1 log2(B / 64): linear in log B, zero at B = 64 (between the grid's 32 and 128).
  found = gap.crossover(_points(batches, [0.1 * math.log2(b / 64) for b in batches]))
  assert found.batch == pytest.approx(64.0)
  assert found.fraction > 0.99 and found.low < 64 < found.high
  assert 45 < found.low and found.high < 91  # 0.01 noise on a slope of 0.1 per doubling


def test_no_crossover_in_range_is_an_answer():
  found = gap.crossover(_points([16, 32, 64], [-0.3, -0.2, -0.1]))
  assert found.batch is None and found.low is None and found.fraction < 0.01


def test_robustness_width_spans_the_rates_within_ten_percent_of_the_best():
  rates = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]
  curve = dict(zip(rates, [3.0, 1.05, 1.0, 1.09, 1.5, math.inf], strict=True))
  assert gap.robustness_width(curve) == pytest.approx(2.0)  # 1e-3 .. 1e-1
  assert gap.robustness_width({1e-2: 1.0, 1e-1: 2.0}) == 0.0
  assert gap.robustness_width({1e-2: math.inf}) == 0.0


def test_the_model_fit_reads_its_fixed_constants_from_the_rows_and_matches_the_gaps():
  from theory import gap_model
  truth = gap_model.GapConstants(l2=1.5, linf=6.0, sigma=0.4, dim=1000, delta=2.0, budget=4096,
                                 source="measured")
  batches = [8, 16, 32, 64, 128]
  measured = gap_model.predicted_gap(batches, truth)
  rows = [{**_row("p", "adam", 8, 1e-3, 1.0), "num_params": 1000, "initial_loss": 2.0,
           "examples_seen": 4096}]
  fit = gap.model_fit(rows, "p", _points(batches, measured))
  assert fit.source == "fitted" and (fit.dim, fit.delta, fit.budget) == (1000, 2.0, 4096)
  # A noise-free curve of the model itself: the fit reproduces it to the solver's tolerance.
  np.testing.assert_allclose(gap_model.predicted_gap(batches, fit), measured, rtol=1e-4,
                             atol=1e-6 * np.abs(measured).max())
  assert gap.model_fit(rows, "p", _points(batches[:2], measured[:2])) is None  # too few
