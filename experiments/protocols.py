"""Experiment protocols that ``train.py`` runs when a config names one (``config.protocol``).

Before anything compiles, a protocol checks its own keys and that its analysis can tell the
sweep's runs apart (a knob must be a cell, not a grid axis), and refuses a ``DIR`` that holds a
study of other protocol settings; ``DIR/protocol.json`` records the settings, the report's
arguments and the rates added beyond grid edges (the report lists them).

``gap`` (``configs/gap.py``): the grid of the declared sweep; then, up to
``protocol.edge_extensions`` times, one more learning rate beyond each best that sits at an edge
of the rates tried (the grid must not decide the answer); then ``protocol.seeds`` seeds of each
(pair, optimizer, batch) at its best rate; then ``DIR/report/``. Each stage is a sweep over the
same ``DIR``, so a restart redoes no finished run. Split over machines (``sweep.shard=i/n``),
each shard runs its share of the grid; run once more without a shard when all have finished to
do the later stages and the report.

``seesaw`` (``configs/seesaw.py``), ``cbs`` (``configs/cbs.py``), ``adaptive``
(``configs/adaptive_batch.py``) and ``bst`` (``configs/bst.py``): the grid, then
``DIR/report/``.

``robustness`` (``configs/robustness.py``): the grid; then, as ``gap`` does, rates beyond a best
at an edge; then seeds ``1 .. protocol.seeds`` of each (task, optimizer) at its best rate and at
``protocol.overshoot`` x it; then ``DIR/report/`` (``python -m experiments.report DIR``
rebuilds it, as ``protocol.json`` names the protocol).
"""

import copy
import json
import math
import numbers
import os
import sys

import jax

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


def _check_number(key: str, value, *, low: float, integer: bool = False,
                  low_open: bool = False) -> None:
  kind = "an integer" if integer else "a number"
  bound = f"{'>' if low_open else '>='} {low:g}"
  ok = (isinstance(value, numbers.Integral) if integer else isinstance(value, numbers.Real))
  if not ok or isinstance(value, bool) or not math.isfinite(value) or (
      value <= low if low_open else value < low):
    raise ValueError(f"protocol.{key}={value!r} must be {kind} {bound}")


_AXES = {  # the sweep keys each protocol's analysis tells runs apart by (others would merge)
    "gap": ({gap_lib.BATCH, gap_lib.SEED}, {gap_lib.LR}),
    "robustness": ({gap_lib.SEED}, {gap_lib.LR}),
    "seesaw": ({gap_lib.SEED, gap_lib.LR}, set()),
    "cbs": ({gap_lib.BATCH, gap_lib.SEED}, {gap_lib.LR}),
    "adaptive": ({gap_lib.SEED, "train.ramp.test_eta"}, set()),
    "bst": ({gap_lib.BATCH, gap_lib.SEED}, {gap_lib.LR}),
}


def _begin(name: str, config, workdir: str, allow_config_change: bool, **report_args) -> dict:
  """Checks the protocol's own keys and axes (one line each, before anything is compiled) and
  that ``DIR`` holds no study of other protocol settings; writes ``DIR/protocol.json`` (the
  settings, the report's arguments, and later the rates added beyond grid edges)."""
  p = config.protocol
  if name in ("gap", "robustness"):
    _check_number("seeds", p.seeds, low=1, integer=True)
    _check_number("edge_extensions", p.edge_extensions, low=0, integer=True)
    _check_number("grid_factor", p.grid_factor, low=1, low_open=True)
  if name == "cbs":
    _check_number("overhead", p.overhead, low=0, low_open=True)
    cells = [cell for cell, _, _ in config.sweep.cells]
    missing = sorted(set(cells) - set(p.targets))
    if missing:
      raise ValueError(f"protocol.targets has no target loss for {', '.join(missing)}: give "
                       f"one per cell ({', '.join(cells)})")
    for cell, target in p.targets.items():
      _check_number(f"targets.{cell}", target, low=0, low_open=True)
  if name == "bst" and p.get("points", 0):
    _check_number("points", p.points, low=2, integer=True)
    _check_number("draws", p.draws, low=2, integer=True)
    _check_number("probe_batch", p.probe_batch, low=1, integer=True)
    _check_number("full_batch", p.full_batch, low=p.probe_batch + 1, integer=True)
  if name == "robustness":
    _check_number("overshoot", p.overshoot, low=1, low_open=True)
    _check_number("within", p.within, low=0, low_open=True)
  grid_keys, cell_keys = _AXES[name]
  axes = [(key, "sweep.grid") for key, _ in config.sweep.grid] + [
      (key, f"sweep.cells {cell}") for cell, _, axes in config.sweep.cells for key, _ in axes]
  for key, where in axes:
    allowed = grid_keys if where == "sweep.grid" else cell_keys
    if key not in allowed:
      raise ValueError(f"the {name} protocol's analysis does not tell runs apart by {key} "
                       f"({where}): make each value a cell of its own (configs/gap.py:claims "
                       f"does), or sweep it without the protocol")
  settings = json.loads(p.to_json_best_effort())
  path = os.path.join(workdir, "protocol.json")
  marker = {"name": name, "protocol": settings, "report": report_args, "extended": []}
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
    if old.get("protocol", settings) != settings and not allow_config_change:
      changed = sorted(k for k in settings if old["protocol"].get(k) != settings[k])
      raise ValueError(f"workdir {workdir} holds a {old.get('name')} study with other protocol "
                       f"settings ({', '.join(f'protocol.{k}' for k in changed)}); use a new "
                       f"--workdir, or pass --allow_config_change to continue it")
    marker["extended"] = old.get("extended", [])
  _write_marker(workdir, marker)
  return marker


def _write_marker(workdir: str, marker: dict) -> None:
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "protocol.json"), "w") as f:
      json.dump(marker, f)


def _extend(workdir: str, marker: dict, added: list[tuple[str, tuple]]) -> None:
  """Records the rates added beyond grid edges in ``DIR/protocol.json`` (the report lists
  them)."""
  for cell, values in added:
    entry = [cell, dict(values)]
    if entry not in marker["extended"]:
      marker["extended"].append(entry)
  _write_marker(workdir, marker)


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
  marker = _begin("gap", config, workdir, allow_config_change)
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
    _extend(workdir, marker, added)
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
  marker = _begin("robustness", config, workdir, allow_config_change,
                  factor=config.protocol.overshoot, within=config.protocol.within)
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
    _extend(workdir, marker, added)
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
  path = report.robustness_report(workdir, factor=protocol.overshoot, within=protocol.within)
  print(report.robustness_table_text(workdir), file=sys.stdout)
  return path


def _grid_then_report(name: str, config, workdir: str, *, prepared, shard,
                      allow_config_change: bool, **report_args) -> str | None:
  """The grid of the declared sweep, then the protocol's report (``None`` for a shard or a
  preempted run)."""
  _begin(name, config, workdir, allow_config_change, **report_args)
  kwargs, run_kwargs = _stage_kwargs(config, shard, allow_config_change)
  if not _grid(config, workdir, prepared, kwargs, run_kwargs):
    return None
  return _report(name, workdir, report_args)


def _report(name: str, workdir: str, report_args: dict) -> str:
  """Writes the report of ``name`` and shows it (its text, without the figures' links)."""
  path = report.REPORTS[name](workdir, **report_args)
  with open(path) as f:
    print("\n".join(line for line in f.read().splitlines() if not line.startswith("![")),
          file=sys.stdout)
  return path


def seesaw(config, workdir: str, *, prepared=None, shard=(0, 1),
           allow_config_change: bool = False) -> str | None:
  """Runs ``configs/seesaw.py`` in ``workdir``: the grid (both schedules at every rate and
  seed), then ``DIR/report/`` (``experiments/report.py``: ``seesaw_report``)."""
  return _grid_then_report("seesaw", config, workdir, prepared=prepared, shard=shard,
                           allow_config_change=allow_config_change)


def cbs(config, workdir: str, *, prepared=None, shard=(0, 1),
        allow_config_change: bool = False) -> str | None:
  """Runs ``configs/cbs.py`` in ``workdir``: the grid (every batch size at every rate), then
  ``DIR/report/`` (``experiments/report.py``: ``cbs_report``, from the rows' eval curves)."""
  return _grid_then_report("cbs", config, workdir, prepared=prepared, shard=shard,
                           allow_config_change=allow_config_change,
                           targets=dict(config.protocol.targets),
                           overhead=config.protocol.overhead)


def adaptive(config, workdir: str, *, prepared=None, shard=(0, 1),
             allow_config_change: bool = False) -> str | None:
  """Runs ``configs/adaptive_batch.py`` in ``workdir``: the grid, then ``DIR/report/``
  (``experiments/report.py``: ``adaptive_report``, from the rows' batch curves)."""
  return _grid_then_report("adaptive", config, workdir, prepared=prepared, shard=shard,
                           allow_config_change=allow_config_change)


def _bst_grown(small: dict, large: dict, transfer: dict, seq_len: int) -> list[tuple]:
  """The paper's growing schedules at the larger budget, each a ramp over one run: the batch
  alone (T0's best batch and stepsize for T0's examples, then the rule's), and the sequence
  length with it (the rule applied at each stage's end: $BS \\propto t^{2/3}$ is half of T0's
  at $t = T0/2^{3/2}$, so sequences of half the length until then, at the stepsize of Eq. 8
  for that stage, $\\beta_0 (BS/B_0S_0)(T_0/t)$)."""
  b0, lr0 = small["best"], small["curve"][small["best"]][1]
  micro = min(small["curve"])  # the grid's smallest batch: a microbatch of every other
  b1 = max(b0 + micro, micro * math.floor(transfer["batch"] / micro))
  lr1 = lr0 * (b1 / b0) * (small["examples"] / large["examples"])  # Eq. 8 at the batch run
  steps = small["examples"] // b0 + math.ceil((large["examples"] - small["examples"]) / b1)
  print(f"bst: the growing schedule at {transfer['large']}: batch {b0} (stepsize {lr0:g}) for "
        f"{small['examples']} examples, then {b1} (stepsize {lr1:.3g})", file=sys.stdout)
  common = (("train.global_batch", b0), ("seed", 0), ("optimizer.learning_rate", lr0),
            ("train.num_microbatches", b0 // micro))
  grown = [common + (("train.ramp.unit", "examples"),
                     ("train.ramp.stages", ((small["examples"], b1, 0, lr1 / lr0),)),
                     ("train.steps", steps))]
  if seq_len >= 2:
    t0, t1 = small["examples"] * seq_len, large["examples"] * seq_len
    short = seq_len // 2
    t_half = int(t0 / 2**1.5) // (b0 * short) * (b0 * short)  # whole steps of the short stage
    lr_short = lr0 * (short / seq_len) * (t0 / t_half)
    steps = (t_half // (b0 * short) + math.ceil((t0 - t_half) / (b0 * seq_len))
             + math.ceil((t1 - t0) / (b1 * seq_len)))
    grown.append(common[:2] + (("optimizer.learning_rate", lr_short), common[3],
                               ("train.ramp.unit", "tokens"), ("train.ramp.seq_len", short),
                               ("train.ramp.stages", ((t_half, b0, seq_len, lr0 / lr_short),
                                                      (t0, b1, seq_len, lr1 / lr_short))),
                               ("train.steps", steps)))
    print(f"bst: and with the sequence length: {b0} x {short} tokens (stepsize "
          f"{lr_short:.3g}) for {t_half} tokens, then {b0} x {seq_len} to {t0}, then "
          f"{b1} x {seq_len}", file=sys.stdout)
  return [(transfer["large"], values) for values in grown]


def _cell_config(config, name: str):
  return next(c for cell, c, _ in config.sweep.cells if cell == name)


def _bst_constants(config, workdir: str, small: dict, cell: str, f_star: float) -> dict:
  """The BST constants measured along the smaller budget's best run (``DIR/bst_constants.json``;
  measured once, read back on a restart)."""
  path = os.path.join(workdir, "bst_constants.json")
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  from experiments import bst_constants  # noqa: PLC0415 -- only this protocol needs it

  run = copy.deepcopy(_cell_config(config, cell))
  b0, lr0 = small["best"], small["curve"][small["best"]][1]
  steps = small["examples"] // b0
  with run.unlocked():
    run.train.global_batch, run.train.num_microbatches = b0, 1
    run.optimizer.learning_rate, run.train.steps = lr0, steps
    run.optimizer.schedule.warmup_steps = int(config.sweep.get("warmup_fraction", 0.0) * steps)
  p = config.protocol
  measured = bst_constants.measure(run, points=p.points, full_batch=p.full_batch,
                                   probe_batch=p.probe_batch, draws=p.draws, f_star=f_star)
  measured.update(cell=cell, learning_rate=lr0)
  with open(path + ".tmp", "w") as f:
    json.dump(measured, f, indent=1)
  os.replace(path + ".tmp", path)
  return measured


def bst(config, workdir: str, *, prepared=None, shard=(0, 1),
        allow_config_change: bool = False) -> str | None:
  """Runs ``configs/bst.py`` in ``workdir``: the grid (both budgets, every batch and stepsize);
  the BST constants measured along the smaller budget's best run; then the paper's growing
  schedules at the larger budget (``_bst_grown``); then ``DIR/report/``
  (``experiments/report.py``: ``bst_report``)."""
  _begin("bst", config, workdir, allow_config_change)
  kwargs, run_kwargs = _stage_kwargs(config, shard, allow_config_change)
  if not _grid(config, workdir, prepared, kwargs, run_kwargs):
    return None
  cells = report._bst(training.read_results(workdir))
  transfer = report._bst_transfer(cells)
  if transfer is not None:
    small, large = cells[transfer["small"]], cells[transfer["large"]]
    f_star = min(c["curve"][c["best"]][0] for c in cells.values())
    if config.protocol.get("points", 0):
      _bst_constants(config, workdir, small, transfer["small"], f_star)
    seq_len = _cell_config(config, transfer["small"]).data.get("seq_len", 0)
    if not _stage(_with_runs(config, _bst_grown(small, large, transfer, seq_len)), workdir,
                  kwargs, run_kwargs):
      return None
  return _report("bst", workdir, {})
