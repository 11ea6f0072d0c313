"""Sweeps (training/sweep.py): grouping by compiled program, rows, restarts and bad input."""

import errno
import io
import json
import os
import signal
import subprocess
import time

import ml_collections
import numpy as np
import pytest
from conftest import ROOT, loss_curve, train_cmd

import training
from configs import digits_mlp, quickstart
from configs.base import set_sweep
from training import cli, records, sweep, vmapped

# A sweep over the digits MLP (compiles in about a second), 6 steps a run; the third learning
# rate diverges. ``arg`` picks a broken variant for the bad-input tests.
CONFIG = '''
from configs import digits_mlp
from configs.base import set_sweep


def get_config(arg=""):
  c = digits_mlp.get_config("smoke")
  c.train.steps = 6  # updates per run
  c.train.checkpoint_every = 3  # a checkpoint mid-run
  c.train.eval_every = 0  # no evaluation
  grid = {"optimizer.learning_rate": (0.05, 0.1, 1e6), "seed": (0,)}
  budget = 0
  if arg == "unknown":
    grid = {"optimizer.learning_rat": (0.1,)}
  elif arg == "empty":
    grid = {"seed": ()}
  elif arg == "batch":
    grid = {"train.global_batch": (32, 12)}
  elif arg == "budget":
    grid, budget = {"train.global_batch": (16, 64)}, 48
  elif arg.startswith("batches="):  # a budget over the batch sizes given, e.g. batches=16/0
    grid, budget = {"train.global_batch": tuple(int(b) for b in arg[8:].split("/"))}, 48
  elif arg == "type":
    grid = {"train.steps": (6, 6.5)}
  set_sweep(c, grid=grid, examples_budget=budget)
  return c
'''


@pytest.fixture
def config_file(tmp_path):
  path = tmp_path / "sweep_config.py"
  path.write_text(CONFIG)
  return path


def _load(config_file, arg=""):
  return cli.load_config(f"{config_file}:{arg}" if arg else str(config_file))


def _rows(workdir):
  """Every row of ``DIR/results.jsonl``, a duplicate too (``training.read_results`` keeps one
  per run, which would hide a run written twice)."""
  return records.read_jsonl(os.path.join(workdir, "results.jsonl"))


def _without_time(rows):
  return [{k: v for k, v in r.items() if k != "wall_time_s"} for r in rows]


@pytest.mark.slow  # compiles several programs: seconds on two cores
def test_a_group_compiles_once_and_each_run_equals_its_own_run(config_file, tmp_path,
                                                               monkeypatch):
  compiled = []
  original = sweep.compile_steps
  monkeypatch.setattr(sweep, "compile_steps", lambda s: compiled.append(s) or original(s))
  config = _load(config_file)
  rows = training.run_sweep(config, str(tmp_path / "sweep"))
  assert len(compiled) == 1  # three learning rates, one program
  assert [r["status"] for r in rows] == ["ok", "ok", "diverged"]
  assert _rows(tmp_path / "sweep") == rows
  assert [r["values"]["optimizer.learning_rate"] for r in rows] == [0.05, 0.1, 1e6]
  for run, row in zip(sweep.expand(config), rows, strict=True):
    alone = tmp_path / f"alone-{run.run_id}"
    summary = training.run(sweep.run_config(config, run), str(alone))
    assert summary["status"] == row["status"]
    # The same program on the same state and batches: equal to the bit, the diverged run too
    # (it changes no other run: each starts from its own state).
    np.testing.assert_array_equal(loss_curve(tmp_path / "sweep" / "runs" / run.run_id),
                                  loss_curve(alone))
  ok = [r for r in rows if r["status"] == "ok"]
  assert ok[0]["final_loss"] != ok[1]["final_loss"]  # each run trained at its own rate
  assert all(r["steps"] == 6 and r["examples_seen"] == 6 * 32 for r in ok)


def test_a_restart_redoes_no_finished_run_and_resumes_the_unfinished_one(config_file, tmp_path,
                                                                         monkeypatch):
  workdir = tmp_path / "sweep"
  config = _load(config_file)
  first = training.run_sweep(config, str(workdir))
  runs = sweep.expand(config)
  # As if killed after the second run's last checkpoint, before its summary and its row; the
  # third run ended but its row was not written either.
  with open(workdir / "results.jsonl", "w") as f:
    f.write(json.dumps(first[0]) + "\n")
  os.remove(workdir / "runs" / runs[1].run_id / "summary.json")
  executed = []
  original = sweep.execute
  monkeypatch.setattr(sweep, "execute", lambda s, steps, **kw: executed.append(s.workdir)
                      or original(s, steps=steps, **kw))
  again = training.run_sweep(config, str(workdir))
  assert executed == [str(workdir / "runs" / runs[1].run_id)]  # it resumes at its last step
  assert _without_time(again) == _without_time(first)
  assert _without_time(_rows(workdir)) == _without_time(first)


def _vmapped(config, rates):
  config = ml_collections.ConfigDict(config.to_dict())
  config.sweep.mode = "vmap"
  config.sweep.grid = (("optimizer.learning_rate", rates), ("seed", (0,)))
  return config


@pytest.mark.slow  # compiles several programs: seconds on two cores
def test_a_vmapped_group_compiles_once_equals_separate_runs_and_isolates_a_divergence(
    config_file, tmp_path, monkeypatch):
  compiled = []
  original = vmapped.compile_group
  monkeypatch.setattr(vmapped, "compile_group", lambda s: compiled.append(s) or original(s))
  monkeypatch.setattr(sweep, "compile_steps", lambda s: pytest.fail("compiled one run alone"))
  config = _load(config_file)
  wild = training.run_sweep(_vmapped(config, (0.05, 0.1, 1e6)), str(tmp_path / "wild"))
  assert len(compiled) == 1  # three runs, one program
  assert [r["status"] for r in wild] == ["ok", "ok", "diverged"]
  assert wild[2]["steps"] < 6  # frozen at its first bad loss
  sane = training.run_sweep(_vmapped(config, (0.05, 0.1, 0.2)), str(tmp_path / "sane"))
  assert [r["status"] for r in sane] == ["ok", "ok", "ok"]
  monkeypatch.undo()
  for a, b in zip(sane[:2], wild[:2], strict=True):  # a lane computes on its own values only
    assert a["run_id"] == b["run_id"]
    np.testing.assert_array_equal(loss_curve(tmp_path / "sane" / "runs" / a["run_id"]),
                                  loss_curve(tmp_path / "wild" / "runs" / b["run_id"]))
  for run, row in zip(sweep.expand(_vmapped(config, (0.05, 0.1, 1e6))), wild, strict=True):
    alone = tmp_path / f"alone-{run.run_id}"
    summary = training.run(sweep.run_config(config, run), str(alone))
    assert (summary["status"], summary["steps"]) == (row["status"], row["steps"])
    if row["status"] == "ok":
      # Batched matmuls may sum in another order than single ones: f32 rounding, a few ulps of
      # the loss per step, compounded over six steps.
      np.testing.assert_allclose(loss_curve(tmp_path / "wild" / "runs" / run.run_id),
                                 loss_curve(alone), rtol=1e-5)


def test_a_vmapped_group_traces_its_profile_steps(config_file, tmp_path):
  config = _vmapped(_load(config_file), (0.05, 0.1))
  with config.unlocked():
    config.profile_steps = "2,3"
  rows = training.run_sweep(config, str(tmp_path))
  assert [r["status"] for r in rows] == ["ok", "ok"]
  traces = list((tmp_path / "groups").glob("*/profile/plugins/profile/*/*.xplane.pb"))
  assert len(traces) == 1 and traces[0].stat().st_size > 0, traces


@pytest.mark.slow  # compiles several programs: seconds on two cores
def test_a_preempted_vmapped_group_resumes_to_the_uninterrupted_losses(config_file, tmp_path,
                                                                       monkeypatch):
  config = _vmapped(_load(config_file), (0.05, 0.1))
  whole = training.run_sweep(config, str(tmp_path / "whole"))

  class StopAfterFour(training.loop.Preemption):
    checks = 0

    @property
    def requested(self):
      StopAfterFour.checks += 1
      return StopAfterFour.checks >= 4

    @requested.setter
    def requested(self, value):
      pass

  monkeypatch.setattr(vmapped, "Preemption", StopAfterFour)
  assert training.run_sweep(config, str(tmp_path / "cut")) == []  # stopped at step 4
  monkeypatch.undo()
  again = training.run_sweep(config, str(tmp_path / "cut"))
  assert _without_time(again) == _without_time(whole)
  for row in whole:
    np.testing.assert_array_equal(loss_curve(tmp_path / "cut" / "runs" / row["run_id"]),
                                  loss_curve(tmp_path / "whole" / "runs" / row["run_id"]))


@pytest.mark.slow  # compiles several programs: seconds on two cores
def test_a_full_disk_under_a_vmapped_groups_records_ends_in_one_line_and_it_resumes(
    config_file, tmp_path, monkeypatch):
  config, workdir = _vmapped(_load(config_file), (0.05, 0.1)), str(tmp_path / "sweep")

  def disk_full(self, record):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(records.MetricWriter, "write", disk_full)
  with pytest.raises(training.CheckpointError) as raised:
    training.run_sweep(config, workdir)
  message = str(raised.value)
  assert message.startswith("no space left on the device of ") and "\n" not in message, message
  assert "the records of its runs" in message, message
  monkeypatch.undo()
  again = training.run_sweep(config, workdir)
  assert [(r["status"], r["steps"]) for r in again] == [("ok", 6), ("ok", 6)]


def test_program_key_separates_what_changes_the_program():
  base = quickstart.get_config("smoke")

  def key(**changes):
    c = ml_collections.ConfigDict(base.to_dict())
    for path, value in changes.items():
      node = c
      *parents, last = path.split("__")
      for p in parents:
        node = node[p]
      node[last] = value
    return sweep.program_key(c)

  same = key()
  assert key(seed=3) == same
  assert key(optimizer__learning_rate=0.5) == same
  assert key(optimizer__kwargs__b1=0.8) == same
  assert key(optimizer__weight_decay=0.3) == key(optimizer__weight_decay=0.1)
  assert key(optimizer__weight_decay=0.0) != key(optimizer__weight_decay=0.1)
  assert key(optimizer__name="sgd") != same
  assert key(train__global_batch=8) != same
  assert key(model__activation="relu") != same


def test_cells_cross_the_grid_and_the_budget_sets_the_steps():
  c = digits_mlp.get_config("smoke")
  set_sweep(c, grid={"train.global_batch": (16, 32)},
            cells={"relu": {"model.activation": "relu"}, "gelu": {"model.activation": "gelu"}},
            examples_budget=320)
  runs = sweep.expand(c)
  assert [(r.cell, r.values["train.global_batch"]) for r in runs] == [
      ("relu", 16), ("relu", 32), ("gelu", 16), ("gelu", 32)]
  assert len({r.run_id for r in runs}) == 4
  configs = [sweep.run_config(c, r) for r in runs]
  assert [x.train.steps for x in configs] == [20, 10, 20, 10]  # equal examples per run
  assert [x.model.activation for x in configs] == ["relu", "relu", "gelu", "gelu"]
  assert "sweep" not in configs[0]


@pytest.mark.parametrize("arg,overrides,fragments", [
    ("unknown", (), ["unknown config key 'optimizer.learning_rat'", "optimizer.learning_rate"]),
    ("empty", (), ["'seed' has no values to sweep"]),
    ("batch", (), ["train.global_batch=12", "not divisible by the 8 data-parallel devices"]),
    ("budget", (), ["examples_budget=48", "train.global_batch=64"]),
    ("type", (), ["train.steps=6.5"]),
    # The budget is divided by each run's batch: a bad one is named, not a ZeroDivisionError.
    ("batches=16/0", (), ["train.global_batch=0 must be an integer >= 1"]),
    ("batches=16/-16", (), ["train.global_batch=-16 must be an integer >= 1"]),
    # Named by their own keys, not by the warmup steps or step counts derived from them.
    ("batches=16", ("--config.sweep.warmup_fraction=-1",),
     ["sweep.warmup_fraction=-1", "a number in [0, 1)"]),
    ("batches=16", ("--config.sweep.warmup_fraction=1",),
     ["sweep.warmup_fraction=1", "a number in [0, 1)"]),
    ("", ("--config.sweep.examples_budget=-5",), ["sweep.examples_budget=-5", "integer >= 0"]),
    ("", ("--config.sweep.shard=3/2",), ["sweep.shard='3/2'", "0 <= i < n"]),
    ("", ("--config.sweep.mode=vmapped",), ["sweep.mode='vmapped'", "auto, vmap, sequential"]),
    ("", ("--config.sweep.vmap_size=0",), ["sweep.vmap_size=0", ">= 1"]),
])
def test_bad_sweeps_fail_in_one_line_before_compiling(config_file, tmp_path, capsys, arg,
                                                      overrides, fragments):
  workdir = tmp_path / "sweep"
  spec = f"{config_file}:{arg}" if arg else str(config_file)
  code = cli.main(["train.py", f"--config={spec}", f"--workdir={workdir}", *overrides])
  err = capsys.readouterr().err
  lines = err.strip().splitlines()
  assert code == 2 and len(lines) == 1 and lines[0].startswith("optlab: error: "), err
  for fragment in fragments:
    assert fragment in lines[0], lines[0]
  assert not os.path.exists(workdir) or not os.listdir(workdir), os.listdir(workdir)


def test_a_second_sweep_on_the_workdir_of_a_live_one_is_refused_before_compiling(
    config_file, tmp_path, capsys, monkeypatch):
  workdir = tmp_path / "sweep"
  monkeypatch.setattr(sweep, "compile_steps", lambda s: pytest.fail("compiled a run"))
  monkeypatch.setattr(vmapped, "compile_group", lambda s: pytest.fail("compiled a group"))
  with training.Lock(str(workdir)):  # what a live sweep on this workdir holds
    code = cli.main(["train.py", f"--config={config_file}", f"--workdir={workdir}"])
  lines = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(lines) == 1, lines
  assert f"workdir {workdir} is in use by a live run (pid {os.getpid()}" in lines[0], lines[0]
  assert os.listdir(workdir) == ["lock"]  # no run folder, no row


@pytest.mark.slow  # compiles several programs: seconds on two cores
def test_shards_split_the_runs_and_the_rows_merge(config_file, tmp_path):
  config = _load(config_file)
  workdir = str(tmp_path / "sweep")
  # Shards share the workdir (machines at once): a live shard 0 does not hold shard 1 back.
  with training.Lock(workdir, name="lock.0-of-2"):
    second = training.run_sweep(config, workdir, shard=(1, 2))
  parts = [training.run_sweep(config, workdir, shard=(0, 2)), second]
  assert [len(p) for p in parts] == [2, 1]
  merged = training.read_results(workdir)
  assert sorted(r["run_id"] for r in merged) == sorted(r.run_id for r in sweep.expand(config))


@pytest.mark.slow  # train.py in fresh processes, one of them killed
def test_a_killed_sweep_restarted_gives_the_rows_of_an_uninterrupted_one(config_file, tmp_path):
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
  whole, cut = tmp_path / "whole", tmp_path / "cut"
  subprocess.run(train_cmd(str(config_file), whole), cwd=ROOT, env=env, check=True,
                 capture_output=True, timeout=600)
  proc = subprocess.Popen(train_cmd(str(config_file), cut), cwd=ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while not _rows(cut):
    assert proc.poll() is None and time.time() < deadline, "the sweep ended before the kill"
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert len(_rows(cut)) < 3
  subprocess.run(train_cmd(str(config_file), cut), cwd=ROOT, env=env, check=True,
                 capture_output=True, timeout=600)
  assert _without_time(_rows(cut)) == _without_time(_rows(whole))


@pytest.mark.slow  # about twenty short runs
def test_the_gap_protocol_extends_edges_adds_seeds_and_reports(tmp_path, capsys):
  from experiments import gap, report
  workdir = tmp_path / "gap"
  code = cli.main(["train.py", f"--config={ROOT / 'configs/gap.py'}:smoke",
                   f"--workdir={workdir}"], protocols={"gap": "experiments.protocols:gap"})
  out = capsys.readouterr().out
  assert code == 0 and "gap protocol done" in out, out[-2000:]
  rows = training.read_results(str(workdir))
  grid = [r for r in rows if r["values"]["seed"] == 0]
  best = gap.best_over_grid(rows)
  for (pair, optimizer, batch), b in best.items():
    rates = sorted({r["values"]["optimizer.learning_rate"] for r in grid
                    if gap.pair_and_optimizer(r) == (pair, optimizer)
                    and r["values"]["train.global_batch"] == batch})
    assert len(rates) in (2, 3)  # the grid's two, and one more where the best sat at an edge
    seeds = {r["values"]["seed"] for r in rows if gap.pair_and_optimizer(r) == (pair, optimizer)
             and r["values"]["train.global_batch"] == batch
             and r["values"]["optimizer.learning_rate"] == b.learning_rate}
    assert seeds == {0, 1}  # protocol.seeds = 2 in the smoke variant
  readme = (workdir / "report" / "README.md").read_text()
  assert "| vision-mlp-beta0.9 | 8 |" in readme and "| vision-mlp-beta0.9 | 16 |" in readme
  assert (workdir / "report" / "gap_vs_batch.png").stat().st_size > 0
  assert (workdir / "report" / "loss_vs_lr.png").stat().st_size > 0
  os.remove(workdir / "report" / "README.md")
  assert report.main(["report", str(workdir)]) == 0  # rebuilt from the rows alone
  assert (workdir / "report" / "README.md").read_text() == readme


class _Terminal(io.StringIO):
  def isatty(self):
    return True


def test_the_sweep_s_progress_is_a_bar_on_a_terminal_and_lines_in_a_log():
  rows = [{"run_id": f"r{i}", "status": s, "final_loss": f}
          for i, (s, f) in enumerate((("ok", 2.5), ("diverged", None), ("ok", 1.5)))]
  terminal, log = _Terminal(), io.StringIO()
  bar = sweep._Report(4, rows[:1], True, lines=log, bar=terminal)
  for row in rows[1:]:
    bar.add(row)
  bar.close()
  shown = terminal.getvalue()
  assert "sweep" in shown and "3/4" in shown and "1 diverged" in shown and "r2" in shown
  assert log.getvalue() == ""
  plain = sweep._Report(4, rows[:1], True, lines=log, bar=io.StringIO())
  plain.add(rows[1])
  assert log.getvalue().strip() == ("sweep: 2/4 done (1 diverged), 2 to go; "
                                    "best final loss 2.5000 (r0)")
  assert not sweep._Report(4, [], False, lines=log, bar=terminal).rows
