"""The README's main command, and the second task the same step serves."""

import json

import pytest
from conftest import read_metrics, read_summary, run_train

# The README's first command, made cheaper by two overrides that keep every pair, batch size and
# stage of the protocol: half the examples per run and two seeds of each best cell (about 100
# short runs instead of 145). The README's figures come from the command as written.
FASTER = ("--config.sweep.examples_budget=640", "--config.protocol.seeds=2")


@pytest.mark.slow  # the README's first command: about 100 short runs
def test_the_main_command_runs_the_mini_gap_study_and_prints_its_table(tmp_path):
  proc = run_train("configs/gap.py:mini", tmp_path, *FASTER, timeout=1500)
  rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
  cells = {r["cell"] for r in rows}
  # Two modalities, a transformer and a non-transformer each, both optimizers.
  for pair in ("language-gpt", "language-gated_conv", "vision-vit", "vision-cnn"):
    for optimizer in ("adam", "sgd"):
      assert f"{pair}-beta0.9-{optimizer}" in cells
  assert {r["values"]["train.global_batch"] for r in rows} == {8, 16, 32}
  assert all(r["status"] in ("ok", "diverged") for r in rows)
  assert sum(r["status"] == "ok" for r in rows) > 0.9 * len(rows)
  # Equal examples per run: steps x batch is the budget.
  assert {r["examples_seen"] for r in rows if r["status"] == "ok"} == {640}
  out = proc.stdout
  assert "gap = Adam - SGD" in out and "gap protocol done" in out
  for pair in ("language-gpt", "language-gated_conv", "vision-vit", "vision-cnn"):
    assert f"{pair}-beta0.9 | 32 |" in out
  for name in ("README.md", "gap_vs_batch.png", "loss_vs_lr.png"):
    assert (tmp_path / "report" / name).stat().st_size > 0


@pytest.mark.slow  # train.py in a fresh process, as every test in this file
def test_digits_mlp_learns(tmp_path):
  run_train("configs/digits_mlp.py", tmp_path)
  summary = read_summary(tmp_path)
  assert summary["status"] == "ok"
  assert summary["final_eval_accuracy"] >= 0.95  # 359 held-out digits, 10 classes
  assert "tokens_seen" not in read_metrics(tmp_path)[0]


@pytest.mark.slow
def test_diverging_run_is_marked_and_exits_nonzero(tmp_path):
  proc = run_train("configs/digits_mlp.py:smoke", tmp_path, "--config.optimizer.learning_rate=1e6",
                   "--config.train.divergence_loss=50.0", check=False)
  assert proc.returncode == 1
  assert "diverged" in proc.stderr.strip().splitlines()[-1]
  assert read_summary(tmp_path)["status"] == "diverged"


@pytest.mark.slow
def test_tensorboard_events_when_enabled(tmp_path):
  run_train("configs/digits_mlp.py:smoke", tmp_path, "--config.tensorboard=True")
  events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
  assert len(events) == 1 and events[0].stat().st_size > 100
