"""End to end through train.py: sharding, resume, preemption, damaged checkpoints, multi-host."""

import os
import pathlib
import signal
import socket
import subprocess
import time

import numpy as np
import pytest
from conftest import ROOT, history, loss_curve, read_metrics, read_summary, run_train, train_cmd

# Each test starts train.py in fresh processes (JAX start and compile): the slow tier.
pytestmark = pytest.mark.slow

SMOKE = "configs/quickstart.py:smoke"
LONG = ("--config.train.steps=60", "--config.train.checkpoint_every=7")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """An uninterrupted 60-step smoke run, logged every step."""
  workdir = tmp_path_factory.mktemp("reference")
  run_train(SMOKE, workdir, *LONG)
  return workdir


def test_one_vs_eight_devices_data_parallel_and_fsdp(tmp_path):
  runs = {
      "1": ((), 1),
      "8 data": ((), 8),
      "8 fsdp": (("--config.mesh.fsdp=8",), 8),
      "2 data x 4 fsdp": (("--config.mesh.fsdp=4",), 8),
  }
  curves = {}
  for name, (overrides, devices) in runs.items():
    workdir = tmp_path / name.replace(" ", "_")
    run_train(SMOKE, workdir, *overrides, devices=devices)
    assert read_summary(workdir)["devices"] == devices
    curves[name] = loss_curve(workdir)
  assert len(curves["1"]) == 20 and curves["1"][-1] < curves["1"][0]
  # Sharding changes only the order of float32 sums (eps 6e-8) in the gradients; over 20
  # AdamW steps that drift stays far below 1e-4 of the loss, a band that a wrong split
  # (a microbatch dropped, a gradient not averaged) exceeds at the first step.
  for name, values in curves.items():
    np.testing.assert_allclose(values, curves["1"], rtol=1e-4, err_msg=name)


def _start(workdir):
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
  return subprocess.Popen(train_cmd(SMOKE, workdir, *LONG), cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_step(workdir, step, proc, timeout=300):
  path = pathlib.Path(workdir) / "metrics.jsonl"
  deadline = time.time() + timeout
  while time.time() < deadline:
    assert proc.poll() is None, "the run ended before it could be interrupted"
    if path.exists():
      lines = path.read_text().splitlines()
      if len(lines) >= step:
        return
    time.sleep(0.02)
  raise AssertionError("the run did not reach the step in time")


def _assert_same_history(workdir, reference):
  for key in ("loss", "lr", "grad_norm"):
    assert history(workdir, key) == history(reference, key), key


def test_sigkill_then_restart_matches_an_uninterrupted_run(tmp_path, reference):
  proc = _start(tmp_path)
  _wait_for_step(tmp_path, 24, proc)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert proc.returncode == -signal.SIGKILL
  assert not (tmp_path / "summary.json").exists()
  killed_at = len(read_metrics(tmp_path))
  assert killed_at < 60
  run_train(SMOKE, tmp_path, *LONG)
  _assert_same_history(tmp_path, reference)
  assert read_summary(tmp_path)["status"] == "ok"


def _partial_checkpoints(workdir) -> list[str]:
  """The folders orbax writes a checkpoint into before renaming it to its step, complete."""
  folder = pathlib.Path(workdir) / "checkpoints"
  return sorted(p.name for p in folder.glob("*.orbax-checkpoint-tmp*")) if folder.is_dir() else []


def _kill_while_writing(workdir, after_step: int, timeout=300) -> str:
  """Starts the run on ``workdir`` and SIGKILLs it the moment a checkpoint later than
  ``after_step`` is being written; returns the partial folder left behind, or "" when the
  write completed between the look and the kill (a 150 ms write seen by 5 ms polls: rare)."""
  proc = _start(workdir)
  deadline = time.time() + timeout
  try:
    while not [n for n in _partial_checkpoints(workdir) if int(n.split(".")[0]) > after_step]:
      assert proc.poll() is None, "the run ended before a checkpoint was caught mid-write"
      assert time.time() < deadline, "no checkpoint was written in time"
      time.sleep(0.005)
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  assert proc.returncode == -signal.SIGKILL
  return (_partial_checkpoints(workdir) or [""])[-1]


def test_sigkill_while_a_checkpoint_is_written_resumes_from_the_previous_one(tmp_path,
                                                                           reference):
  # Orbax writes into ``<step>.orbax-checkpoint-tmp`` and renames it when complete: killed in
  # between, that folder must never be read and the run resumes from the checkpoint before.
  partial = ""
  for _ in range(3):  # again on the same workdir if the write won the race with the kill
    partial = _kill_while_writing(tmp_path, after_step=7) or partial
    if partial:
      break
  assert partial, "three kills all landed after the write completed"
  step = int(partial.split(".")[0])
  committed = [int(n) for n in os.listdir(tmp_path / "checkpoints") if n.isdigit()]
  assert committed and max(committed) < step  # the step killed mid-write was never committed
  assert not (tmp_path / "summary.json").exists()
  run_train(SMOKE, tmp_path, *LONG)
  _assert_same_history(tmp_path, reference)
  assert read_summary(tmp_path)["status"] == "ok"
  assert _partial_checkpoints(tmp_path) == []  # cleared when the resumed run started


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path, reference):
  proc = _start(tmp_path)
  _wait_for_step(tmp_path, 10, proc)
  proc.send_signal(signal.SIGTERM)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 0, stderr[-2000:]
  summary = read_summary(tmp_path)
  assert summary["status"] == "preempted" and summary["steps"] < 60
  saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert saved[-1] == summary["steps"]  # saved exactly where it stopped
  run_train(SMOKE, tmp_path, *LONG)
  _assert_same_history(tmp_path, reference)


def test_damaged_latest_checkpoint_falls_back_to_the_previous(tmp_path, reference):
  run_train(SMOKE, tmp_path, *LONG)
  checkpoints = tmp_path / "checkpoints"
  steps = sorted(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())
  assert steps[-1] == 60
  for path in (checkpoints / "60").rglob("*"):
    if path.is_file():
      path.write_bytes(b"\x00garbage")
  proc = run_train(SMOKE, tmp_path, *LONG)
  damaged = [line for line in proc.stderr.splitlines() if "damaged" in line]
  assert len(damaged) == 1 and "step 60" in damaged[0] and "previous" in damaged[0]
  assert (tmp_path / "checkpoints_damaged" / "60").exists()  # kept aside, not deleted
  _assert_same_history(tmp_path, reference)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_train_like_one(tmp_path):
  one = tmp_path / "one"
  run_train(SMOKE, one)
  two = tmp_path / "two"
  port = _free_port()
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
  procs = [subprocess.Popen(
      train_cmd(SMOKE, two, "--config.distributed.initialize=True",
                f"--config.distributed.coordinator_address=localhost:{port}",
                "--config.distributed.num_processes=2", f"--config.distributed.process_id={i}"),
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(2)]
  for proc in procs:
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
  summary = read_summary(two)
  assert summary["processes"] == 2 and summary["devices"] == 2
  np.testing.assert_allclose(loss_curve(two), loss_curve(one), rtol=1e-4)  # the band above
