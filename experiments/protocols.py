"""Experiment protocols that ``train.py`` runs when a config names one (``config.protocol``).

``gap`` (``configs/gap.py``): the grid of the declared sweep; then, up to
``protocol.edge_extensions`` times, one more learning rate beyond each best that sits at an edge
of the rates tried (the grid must not decide the answer); then ``protocol.seeds`` seeds of each
(pair, optimizer, batch) at its best rate; then ``DIR/report/``. Each stage is a sweep over the
same ``DIR``, so a restart redoes no finished run. Split over machines (``sweep.shard=i/n``),
each shard runs its share of the grid; run once more without a shard when all have finished to
do the later stages and the report.

``robustness`` (``configs/robustness.py``): the grid; then, as ``gap`` does, rates beyond a best
at an edge; then seeds ``1 .. protocol.seeds`` of each (task, optimizer) at its best rate and at
``protocol.overshoot`` x it; then ``DIR/protocol.json`` (which report ``python -m
experiments.report DIR`` rebuilds) and ``DIR/report/``.
"""

import copy
import sys

import training
from experiments import gap as gap_lib
from experiments import report
from experiments import robustness as robustness_lib


def _with_runs(config, runs):
  config = copy.deepcopy(config)
  with config.unlocked():
    config.sweep.runs = tuple(runs)
  return config


def _say(text: str) -> None:
  print(f"gap: {text}", file=sys.stdout, flush=True)


def _stage_kwargs(config, shard, allow_config_change) -> tuple[dict, dict]:
  """The arguments of every stage's ``prepare_sweep`` and ``execute_sweep``."""
  mode, vmap_size = training.sweep.sweep_mode(config)
  # One program per group, kept across the stages: more rates and seeds compile nothing.
  return (dict(shard=shard, allow_config_change=allow_config_change),
          dict(shard=shard, mode=mode, vmap_size=vmap_size, programs={}))


def _grid(config, workdir, prepared, kwargs, run_kwargs) -> bool:
  """Trains the declared grid; whether the later stages follow (not for a shard, nor when a
  run was preempted)."""
  if prepared is None:
    prepared = training.sweep.prepare_sweep(config, workdir, **kwargs)
  rows = training.sweep.execute_sweep(prepared, workdir, **run_kwargs)
  return run_kwargs["shard"][1] == 1 and len(rows) == len(prepared)


def gap(config, workdir: str, *, prepared=None, shard=(0, 1),
        allow_config_change: bool = False) -> str | None:
  """Runs the gap protocol in ``workdir``; returns the report's path (``None`` for a shard or a
  preempted stage). ``prepared``: the grid's runs, already checked (``sweep.prepare_sweep``)."""
  kwargs, run_kwargs = _stage_kwargs(config, shard, allow_config_change)
  if not _grid(config, workdir, prepared, kwargs, run_kwargs):
    return None
  protocol, extra = config.protocol, []
  cell = lambda pair, optimizer: f"{pair}-{optimizer}"
  for round_ in range(protocol.edge_extensions):
    added = []
    for (pair, optimizer, batch), best in gap_lib.best_over_grid(
        training.read_results(workdir)).items():
      rate = gap_lib.next_rate(best, protocol.grid_factor)
      if rate is not None:
        added.append((cell(pair, optimizer), (("train.global_batch", batch), ("seed", 0),
                                              ("optimizer.learning_rate", rate))))
    if not added:
      break
    _say(f"{len(added)} best rates at a grid edge: one more rate beyond each "
         f"(extension {round_ + 1} of at most {protocol.edge_extensions})")
    extra += added
    if not _stage(_with_runs(config, extra), workdir, kwargs, run_kwargs):
      return None
  seeds = []
  for (pair, optimizer, batch), best in gap_lib.best_over_grid(
      training.read_results(workdir)).items():
    for seed in range(1, protocol.seeds):
      seeds.append((cell(pair, optimizer), (("train.global_batch", batch), ("seed", seed),
                                            ("optimizer.learning_rate", best.learning_rate))))
  _say(f"{len(seeds)} more seeds of the best cells")
  if not _stage(_with_runs(config, extra + seeds), workdir, kwargs, run_kwargs):
    return None
  path = report.gap_report(workdir)
  print(report.gap_table_text(workdir), file=sys.stdout)
  return path


def _stage(config, workdir, kwargs, run_kwargs) -> bool:
  prepared = training.sweep.prepare_sweep(config, workdir, **kwargs)
  rows = training.sweep.execute_sweep(prepared, workdir, **run_kwargs)
  return len(rows) == len(prepared)


def robustness(config, workdir: str, *, prepared=None, shard=(0, 1),
               allow_config_change: bool = False) -> str | None:
  """Runs the robustness protocol (``configs/robustness.py``) in ``workdir``: the grid, then up
  to ``protocol.edge_extensions`` rates beyond each best at an edge, then ``protocol.seeds``
  seeds at each cell's best rate and at ``protocol.overshoot`` x it, then ``DIR/report/``.
  Returns the report's path (``None`` for a shard or a preempted stage)."""
  kwargs, run_kwargs = _stage_kwargs(config, shard, allow_config_change)
  if not _grid(config, workdir, prepared, kwargs, run_kwargs):
    return None
  protocol, extra = config.protocol, []
  say = lambda text: print(f"robustness: {text}", file=sys.stdout, flush=True)
  cell = lambda task, optimizer: f"{task}-{optimizer}"
  for round_ in range(protocol.edge_extensions):
    added = []
    for (task, optimizer, _), best in gap_lib.best_over_grid(
        training.read_results(workdir)).items():
      rate = gap_lib.next_rate(best, protocol.grid_factor)
      if rate is not None:
        added.append((cell(task, optimizer), (("seed", 0), ("optimizer.learning_rate",
                                                            float(f"{rate:.3g}")))))
    if not added:
      break
    say(f"{len(added)} best rates at a grid edge: one more rate beyond each "
        f"(extension {round_ + 1} of at most {protocol.edge_extensions})")
    extra += added
    if not _stage(_with_runs(config, extra), workdir, kwargs, run_kwargs):
      return None
  seeds = []
  for (task, optimizer, _), best in gap_lib.best_over_grid(
      training.read_results(workdir)).items():
    over = robustness_lib.overshoot_rate(best, protocol.overshoot)
    for rate in (best.learning_rate, over):
      for seed in range(1, protocol.seeds + 1):  # seed 0 chose the rate; these measure it
        seeds.append((cell(task, optimizer), (("seed", seed), ("optimizer.learning_rate",
                                                               rate))))
  say(f"{protocol.seeds} seeds at each best rate and at {protocol.overshoot:g}x it")
  if not _stage(_with_runs(config, extra + seeds), workdir, kwargs, run_kwargs):
    return None
  report.write_marker(workdir, "robustness", factor=protocol.overshoot, within=protocol.within)
  path = report.robustness_report(workdir, factor=protocol.overshoot, within=protocol.within)
  print(report.robustness_table_text(workdir), file=sys.stdout)
  return path
