"""The training loop, in the parts that sweeps, batch ramps and benchmarks reuse.

    setup = prepare(config, workdir)          # training.setup: checks and builds, no compile
    steps = compile_steps(setup)              # the jitted init, train and eval steps
    state, position = resume(setup, checkpointer) or fresh_state(setup, steps)
    train_loop(...)                           # steps, metrics, evals, checkpoints, preemption
    records.summarize(...)                    # summary.json

``execute(setup)`` runs them all in the workdir under its lock; ``run(config, workdir)`` is
``execute(prepare(...))``.
"""

import dataclasses
import functools
import json
import math
import os
import signal
import time
from collections.abc import Callable

import jax

from training import batches as batches_lib
from training import mesh as mesh_lib
from training import records
from training import workdir as workdir_lib
from training.checkpointing import Checkpointer, is_disk_full, quiet_writer_failures
from training.setup import Setup, init_state, prepare
from training.state import TrainState
from training.step import eval_step, train_step


@dataclasses.dataclass(frozen=True)
class Steps:
  """The compiled programs of a setup and the shardings their batches take.

  ``train(state, batch) -> (state, metrics)`` donates ``state``; ``evaluate(state, batch)``
  gives weighted sums (``eval_step``); ``init(rng, example_inputs)`` makes a sharded state.
  """

  init: Callable
  train: Callable
  evaluate: Callable
  batch_sharding: jax.sharding.NamedSharding
  eval_sharding: jax.sharding.NamedSharding
  compile_s: float


def _abstract(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


def compile_steps(setup: Setup) -> Steps:
  """Compiles the train and eval steps of ``setup`` once, for its shapes and shardings.

  The train step is ``jax.jit`` of ``train_step`` with the state's shardings in and out and the
  state donated; ``compile_s`` is the seconds spent compiling both.
  """
  cfg, mesh = setup.config, setup.mesh
  batch_sharding = mesh_lib.batch_sharding(mesh, microbatched=True)
  eval_sharding = mesh_lib.batch_sharding(mesh, microbatched=False)
  state_sharding = setup.state_sharding
  abstract_state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                setup.abstract_state, state_sharding)
  train_example = batches_lib.train_batch(setup.source, 0, cfg.train.global_batch,
                                          cfg.train.num_microbatches, batch_sharding)
  t0 = time.perf_counter()
  train = jax.jit(
      functools.partial(train_step, model=setup.model, tx=setup.tx, loss_fn=setup.loss_fn),
      in_shardings=(state_sharding, batch_sharding), out_shardings=(state_sharding, None),
      donate_argnums=0).lower(abstract_state, _abstract(train_example)).compile()
  evaluate = jax.jit(functools.partial(eval_step, model=setup.model, loss_fn=setup.loss_fn),
                     in_shardings=(state_sharding, eval_sharding))
  if cfg.train.eval_every:
    eval_example = next(batches_lib.eval_batches(setup.source.eval_set(), cfg.train.eval_batch,
                                                 eval_sharding))
    evaluate = evaluate.lower(abstract_state, _abstract(eval_example)).compile()
  compile_s = time.perf_counter() - t0
  return Steps(init=init_program(setup), train=train, evaluate=evaluate,
               batch_sharding=batch_sharding, eval_sharding=eval_sharding, compile_s=compile_s)


def init_program(setup: Setup) -> Callable:
  """``init(rng, example_inputs)``: the sharded initial state of ``setup``, with its own
  hyperparameters (a sweep's runs share the train step, each starts from its own state)."""
  return jax.jit(functools.partial(init_state, model=setup.model, tx=setup.tx),
                 out_shardings=setup.state_sharding)


@dataclasses.dataclass
class Position:
  """Where a run stands besides its state: examples drawn from the stream, seconds trained."""

  examples_seen: int = 0
  time_s: float = 0.0

  def as_meta(self) -> dict:
    return {"examples_seen": self.examples_seen, "time_s": self.time_s}


def resume(setup: Setup, checkpointer: Checkpointer) -> tuple[TrainState, Position] | None:
  """The state and position of the newest readable checkpoint, or ``None`` if there is none."""
  abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                          setup.abstract_state, setup.state_sharding)
  restored = checkpointer.restore(abstract)
  if restored is None:
    return None
  state, meta = restored
  return state, Position(int(meta["examples_seen"]), float(meta["time_s"]))


def fresh_state(setup: Setup, steps: Steps) -> tuple[TrainState, Position]:
  """The initial state (from ``config.seed``), sharded, at position 0."""
  example = setup.source.examples(0, 1)["inputs"]
  return steps.init(jax.random.PRNGKey(setup.config.seed), example), Position()


def evaluate(steps: Steps, state: TrainState, eval_set: dict, eval_batch: int) -> dict:
  """``eval_<metric>`` means over the whole evaluation set (padding rows weigh 0)."""
  sums = [steps.evaluate(state, b)
          for b in batches_lib.eval_batches(eval_set, eval_batch, steps.eval_sharding)]
  sums = jax.device_get(sums)
  count = sum(s["count"] for s in sums)
  return {f"eval_{key[:-len('_sum')]}": float(sum(s[key] for s in sums) / count)
          for key in sums[0] if key.endswith("_sum")}


class Preemption:
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


@dataclasses.dataclass
class LoopResult:
  status: str  # ok | diverged | preempted
  state: TrainState
  step: int
  position: Position
  last_record: dict
  step_time_s: float | None  # steady-state seconds per step (from the second step on)


def train_loop(setup: Setup, steps: Steps, state: TrainState, position: Position, *,
               checkpointer: Checkpointer, writer: records.MetricWriter,
               progress: records.Progress, preemption: Preemption) -> LoopResult:
  """Trains from ``state`` to ``train.steps``: logs, evaluates and checkpoints on schedule.

  Metrics are fetched one step late, so the host never waits for the device except at the
  first step (timed apart: it includes the first dispatch) and at checkpoints. A loss that is
  not finite or above ``train.divergence_loss`` stops the run as ``diverged``.
  """
  cfg, source = setup.config, setup.source
  total, batch, micro = cfg.train.steps, cfg.train.global_batch, cfg.train.num_microbatches
  tokens_per_example = source.tokens_per_example
  eval_set = source.eval_set() if cfg.train.eval_every else None
  status, pending, last_record = "ok", [], {}
  first_step_done, step_time = None, None
  start = step = int(state.step)
  t0, time_offset = time.perf_counter(), position.time_s
  elapsed = lambda: time_offset + time.perf_counter() - t0

  def flush():
    nonlocal status, last_record
    for record in jax.device_get(pending):
      if status == "diverged":
        break  # the run ends at its first bad record, wherever it was resumed from
      writer.write(record)
      progress.record(record)
      last_record = record
      loss = float(record["loss"])
      if not math.isfinite(loss) or loss > cfg.train.divergence_loss:
        status = "diverged"
    pending.clear()

  while step < total and status == "ok":
    batch_arrays = batches_lib.train_batch(source, position.examples_seen, batch, micro,
                                           steps.batch_sharding)
    state, metrics = steps.train(state, batch_arrays)
    step += 1
    position.examples_seen += batch
    flush()  # the previous log step's metrics are ready by now: fetch them one step late
    if first_step_done is None:
      jax.block_until_ready(metrics["loss"])
      first_step_done = time.perf_counter()
    if step % cfg.train.log_every == 0 or step == total:
      record = {"step": step, **metrics, "examples_seen": position.examples_seen,
                "time_s": elapsed()}
      if tokens_per_example:
        record["tokens_seen"] = position.examples_seen * tokens_per_example
      if eval_set is not None and (step % cfg.train.eval_every == 0 or step == total):
        record.update(evaluate(steps, state, eval_set, cfg.train.eval_batch))
      pending.append(record)
    progress.update(1)
    if preemption.requested:
      status = "preempted"
      break
    if step % cfg.train.checkpoint_every == 0 and step < total:
      position.time_s = elapsed()
      checkpointer.save(step, state, position.as_meta())
  flush()
  jax.block_until_ready(state)
  if first_step_done is not None and step - start > 1:
    step_time = (time.perf_counter() - first_step_done) / (step - start - 1)
  position.time_s = elapsed()
  if status == "diverged":  # reported at the bad record, not at the step the host had reached
    step, position.examples_seen = last_record["step"], last_record["examples_seen"]
  return LoopResult(status=status, state=state, step=step, position=position,
                    last_record=last_record, step_time_s=step_time)


def summarize(setup: Setup, result: LoopResult, *, plot: bool = True) -> dict:
  """Writes ``summary.json`` and ``report/loss.png`` (first process) and returns the summary."""
  cfg, workdir, source = setup.config, setup.workdir, setup.source
  is_main = jax.process_index() == 0
  history = records.read_metrics(workdir) if is_main else []
  summary = records.summarize(
      status=result.status, steps=result.step, examples_seen=result.position.examples_seen,
      history=history, last_record=result.last_record, step_time_s=result.step_time_s,
      wall_time_s=result.position.time_s, global_batch=cfg.train.global_batch,
      tokens_per_example=source.tokens_per_example, num_params=setup.num_params,
      flops_per_example=setup.flops_per_example, data_info=source.info,
      devices=jax.device_count(), processes=jax.process_count(), jax_version=jax.__version__)
  if is_main:
    records.write_json(os.path.join(workdir, "summary.json"), summary)
    if history and plot:
      records.plot_loss(workdir, history, f"{cfg.model.name} / {cfg.optimizer.name}")
  return summary


def execute(setup: Setup, steps: Steps | None = None, *, plot: bool = True) -> dict:
  """Trains from the newest checkpoint in the workdir (or from scratch); returns the summary.

  ``steps``: programs compiled for another setup of the same shapes and optimizer structure
  (a sweep's group); by default ``compile_steps(setup)``. ``plot=False``: no ``report/loss.png``
  (a sweep's runs: the sweep's report draws them together).

  Raises ``workdir.WorkdirBusy`` (another live run holds the workdir) or
  ``checkpointing.CheckpointError`` (no checkpoint readable, or one could not be saved) with a
  one-line message; the workdir is left resumable.
  """
  cfg, workdir = setup.config, setup.workdir
  is_main = jax.process_index() == 0
  with workdir_lib.Lock(workdir, enabled=is_main), quiet_writer_failures():
    checkpointer = Checkpointer(workdir, max_to_keep=cfg.train.keep_checkpoints,
                                state_bytes=setup.state_bytes)
    writer = None
    try:
      resumed = resume(setup, checkpointer)
      if is_main:
        records.write_json(os.path.join(workdir, "config.json"),
                           json.loads(cfg.to_json_best_effort()))
      writer = records.MetricWriter(workdir, tensorboard=cfg.tensorboard, enabled=is_main)
      steps = compile_steps(setup) if steps is None else steps
      state, position = resumed or fresh_state(setup, steps)
      writer.truncate_after(int(state.step))
      with Preemption() as preemption, records.Progress(
          cfg.train.steps, int(state.step), enabled=is_main) as progress:
        result = train_loop(setup, steps, state, position, checkpointer=checkpointer,
                            writer=writer, progress=progress, preemption=preemption)
      if result.status != "diverged":
        checkpointer.save(result.step, result.state, result.position.as_meta())
      checkpointer.wait()
      writer.close()
      return summarize(setup, result, plot=plot)
    except OSError as e:  # the metrics, the summary or the plot; the checkpoints are intact
      if is_disk_full(e):
        raise checkpointer.disk_full_error(f"the run's records in {workdir}") from None
      raise
    finally:
      if writer is not None:
        writer.close()
      checkpointer.close()


def run(config, workdir: str, *, allow_config_change: bool = False) -> dict:
  """Trains ``config`` in ``workdir`` (resuming from its checkpoints); returns the summary."""
  return execute(prepare(config, workdir, allow_config_change=allow_config_change))
