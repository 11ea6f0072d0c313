"""experiments/robustness.py on synthetic curves whose answers are known, and the protocol end to
end (``configs/robustness.py:smoke``)."""

import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats

from configs import robustness as robustness_config
from experiments import robustness

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _row(task, optimizer, lr, loss, seed=0, status="ok"):
  return {"run_id": f"{task}-{optimizer}-{lr}-{seed}", "cell": f"{task}-{optimizer}",
          "status": status, "final_min_loss": loss,
          "values": {"optimizer.learning_rate": lr, "seed": seed}}


def test_the_band_spans_the_rates_within_ten_percent_and_says_where_it_is_open():
  rates = robustness_config.grid(1e-3, 3, 2)  # 1e-3 .. 1, a factor of sqrt(10) a step
  assert rates == (1e-3, 3.16e-3, 1e-2, 3.16e-2, 0.1, 0.316, 1.0)
  losses = [3.0, 1.2, 1.08, 1.0, 1.1, 1.3, math.inf]  # 1.1 is on the bound: inside
  band = robustness.band(dict(zip(rates, losses, strict=True)))
  assert (band.low, band.high) == (1e-2, 0.1) and band.decades == pytest.approx(1.0)
  assert not band.open_low and not band.open_high
  # Flat up to the largest rate tried: the width is only a lower bound.
  band = robustness.band({0.1: 2.0, 1.0: 1.0, 10.0: 1.05})
  assert band.decades == pytest.approx(1.0) and band.open_high and not band.open_low
  # A diverged neighbour lies outside however flat the rest is; all diverged: no band.
  band = robustness.band({0.1: 1.0, 1.0: math.inf, 10.0: 1.0})
  assert band.decades == 0.0 and band.low == band.high == 0.1
  assert robustness.band({0.1: math.inf, 1.0: math.inf}) is None


def test_the_overshoot_ratio_is_paired_by_seed_with_a_t_interval():
  rng = np.random.default_rng(0)
  best = 1.0 + 0.02 * rng.standard_normal(4)
  ratios = 1.5 + 0.1 * rng.standard_normal(4)
  # Seed 0's grid picks 0.316; its own runs there and at 3.16 are not part of the measure.
  rows = [_row("lm", "sgd", lr, loss) for lr, loss in [(0.1, 1.2), (0.316, 0.9), (1.0, 1.1),
                                                       (3.16, 50.0)]]
  rows += [_row("lm", "sgd", 0.316, float(b), seed=s) for s, b in enumerate(best, 1)]
  rows += [_row("lm", "sgd", 3.16, float(b * r), seed=s)
           for s, (b, r) in enumerate(zip(best, ratios, strict=True), 1)]
  (summary,) = robustness.summarize(rows)
  assert summary.best.learning_rate == 0.316 and summary.best.loss == 0.9
  assert summary.band.decades == 0.0  # both neighbours are more than 10% worse than 0.9
  assert (summary.task, summary.optimizer) == ("lm", "sgd")
  o = summary.overshoot
  assert o.rate == 3.16  # 10 x 0.316 is the grid's 3.16, not 3.1600000000000006
  assert o.ratio.n == 4 and o.ratio.mean == pytest.approx(ratios.mean())
  want = scipy.stats.ttest_1samp(ratios, 0.0).confidence_interval(0.95)
  assert (o.ratio.low, o.ratio.high) == pytest.approx((want.low, want.high))
  assert o.best.mean == pytest.approx(best.mean())


def test_a_diverged_seed_past_the_tuned_rate_makes_the_ratio_infinite():
  rows = [_row("img", "adam", lr, loss) for lr, loss in [(1e-3, 1.0), (1e-2, 2.0)]]
  rows += [_row("img", "adam", 1e-3, 1.0, seed=s) for s in (1, 2)]
  rows += [_row("img", "adam", 1e-2, 1.5, seed=1),
           _row("img", "adam", 1e-2, None, seed=2, status="diverged")]
  (summary,) = robustness.summarize(rows)
  assert summary.overshoot.ratio.diverged == 1 and summary.overshoot.ratio.mean == math.inf
  assert summary.best.at_edge == "low"


@pytest.mark.slow  # about thirty short runs, a minute on a CPU
def test_the_robustness_protocol_reports_every_optimizer(tmp_path):
  workdir = tmp_path / "robust"
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
  done = subprocess.run(
      [sys.executable, "train.py", "--config=configs/robustness.py:smoke",
       f"--workdir={workdir}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-2000:]
  readme = (workdir / "report" / "README.md").read_text()
  for optimizer in robustness_config.OPTIMIZERS:
    assert f"| vision-mlp | {optimizer} |" in readme
  assert (workdir / "report" / "loss_vs_lr_vision-mlp.png").stat().st_size > 0
  from experiments import report
  os.remove(workdir / "report" / "README.md")
  assert report.main(["report", str(workdir)]) == 0  # protocol.json picks this report again
  assert (workdir / "report" / "README.md").read_text() == readme
