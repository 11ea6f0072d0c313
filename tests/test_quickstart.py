"""The README's main command, and the second task the same step serves."""

import json

import pytest
from conftest import read_metrics, read_summary, run_train


@pytest.mark.slow
def test_quickstart_reaches_its_loss_target(tmp_path):
  run_train("configs/quickstart.py", tmp_path)
  summary = read_summary(tmp_path)
  assert summary["status"] == "ok" and summary["steps"] == 300
  # mean train loss over the last 10% of logged steps, nats/byte (ln 256 = 5.55 at init)
  assert summary["final_loss"] < 2.5
  assert summary["final_eval_loss"] < 2.5
  assert summary["data"]["corpus"] == "python-stdlib-bytes"
  assert len(summary["data"]["sha256"]) == 64 and summary["data"]["train_bytes"] > 1e6
  assert (tmp_path / "report" / "loss.png").stat().st_size > 1000
  config = json.loads((tmp_path / "config.json").read_text())
  assert config["model"]["name"] == "gpt" and config["optimizer"]["name"] == "adamw"
  first = read_metrics(tmp_path)[0]
  for key in ("step", "loss", "lr", "examples_seen", "tokens_seen", "time_s", "grad_norm",
              "update_norm/hidden", "param_norm/norm"):
    assert key in first


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
