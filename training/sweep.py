"""Sweeps declared in a config: many runs of the one train step, one compiled program per group.

A config declares ``sweep.grid``, axes as ``(key, values)`` pairs that are crossed, and
``sweep.cells``, named sets of ``(key, value)`` overrides (modality x architecture, say); every
cell is crossed with the grid (no cells: the grid alone). ``configs/base.set_sweep`` writes both.
A cell's overrides may be its whole config instead (a modality with its model and data), and a
cell may carry axes of its own (a learning-rate grid per optimizer); ``sweep.runs`` adds runs
one by one (the seeds of a best cell). ``sweep.examples_budget`` (> 0) fixes the examples a run
sees: its steps are ``budget // train.global_batch`` (its warmup ``sweep.warmup_fraction`` of
them), so a sweep over batch sizes trains each at equal data.

Runs whose configs differ only in values that the state carries (the seed; the peak learning
rate, weight decay and float method arguments, all inside ``optax.inject_hyperparams``) form a
group and share one compiled program, chosen by ``sweep.mode``: ``vmap`` stacks up to
``sweep.vmap_size`` of them on a leading run axis and trains them in one call
(``training.vmapped``; a diverging run is frozen inside it and the others go on);
``sequential`` passes them one after another through one executable; ``auto`` (the default)
vmaps on an accelerator with room for the stacked states and goes one after another on a CPU,
whose cores one run already keeps busy. No run compiles twice. Every other key (optimizer,
model, batch size, a static argument) starts a new group.

Each run trains in ``DIR/runs/<run id>`` (checkpoints, metrics, summary: resumable as any run)
and adds one row to ``DIR/results.jsonl``: its id, cell and swept values, status, final, best and
end-of-run minimum training loss, final validation loss and accuracy, steps, examples and tokens
seen, wall time, the first logged loss and the parameter count. A diverged run (a loss not
finite, or above ``train.divergence_loss``) is a
row with ``status: diverged``, and the sweep goes on. Restarted on the same ``DIR``, a sweep
skips the runs that have a row and resumes the unfinished one from its checkpoint; started there
while another sweep of the same shard lives, it is refused (``WorkdirBusy``) before it compiles.
``shard=(i, n)`` runs every n-th run from the i-th (machines sharing ``DIR``); shard ``i`` of
``n > 1`` writes ``DIR/results.<i>-of-<n>.jsonl`` and ``read_results`` merges them.

Every run's config is built and checked before anything compiles: an unknown key (close matches
named), an empty axis, a value of the wrong type, a budget too small for one step and every check
of a single run end in one ``ValueError`` line.
"""

import copy
import dataclasses
import difflib
import glob
import hashlib
import itertools
import json
import math
import os
import sys

import jax
import ml_collections

from plain_numbers import is_int, is_number
from training import records, vmapped
from training import workdir as workdir_lib
from training.cli import flat_keys
from training.loop import Steps, compile_steps, execute
from training.setup import Setup, prepare
from training.vmapped import with_own_hyperparams

# Method arguments that the state carries when they are floats (inject_hyperparams).
_STATE_CARRIED = ("learning_rate", "weight_decay")


@dataclasses.dataclass(frozen=True)
class Run:
  """One run of a sweep: its id (also its sub-workdir's name), cell and swept values."""

  run_id: str
  cell: str
  values: dict


def declared(config) -> bool:
  """Whether ``config`` declares a sweep (a grid axis or a cell)."""
  sweep = config.get("sweep")
  return bool(sweep) and bool(sweep.get("grid") or sweep.get("cells"))


def _check_key(config, key, where: str) -> None:
  keys = [k for k in flat_keys(config) if not k.startswith("sweep")]
  if not isinstance(key, str) or key not in keys:
    close = difflib.get_close_matches(str(key), keys, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise ValueError(f"{where}: unknown config key {key!r}{hint}")
  if isinstance(_get(config, key), ml_collections.ConfigDict):
    raise ValueError(f"{where}: {key!r} is a group of keys; sweep one of its keys")


def _get(config, key: str):
  node = config
  for part in key.split("."):
    node = node[part]
  return node


def _set(config, key: str, value, where: str) -> None:
  *parents, last = key.split(".")
  node = config
  for part in parents:
    node = node[part]
  try:
    node[last] = value
  except TypeError as e:  # ml_collections keeps each key's type
    raise ValueError(f"{where}: {key}={value!r} does not fit the key's type "
                     f"({type(node[last]).__name__}): {e}") from None


def _short(value) -> str:
  return f"{value:g}" if isinstance(value, float) else str(value)


def _run_id(cell: str, values: dict) -> str:
  """Readable and stable: the cell, then a hash of the swept values (not of their order)."""
  text = json.dumps(sorted((k, repr(v)) for k, v in values.items()))
  digest = hashlib.sha1(f"{cell}|{text}".encode()).hexdigest()[:8]
  return f"{cell}-{digest}" if cell else digest


def _check_axes(config, axes, where: str) -> list[tuple[str, tuple]]:
  seen = set()
  for i, axis in enumerate(axes):
    if not (isinstance(axis, tuple | list) and len(axis) == 2):
      raise ValueError(f"{where}[{i}] must be a (key, values) pair, got {axis!r}")
    key, values = axis
    _check_key(config, key, f"{where}[{i}]")
    if key in seen:
      raise ValueError(f"{where}: {key!r} is swept twice")
    seen.add(key)
    if not isinstance(values, tuple | list) or not values:
      raise ValueError(f"{where}: {key!r} has no values to sweep (an empty grid)")
  return [(key, tuple(values)) for key, values in axes]


def _cells(config) -> dict[str, tuple]:
  """``name -> (base config, overrides, axes)`` of every cell (one unnamed cell if none)."""
  sweep = config.sweep
  cells = list(sweep.get("cells") or ()) or [("", ())]
  out = {}
  for i, cell in enumerate(cells):
    if not (isinstance(cell, tuple | list) and len(cell) in (2, 3) and isinstance(cell[0], str)):
      raise ValueError(f"sweep.cells[{i}] must be (name, overrides[, axes]): overrides are "
                       f"((key, value), ...) or the cell's whole config")
    name, overrides = cell[0], cell[1]
    if name in out:
      raise ValueError(f"sweep.cells: two cells are named {name!r}")
    base = config
    if isinstance(overrides, ml_collections.ConfigDict):
      base, overrides = overrides, ()
    for key, _ in overrides:
      _check_key(base, key, f"sweep.cells[{name!r}]")
    global_axes = _check_axes(base, list(sweep.get("grid") or ()), "sweep.grid")
    own = _check_axes(base, list(cell[2]) if len(cell) == 3 else [], f"sweep.cells[{name!r}]")
    replaced = {key for key, _ in own}
    axes = [a for a in global_axes if a[0] not in replaced] + own
    out[name] = (base, tuple(overrides), axes)
  return out


def expand(config) -> list[Run]:
  """The runs ``config.sweep`` declares: cells in order, each crossed with its axes (the grid's
  and its own), then ``sweep.runs``, the explicit ``(cell, ((key, value), ...))`` ones."""
  cells = _cells(config)
  runs, ids = [], set()

  def add(name, values):
    run = Run(_run_id(name, values), name, values)
    if run.run_id not in ids:
      ids.add(run.run_id)
      runs.append(run)

  for name, (_, overrides, axes) in cells.items():
    for combo in itertools.product(*(values for _, values in axes)):
      add(name, {**dict(overrides), **{k: v for (k, _), v in zip(axes, combo, strict=True)}})
  for i, extra in enumerate(config.sweep.get("runs") or ()):
    if not (isinstance(extra, tuple | list) and len(extra) == 2 and extra[0] in cells):
      raise ValueError(f"sweep.runs[{i}] must be (cell, ((key, value), ...)) naming one of the "
                       f"cells {', '.join(repr(c) for c in cells)}")
    name, pairs = extra
    base, overrides, _ = cells[name]
    for key, _ in pairs:
      _check_key(base, key, f"sweep.runs[{i}]")
    add(name, {**dict(overrides), **dict(pairs)})
  return runs


def _budget(config) -> tuple[int, float]:
  """``(sweep.examples_budget, sweep.warmup_fraction)``, each checked by its own key: a bad
  fraction would otherwise surface only as the warmup steps derived from it."""
  budget = config.sweep.get("examples_budget", 0)
  fraction = config.sweep.get("warmup_fraction", 0.0)
  if not is_int(budget) or budget < 0:
    raise ValueError(f"sweep.examples_budget={budget!r} must be an integer >= 0 (0 = no budget: "
                     f"each run's train.steps)")
  if not is_number(fraction) or not 0 <= fraction < 1:
    raise ValueError(f"sweep.warmup_fraction={fraction!r} must be a number in [0, 1) (each "
                     f"run's warmup, a fraction of its steps)")
  return budget, float(fraction)


def run_config(config, run: Run):
  """The plain (sweep-free) config of ``run``: its cell's base with the run's values set."""
  base, _, _ = _cells(config)[run.cell]
  budget, fraction = _budget(config)
  if "sweep" in base and base.sweep.get("examples_budget", 0):
    budget = _budget(base)[0]  # a whole-config cell's own budget (configs/bst.py: one a cell)
  cfg = copy.deepcopy(base)
  with cfg.unlocked():
    if "sweep" in cfg:
      del cfg["sweep"]
    for key, value in run.values.items():
      _set(cfg, key, value, f"sweep run {run.run_id}")
    if budget:
      batch = cfg.train.global_batch
      if not is_int(batch) or batch < 1:  # checked here, before the budget is divided by it
        raise ValueError(f"train.global_batch={batch!r} must be an integer >= 1 (sweep run "
                         f"{run.run_id})")
      # A run that sets its own steps (a ramp drawing the budget at several batch sizes)
      # keeps them; the others take the budget's.
      steps = run.values.get("train.steps", budget // batch)
      if steps < 1:
        raise ValueError(f"sweep.examples_budget={budget} is smaller than one batch of "
                         f"train.global_batch={cfg.train.global_batch} (run {run.run_id}): "
                         f"raise the budget or drop the batch size")
      cfg.train.steps = steps
      if fraction:
        cfg.optimizer.schedule.warmup_steps = int(round(fraction * steps))
  return cfg


def program_key(cfg) -> str:
  """Equal for configs whose train steps compile to the same program (see the module doc)."""
  d = cfg.to_dict()
  d.pop("seed", None)

  def blank(group):
    if not isinstance(group, dict):
      return
    group["learning_rate"] = None
    if "weight_decay" in group:
      group["weight_decay"] = bool(group["weight_decay"])  # 0 leaves the decay out
    for k, v in (group.get("kwargs") or {}).items():
      if isinstance(v, float):
        group["kwargs"][k] = "float"

  optimizer = d.get("optimizer", {})
  blank(optimizer)
  for sub in (optimizer.get("by_role") or {}).values():
    blank(sub)
  return json.dumps(d, sort_keys=True, default=str)


def _abstract_signature(setup: Setup):
  leaves, treedef = jax.tree.flatten(setup.abstract_state)
  return treedef, [(x.shape, x.dtype) for x in leaves]


def parse_shard(spec: str) -> tuple[int, int]:
  """``"i/n"`` (0 <= i < n) to ``(i, n)``; ``""`` is the whole sweep."""
  if not spec:
    return 0, 1
  try:
    i, n = (int(part) for part in spec.split("/"))
  except ValueError:
    i, n = -1, 0
  if not 0 <= i < n:
    raise ValueError(f"sweep.shard={spec!r} must be 'i/n' with 0 <= i < n (e.g. 0/4 .. 3/4)")
  return i, n


def results_path(workdir: str, shard: tuple[int, int]) -> str:
  i, n = shard
  name = "results.jsonl" if n == 1 else f"results.{i}-of-{n}.jsonl"
  return os.path.join(workdir, name)


def read_results(workdir: str) -> list[dict]:
  """Every row in ``DIR/results*.jsonl`` (all shards), one per run id, in file order."""
  rows = {}
  paths = sorted(glob.glob(os.path.join(workdir, "results*.jsonl")))
  for path in paths:
    for row in records.read_jsonl(path):
      rows.setdefault(row["run_id"], row)
  return list(rows.values())


def _row(run: Run, summary: dict, run_dir: str) -> dict:
  history = records.read_metrics(run_dir)
  losses = [float(r["loss"]) for r in history if "loss" in r]  # "nan" is written as text
  finite = [x for x in losses if math.isfinite(x)]
  last = [float(r["loss"]) for r in history
          if r["step"] > 0.99 * summary["steps"]] or losses[-1:]
  row = {
      "run_id": run.run_id,
      "cell": run.cell,
      "values": run.values,
      "status": summary["status"],
      "final_loss": summary["final_loss"],
      "best_loss": min(finite) if finite else None,
      # The study's final loss: the least training loss over the last 1% of steps.
      "final_min_loss": min(last) if last else None,
      "final_eval_loss": summary["final_eval_loss"],
      "final_eval_accuracy": summary["final_eval_accuracy"],
      "steps": summary["steps"],
      "examples_seen": summary["examples_seen"],
      "tokens_seen": summary["tokens_seen"],
      "wall_time_s": summary["wall_time_s"],
      "initial_loss": finite[0] if finite else None,
      "num_params": summary["num_params"],
  }
  evals = [[r["step"], records.plain(r["eval_loss"])] for r in history if "eval_loss" in r]
  if len(evals) > 1:  # evaluated along the way: the curve (steps to a target are read from it)
    row["eval_curve"] = evals
  batches = [[r["step"], r["batch"]] for r in history if "batch" in r]
  if batches:  # a ramp's or an adaptive test's batch: where it changed, and the last step
    row["batch_curve"] = [b for i, b in enumerate(batches)
                          if i == 0 or b[1] != batches[i - 1][1] or i == len(batches) - 1]
  return {k: records.plain(v) if isinstance(v, float) else v for k, v in row.items()}


class _Report:
  """The sweep's progress over runs: done / diverged / to go and the best so far, as a tqdm bar
  when stderr is a terminal (each run's own bar clears when it ends), else one line per
  finished run on stdout (a log file shows the sweep too)."""

  def __init__(self, total: int, done: list[dict], enabled: bool, *, lines=None, bar=None):
    self.total, self.rows, self.enabled = total, list(done), enabled
    lines = sys.stdout if lines is None else lines
    bar = sys.stderr if bar is None else bar
    self._lines, self._bar = None, None
    if enabled and bar.isatty():
      from tqdm import tqdm
      self._bar = tqdm(total=total, initial=len(done), unit="run", desc="sweep", file=bar,
                       dynamic_ncols=True)
      self._bar.set_postfix_str(self._status(), refresh=True)
    elif enabled:
      self._lines = lines

  def _status(self) -> str:
    diverged = sum(r["status"] == "diverged" for r in self.rows)
    ok = [r for r in self.rows if r["status"] == "ok" and r["final_loss"] is not None]
    best = min(ok, key=lambda r: r["final_loss"], default=None)
    best_text = f"; best final loss {best['final_loss']:.4f} ({best['run_id']})" if best else ""
    return f"{diverged} diverged{best_text}"

  def add(self, row: dict) -> None:
    self.rows.append(row)
    if self._bar is not None:
      self._bar.set_postfix_str(self._status(), refresh=False)
      self._bar.update(1)
    elif self._lines is not None:
      diverged, _, best = self._status().partition(";")
      print(f"sweep: {len(self.rows)}/{self.total} done ({diverged}), "
            f"{self.total - len(self.rows)} to go{';' + best if best else ''}",
            file=self._lines, flush=True)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()


def prepare_sweep(config, workdir: str, *, shard: tuple[int, int] = (0, 1),
                  allow_config_change: bool = False) -> list[tuple[Run, Setup]]:
  """Every run of this shard, its config built and checked (``ValueError``: one line)."""
  runs = expand(config)
  i, n = shard
  mine = runs[i::n]
  prepared = []
  for run in mine:
    cfg = run_config(config, run)
    try:
      setup = prepare(cfg, os.path.join(workdir, "runs", run.run_id),
                      allow_config_change=allow_config_change)
    except ValueError as e:
      values = ", ".join(f"{k}={_short(v)}" for k, v in run.values.items())
      raise ValueError(f"sweep run {run.run_id} ({values}): {str(e).splitlines()[0]}") from None
    prepared.append((run, setup))
  return prepared


MODES = ("auto", "vmap", "sequential")


def resolve_mode(mode: str, setups: list[Setup]) -> str:
  """``vmap`` or ``sequential`` for a group of ``setups``.

  ``auto`` vmaps on an accelerator when K stacked states (x3, for gradients and activations)
  fit in its free memory, and runs one after another on a CPU, whose cores one run already
  keeps busy (``benchmarks/sweep.py`` measures both).
  """
  if mode not in MODES:
    raise ValueError(f"sweep.mode={mode!r} must be one of {', '.join(MODES)}")
  if len(setups) < 2 or any(len(s.ramp.stages) > 1 for s in setups):
    return "sequential"  # a ramp's runs change batch shape during training: one at a time
  if mode != "auto":
    return mode
  device = jax.devices()[0]
  if device.platform == "cpu":
    return "sequential"
  stats = device.memory_stats() or {}
  free = stats.get("bytes_limit", 0) - stats.get("bytes_in_use", 0)
  return "vmap" if 3 * len(setups) * setups[0].state_bytes < free else "sequential"


def execute_sweep(prepared: list[tuple[Run, Setup]], workdir: str, *,
                  shard: tuple[int, int] = (0, 1), mode: str = "auto",
                  vmap_size: int = 8, programs: dict | None = None) -> list[dict]:
  """Trains the prepared runs that have no row yet, one compiled program per group.

  ``mode`` (``MODES``, see ``resolve_mode``): a group's runs vmapped, ``vmap_size`` at a time
  (``training.vmapped``), or one after another through one executable. Returns this shard's
  rows (the finished ones read back, then the new ones). ``programs``: a dict that keeps the
  compiled programs across calls (a protocol's later stages add runs to the same groups).
  Stops early, with the rows so far, when a run is preempted (SIGTERM): run the same command
  to go on.
  """
  is_main = jax.process_index() == 0
  programs = {} if programs is None else programs
  # Held before the first compile, so that a second sweep of this shard on DIR is refused at
  # once; shards keep their own locks (machines share DIR), and each run also locks its folder.
  with workdir_lib.Lock(workdir, name=_lock_name(shard), enabled=is_main):
    return _train_groups(prepared, workdir, results_path(workdir, shard), mode=mode,
                         vmap_size=vmap_size, programs=programs, is_main=is_main)


def _lock_name(shard: tuple[int, int]) -> str:
  i, n = shard
  return "lock" if n == 1 else f"lock.{i}-of-{n}"


def _train_groups(prepared: list[tuple[Run, Setup]], workdir: str, path: str, *, mode: str,
                  vmap_size: int, programs: dict, is_main: bool) -> list[dict]:
  """``execute_sweep`` once the lock is held: the rows of ``path``, then every group's runs."""
  done = {r["run_id"]: r for r in records.read_jsonl(path)}
  ids = {run.run_id for run, _ in prepared}
  report = _Report(len(prepared), [r for k, r in done.items() if k in ids], enabled=is_main)
  try:
    groups: dict[str, list[tuple[Run, Setup]]] = {}
    for run, setup in prepared:
      groups.setdefault(program_key(setup.config), []).append((run, setup))
    rows = list(report.rows)
    os.makedirs(workdir, exist_ok=True)
    for members in groups.values():
      todo = [(run, setup) for run, setup in members
              if run.run_id not in done and _finished(setup) is None]
      if resolve_mode(mode, [s for _, s in todo]) == "vmap":
        for run, setup in members:
          if run.run_id not in done and (run, setup) not in todo:  # ended, killed before its row
            rows.append(_write_row(run, _finished(setup), setup.workdir, path, is_main))
            report.add(rows[-1])
        for begin in range(0, len(todo), vmap_size):
          chunk = todo[begin:begin + vmap_size]
          run_ids = [run.run_id for run, _ in chunk]
          summaries = vmapped.train_group(
              [s for _, s in chunk], run_ids,
              os.path.join(workdir, "groups", vmapped.group_id(run_ids)), programs=programs)
          if summaries is None:
            return rows
          for (run, setup), summary in zip(chunk, summaries, strict=True):
            rows.append(_write_row(run, summary, setup.workdir, path, is_main))
            report.add(rows[-1])
        continue
      for run, setup in members:
        if run.run_id in done:
          continue
        summary = _finished(setup)
        if summary is None:
          steps = _compiled(programs, setup)
          own_init = lambda rng, example, setup=setup, init=steps.init: with_own_hyperparams(
              init(rng, example), setup)
          summary = execute(setup, steps=dataclasses.replace(steps, init=own_init), plot=False)
          if summary["status"] == "preempted":
            return rows
        rows.append(_write_row(run, summary, setup.workdir, path, is_main))
        report.add(rows[-1])
    return rows
  finally:
    report.close()


def _compiled(programs: dict, setup: Setup) -> Steps:
  key = program_key(setup.config) + repr(_abstract_signature(setup))
  if key not in programs:
    programs[key] = compile_steps(setup)
  return programs[key]


def _finished(setup: Setup) -> dict | None:
  """The run's ``summary.json`` if it ended (``ok`` at its last step, or ``diverged``)."""
  path = os.path.join(setup.workdir, "summary.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    summary = json.load(f)
  ended = (summary.get("status") == "diverged"
           or (summary.get("status") == "ok" and summary.get("steps") == setup.config.train.steps))
  return summary if ended else None


def _write_row(run: Run, summary: dict, run_dir: str, path: str, is_main: bool) -> dict:
  row = _row(run, summary, run_dir)
  if is_main:
    with open(path, "a") as f:
      f.write(json.dumps(row) + "\n")
  return row


def run_sweep(config, workdir: str, *, shard: tuple[int, int] = (0, 1),
              allow_config_change: bool = False) -> list[dict]:
  """Checks every run of ``config``'s sweep, then trains those without a row (see the module)."""
  mode, size = sweep_mode(config)
  prepared = prepare_sweep(config, workdir, shard=shard, allow_config_change=allow_config_change)
  return execute_sweep(prepared, workdir, shard=shard, mode=mode, vmap_size=size)


def sweep_mode(config) -> tuple[str, int]:
  """``(sweep.mode, sweep.vmap_size)``, checked (``ValueError``: one line)."""
  mode = config.sweep.get("mode", "auto")
  size = config.sweep.get("vmap_size", 8)
  if mode not in MODES:
    raise ValueError(f"sweep.mode={mode!r} must be one of {', '.join(MODES)}")
  if isinstance(size, bool) or not isinstance(size, int) or size < 1:
    raise ValueError(f"sweep.vmap_size={size!r} must be an integer >= 1 (runs per vmapped "
                     f"program)")
  return mode, size
