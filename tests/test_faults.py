"""Faults a long run meets: damaged checkpoints, a full disk, a second run, a kill mid-write.

Each ends in one clear line and a workdir that resumes. The checkpointer and the lock are
exercised in this process on a tiny state (cheap); ``train.py`` runs where only a whole run
shows the behaviour (a real full file system, a real second process).
"""

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT, read_metrics, read_summary, run_train, train_cmd

from training import cli, records
from training.checkpointing import Checkpointer, CheckpointError
from training.workdir import Lock, WorkdirBusy

SMOKE = "configs/quickstart.py:smoke"


def _state(value: float):
  return {"w": jnp.full((4, 3), value, jnp.float32), "b": jnp.full((3,), value, jnp.float32)}


_ABSTRACT = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), _state(0.0))


def _saved(workdir, steps, **kwargs) -> Checkpointer:
  checkpointer = Checkpointer(str(workdir), max_to_keep=10, **kwargs)
  for step in steps:
    checkpointer.save(step, _state(float(step)), {"examples_seen": step, "time_s": 0.0})
  checkpointer.wait()
  return checkpointer


def _damage(workdir, step) -> None:
  for path in (workdir / "checkpoints" / str(step)).rglob("*"):
    if path.is_file():
      path.write_bytes(b"\x00garbage")


def test_a_damaged_step_is_moved_aside_twice_without_nesting(tmp_path, capsys):
  _saved(tmp_path, (1, 2, 3)).close()
  _damage(tmp_path, 3)
  checkpointer = Checkpointer(str(tmp_path), max_to_keep=10)
  state, meta = checkpointer.restore(_ABSTRACT)
  assert meta["examples_seen"] == 2 and float(state["w"][0, 0]) == 2.0
  assert "step 3 is damaged" in capsys.readouterr().err
  checkpointer.save(3, _state(3.0), {"examples_seen": 3, "time_s": 0.0})
  checkpointer.close()
  _damage(tmp_path, 3)
  Checkpointer(str(tmp_path), max_to_keep=10).restore(_ABSTRACT)
  damaged = sorted(p.name for p in (tmp_path / "checkpoints_damaged").iterdir())
  assert damaged == ["3", "3.1"]
  assert not (tmp_path / "checkpoints_damaged" / "3" / "3").exists()


def test_every_checkpoint_damaged_is_refused_and_nothing_is_moved(tmp_path):
  _saved(tmp_path, (5, 10)).close()
  _damage(tmp_path, 5)
  _damage(tmp_path, 10)
  with pytest.raises(CheckpointError) as raised:
    Checkpointer(str(tmp_path), max_to_keep=10).restore(_ABSTRACT)
  message = str(raised.value)
  assert "\n" not in message and "steps 10, 5" in message
  assert f"delete {tmp_path / 'checkpoints'}" in message and "new --workdir" in message
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["10", "5"]
  assert not (tmp_path / "checkpoints_damaged").exists()


def test_a_write_killed_midway_is_never_read_and_is_cleared(tmp_path):
  _saved(tmp_path, (1, 2)).close()
  # What a SIGKILL during a save leaves: orbax writes into a temporary folder and renames it
  # only when complete, so a killed write is a half-filled temporary folder.
  partial = tmp_path / "checkpoints" / "3.orbax-checkpoint-tmp-1234"
  shutil.copytree(tmp_path / "checkpoints" / "2", partial)
  for path in sorted(partial.rglob("*"))[::2]:
    if path.is_file():
      path.unlink()
  checkpointer = Checkpointer(str(tmp_path), max_to_keep=10)
  state, meta = checkpointer.restore(_ABSTRACT)
  assert meta["examples_seen"] == 2 and checkpointer.latest_step() == 2
  assert not partial.exists()


def test_a_checkpoint_that_cannot_fit_is_refused_and_the_previous_kept(tmp_path):
  checkpointer = _saved(tmp_path, (1,))
  free = shutil.disk_usage(tmp_path).free
  checkpointer._state_bytes = free * 4  # a state four times the free space
  with pytest.raises(CheckpointError) as raised:
    checkpointer.save(2, _state(2.0), {"examples_seen": 2, "time_s": 0.0})
  message = str(raised.value)
  assert message.startswith(f"no space left on the device of {tmp_path}")
  assert "checkpoint at step 2" in message and "step 1 is intact" in message
  assert "MiB are free" in message and "\n" not in message
  checkpointer.close()
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["1"]


def test_a_second_lock_on_a_workdir_is_refused_and_a_killed_holder_frees_it(tmp_path):
  with Lock(str(tmp_path)), pytest.raises(WorkdirBusy, match=f"pid {os.getpid()}"):
    with Lock(str(tmp_path)):
      pass
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]);"
       "from training.workdir import Lock; l = Lock(sys.argv[2]).__enter__(); print('held', "
       "flush=True); time.sleep(600)", str(ROOT), str(tmp_path)],
      stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == "held"
  with pytest.raises(WorkdirBusy, match=f"pid {holder.pid}"):
    Lock(str(tmp_path)).__enter__()
  holder.send_signal(signal.SIGKILL)
  holder.wait()
  with Lock(str(tmp_path)):  # the kernel dropped the dead holder's lock: nothing is stuck
    pass


@pytest.mark.slow  # two short runs, compiled here
def test_every_checkpoint_damaged_stops_the_command_line_with_one_line(tmp_path, capsys):
  argv = ["train.py", f"--config={ROOT / 'configs/quickstart.py'}:smoke",
          f"--workdir={tmp_path}", "--config.train.steps=10"]
  assert cli.main(argv) == 0
  for step in (5, 10):
    _damage(tmp_path, step)
  before = sorted(os.listdir(tmp_path))
  capsys.readouterr()
  code = cli.main(argv)
  err = capsys.readouterr().err.strip().splitlines()
  assert code == cli.EXIT_FAULT and len(err) == 1, err
  assert "every checkpoint" in err[0] and "steps 10, 5" in err[0]
  assert sorted(os.listdir(tmp_path)) == before
  shutil.rmtree(tmp_path / "checkpoints")  # the way to start over that the message names
  assert cli.main(argv) == 0
  assert [r["step"] for r in read_metrics(tmp_path)] == list(range(1, 11))


@pytest.fixture
def small_filesystem(tmp_path):
  """A 4 MiB tmpfs (needs the right to mount: root, as on CI; skipped elsewhere)."""
  mount = tmp_path / f"fs-{uuid.uuid4().hex[:6]}"
  mount.mkdir()
  proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                        capture_output=True, text=True)
  if proc.returncode != 0:
    pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip()}")
  yield mount
  subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.slow
def test_the_disk_filling_up_ends_in_one_line_and_the_run_resumes(small_filesystem):
  workdir = small_filesystem / "run"
  args = ("--config.train.steps=10", "--config.train.checkpoint_every=5")
  run_train(SMOKE, workdir, *args)
  filler = small_filesystem / "filler"
  free = shutil.disk_usage(small_filesystem).free
  with open(filler, "wb") as f:  # leave room for metrics, not for another checkpoint
    f.write(b"\0" * (free - 64 * 1024))
  longer = ("--config.train.steps=20", "--config.train.checkpoint_every=5",
            "--allow_config_change")
  proc = run_train(SMOKE, workdir, *longer, check=False)
  lines = proc.stderr.strip().splitlines()
  assert proc.returncode == cli.EXIT_FAULT and len(lines) == 1, proc.stderr[-3000:]
  assert "no space left on the device" in lines[0] and "step 10 is intact" in lines[0]
  assert sorted(os.listdir(workdir / "checkpoints")) == ["10", "5"]  # no half-written one
  # The disk filling up while orbax writes (another process taking the space after the check):
  # the check is made to pass, and the writer threads' own reports must not reach stderr.
  racing = ("import sys; from training import checkpointing, cli; "
            "checkpointing.Checkpointer._needed_bytes = lambda self: 0; "
            "sys.exit(cli.main(sys.argv))")
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
  proc = subprocess.run([sys.executable, "-c", racing, *train_cmd(SMOKE, workdir, *longer)[2:]],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  lines = proc.stderr.strip().splitlines()
  assert proc.returncode == cli.EXIT_FAULT and len(lines) == 1, proc.stderr[-3000:]
  assert "no space left on the device" in lines[0] and "step 10 is intact" in lines[0]
  assert sorted(os.listdir(workdir / "checkpoints")) == ["10", "5"]  # the partial one removed
  filler.unlink()
  run_train(SMOKE, workdir, *longer)
  summary = read_summary(workdir)
  assert summary["status"] == "ok" and summary["steps"] == 20
  steps = [r["step"] for r in read_metrics(workdir)]
  assert steps == list(range(1, 21))
  assert np.isfinite([r["loss"] for r in read_metrics(workdir)]).all()


@pytest.mark.slow  # a live train.py beside this process
def test_a_second_run_is_refused_while_the_first_lives(tmp_path, capsys):
  argv = [f"--config={ROOT / 'configs/quickstart.py'}:smoke", f"--workdir={tmp_path}",
          "--config.train.steps=100000", "--config.train.checkpoint_every=3"]
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
  first = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *argv], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  checkpoints = tmp_path / "checkpoints"
  # orbax writes a checkpoint into a temporary folder and renames it to its step once complete
  committed = lambda: checkpoints.is_dir() and any(
      p.name.isdigit() and int(p.name) >= 3 for p in checkpoints.iterdir())
  try:
    deadline = time.time() + 300
    while len(records.read_metrics(str(tmp_path))) < 4 or not committed():
      assert first.poll() is None and time.time() < deadline, first.stderr.read()[-2000:]
      time.sleep(0.05)
    code = cli.main(["train.py", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"in use by a live run (pid {first.pid}" in err[0]
    assert first.poll() is None  # the first run goes on
  finally:
    first.send_signal(signal.SIGKILL)
    first.wait()
  with Lock(str(tmp_path)):  # a killed run leaves no lock behind; its checkpoints remain
    assert Checkpointer(str(tmp_path), max_to_keep=3).latest_step() >= 3
