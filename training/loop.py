"""The training loop: ``prepare`` checks and builds everything (no compilation), ``execute``
trains, evaluates, logs and checkpoints. ``run(config, workdir)`` does both.
"""

import dataclasses
import functools
import json
import math
import os
import signal
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import data
import models
import optimizers
from training import mesh as mesh_lib
from training import records
from training.checkpointing import Checkpointer
from training.state import TrainState
from training.step import LOSSES, eval_step, train_step


@dataclasses.dataclass
class Setup:
  """Everything a run needs, built and checked before anything is compiled."""

  config: Any
  workdir: str
  source: Any
  model: Any
  tx: optax.GradientTransformationExtraArgs
  loss_fn: Any
  mesh: jax.sharding.Mesh
  abstract_state: TrainState
  state_sharding: Any
  num_params: int
  flops_per_example: float


def _flatten(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def _check_workdir(config, workdir: str, allow_config_change: bool) -> None:
  path = os.path.join(workdir, "config.json")
  if allow_config_change or not os.path.exists(path):
    return
  with open(path) as f:
    old = _flatten(json.load(f))
  new = _flatten(json.loads(config.to_json_best_effort()))
  changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
  if changed:
    shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:4])
    more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
    raise ValueError(f"workdir {workdir} holds a run of a different config ({shown}{more}); "
                     f"use a new --workdir, or pass --allow_config_change to continue it")


def _check_batch(config, num_devices: int, num_processes: int) -> None:
  batch, micro = config.train.global_batch, config.train.num_microbatches
  if micro < 1 or batch % micro:
    raise ValueError(f"train.global_batch={batch} is not divisible by "
                     f"train.num_microbatches={micro}")
  per_micro = batch // micro
  if per_micro % num_devices:
    raise ValueError(f"global batch {batch} in {micro} microbatch(es) of {per_micro} is not "
                     f"divisible by the {num_devices} data-parallel devices; choose "
                     f"train.global_batch as a multiple of {num_devices * micro}")
  eval_batch = config.train.eval_batch
  if eval_batch % num_devices:
    raise ValueError(f"train.eval_batch={eval_batch} is not divisible by the {num_devices} "
                     f"devices; choose a multiple of {num_devices}")
  del num_processes


def init_state(rng, example_inputs, *, model, tx) -> TrainState:
  init_rng, state_rng = jax.random.split(rng)
  variables = model.init(init_rng, example_inputs, train=False)
  params = variables.pop("params")
  return TrainState(step=jnp.zeros([], jnp.int32), params=params, opt_state=tx.init(params),
                    rng=state_rng, model_state=dict(variables))


def prepare(config, workdir: str, *, allow_config_change: bool = False) -> Setup:
  """Checks the config against the data, model, optimizer and devices; builds them all.

  Raises ``ValueError`` with a one-line message for any bad input. Nothing is compiled:
  the state is initialised abstractly with ``jax.eval_shape``.
  """
  mesh_lib.initialize_distributed(config.distributed)
  _check_workdir(config, workdir, allow_config_change)
  if config.loss not in LOSSES:
    raise ValueError(f"unknown loss {config.loss!r}: valid names are {', '.join(sorted(LOSSES))}")
  if config.train.steps < 1:
    raise ValueError(f"train.steps={config.train.steps} must be >= 1")
  model = models.build(config.model)
  mesh = mesh_lib.make_mesh(config.mesh.fsdp)
  _check_batch(config, mesh.devices.size, jax.process_count())
  source = data.build(config.data, seed=config.seed)
  example = source.examples(0, 1)["inputs"]
  one_example = jax.tree.map(lambda x: x[0], example)
  rng = jax.random.PRNGKey(config.seed)
  abstract_params = jax.eval_shape(
      lambda r: model.init(r, example, train=False), rng)["params"]
  tx = optimizers.build(config.optimizer, total_steps=config.train.steps,
                        param_labels=models.param_roles)
  abstract_state = jax.eval_shape(functools.partial(init_state, model=model, tx=tx), rng, example)
  return Setup(
      config=config, workdir=workdir, source=source, model=model, tx=tx,
      loss_fn=LOSSES[config.loss], mesh=mesh, abstract_state=abstract_state,
      state_sharding=mesh_lib.state_shardings(abstract_state, mesh),
      num_params=sum(x.size for x in jax.tree.leaves(abstract_params)),
      flops_per_example=float(model.flops_per_example(one_example)))


class _Preemption:
  """Turns SIGTERM into a flag that the loop checks after each step."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread: nothing to install
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def _local_rows(count: int) -> tuple[int, int]:
  """The slice of ``count`` global rows that this process feeds."""
  per_process = count // jax.process_count()
  return jax.process_index() * per_process, per_process


def _train_batch(source, start: int, global_batch: int, num_micro: int, sharding):
  """Global examples ``start .. start + global_batch`` as an (M, b, ...) sharded batch."""
  per_micro = global_batch // num_micro
  offset, local = _local_rows(per_micro)
  parts = [source.examples(start + m * per_micro + offset, local) for m in range(num_micro)]
  arrays = jax.tree.map(lambda *xs: np.stack(xs), *parts)
  return jax.tree.map(lambda v: jax.make_array_from_process_local_data(
      sharding, v, (num_micro, per_micro) + v.shape[2:]), arrays)


def _eval_batches(eval_set: dict, eval_batch: int, sharding):
  """The evaluation set in batches of ``eval_batch`` rows; padding rows get weight 0."""
  n = len(jax.tree.leaves(eval_set["targets"])[0])
  offset, local = _local_rows(eval_batch)
  for begin in range(0, n, eval_batch):
    rows = np.arange(begin + offset, begin + offset + local)
    real = (rows < n).astype(np.float32)
    rows = np.minimum(rows, n - 1)
    batch = jax.tree.map(lambda v, rows=rows: v[rows], eval_set)
    weights = batch.get("weights")
    batch["weights"] = real if weights is None else (
        weights * real.reshape((-1,) + (1,) * (weights.ndim - 1)))
    yield jax.tree.map(lambda v: jax.make_array_from_process_local_data(
        sharding, v, (eval_batch,) + v.shape[1:]), batch)


def _progress(total: int, initial: int):
  from tqdm import tqdm
  return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
              disable=not sys.stderr.isatty() or jax.process_index() != 0)


def _tail_mean(history: list[dict], key: str, fraction: float = 0.1) -> float | None:
  """Mean of ``key`` over the last ``fraction`` of the logged steps (at least one)."""
  values = [r[key] for r in history if isinstance(r.get(key), float)]
  if not values:
    return None
  tail = values[-max(1, int(round(fraction * len(values)))):]
  return float(np.mean(tail))


def execute(setup: Setup) -> dict:
  """Trains from the newest checkpoint in the workdir (or from scratch); returns the summary."""
  cfg, workdir, source = setup.config, setup.workdir, setup.source
  is_main = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)
  if is_main:
    records.write_json(os.path.join(workdir, "config.json"),
                       json.loads(cfg.to_json_best_effort()))
  writer = records.MetricWriter(workdir, tensorboard=cfg.tensorboard, enabled=is_main)
  checkpointer = Checkpointer(workdir, max_to_keep=cfg.train.keep_checkpoints)
  mesh, state_sharding = setup.mesh, setup.state_sharding
  batch_sharding = mesh_lib.batch_sharding(mesh, microbatched=True)
  eval_sharding = mesh_lib.batch_sharding(mesh, microbatched=False)
  total, batch, micro = cfg.train.steps, cfg.train.global_batch, cfg.train.num_microbatches
  tokens_per_example = source.tokens_per_example

  abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                          setup.abstract_state, state_sharding)
  restored = checkpointer.restore(abstract)
  if restored is None:
    example = source.examples(0, 1)["inputs"]
    init = jax.jit(functools.partial(init_state, model=setup.model, tx=setup.tx),
                   out_shardings=state_sharding)
    state, meta = init(jax.random.PRNGKey(cfg.seed), example), {"examples_seen": 0, "time_s": 0.0}
  else:
    state, meta = restored
  start = int(state.step)
  examples_seen, time_offset = int(meta["examples_seen"]), float(meta["time_s"])
  writer.truncate_after(start)

  step_fn = jax.jit(
      functools.partial(train_step, model=setup.model, tx=setup.tx, loss_fn=setup.loss_fn),
      in_shardings=(state_sharding, batch_sharding), out_shardings=(state_sharding, None),
      donate_argnums=0)
  eval_fn = jax.jit(functools.partial(eval_step, model=setup.model, loss_fn=setup.loss_fn),
                    in_shardings=(state_sharding, eval_sharding))
  eval_set = source.eval_set()

  def evaluate(state) -> dict:
    sums = [eval_fn(state, b) for b in _eval_batches(eval_set, cfg.train.eval_batch, eval_sharding)]
    sums = jax.device_get(sums)
    count = sum(s["count"] for s in sums)
    return {f"eval_{key[:-len('_sum')]}": float(sum(s[key] for s in sums) / count)
            for key in sums[0] if key.endswith("_sum")}

  def meta_now(elapsed):
    return {"examples_seen": examples_seen, "time_s": elapsed}

  status, pending, last_record = "ok", [], {}
  first_step_done, t_steady, steady_steps = None, 0.0, 0
  t0 = time.perf_counter()
  elapsed = lambda: time_offset + time.perf_counter() - t0

  def flush(bar):
    nonlocal status, last_record
    for record in jax.device_get(pending):
      bar.set_postfix(loss=f"{float(record['loss']):.3f}", refresh=False)
      loss = float(record["loss"])
      if not math.isfinite(loss) or loss > cfg.train.divergence_loss:
        status = "diverged"
      writer.write(record)
      last_record = record
    pending.clear()

  with _Preemption() as preemption, _progress(total, start) as bar:
    step = start
    while step < total and status == "ok":
      batch_arrays = _train_batch(source, examples_seen, batch, micro, batch_sharding)
      state, metrics = step_fn(state, batch_arrays)
      step += 1
      examples_seen += batch
      flush(bar)  # the previous log step's metrics are ready by now: fetch them one step late
      if first_step_done is None:
        jax.block_until_ready(metrics["loss"])
        first_step_done = time.perf_counter()
      if step % cfg.train.log_every == 0 or step == total:
        record = {"step": step, **metrics, "examples_seen": examples_seen,
                  "time_s": elapsed()}
        if tokens_per_example:
          record["tokens_seen"] = examples_seen * tokens_per_example
        if cfg.train.eval_every and (step % cfg.train.eval_every == 0 or step == total):
          record.update(evaluate(state))
        pending.append(record)
      bar.update(1)
      if preemption.requested:
        status = "preempted"
        break
      if step % cfg.train.checkpoint_every == 0 and step < total:
        checkpointer.save(step, state, meta_now(elapsed()))
    flush(bar)
    jax.block_until_ready(state)
    if first_step_done is not None:
      t_steady, steady_steps = time.perf_counter() - first_step_done, step - start - 1
    if status != "diverged":
      checkpointer.save(step, state, meta_now(elapsed()))
  checkpointer.close()
  writer.close()

  metrics_history = records.read_metrics(workdir) if is_main else []
  evals = [r["eval_loss"] for r in metrics_history if "eval_loss" in r]
  step_time = t_steady / steady_steps if steady_steps > 0 else None
  summary = {
      "status": status,
      "steps": step,
      "final_loss": _tail_mean(metrics_history, "loss") if is_main else last_record.get("loss"),
      "last_loss": last_record.get("loss"),
      "final_eval_loss": evals[-1] if evals else None,
      "best_eval_loss": min(evals) if evals else None,
      "final_eval_accuracy": next((r["eval_accuracy"] for r in reversed(metrics_history)
                                   if "eval_accuracy" in r), None),
      "examples_seen": examples_seen,
      "tokens_seen": examples_seen * tokens_per_example if tokens_per_example else None,
      "num_params": setup.num_params,
      "flops_per_example": setup.flops_per_example,
      "step_time_s": step_time,
      "examples_per_s": batch / step_time if step_time else None,
      "tokens_per_s": batch * tokens_per_example / step_time if step_time and tokens_per_example
                      else None,
      "model_flops_per_s": batch * setup.flops_per_example / step_time if step_time else None,
      "wall_time_s": elapsed(),
      "data": source.info,
      "devices": jax.device_count(),
      "processes": jax.process_count(),
      "jax_version": jax.__version__,
  }
  if is_main:
    records.write_json(os.path.join(workdir, "summary.json"), summary)
    if metrics_history:
      records.plot_loss(workdir, metrics_history, f"{cfg.model.name} / {cfg.optimizer.name}")
  return summary


def run(config, workdir: str, *, allow_config_change: bool = False) -> dict:
  """Trains ``config`` in ``workdir`` (resuming from its checkpoints); returns the summary."""
  return execute(prepare(config, workdir, allow_config_change=allow_config_change))
