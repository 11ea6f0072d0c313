"""The training loop, in the parts that sweeps, batch ramps and benchmarks reuse.

    setup = prepare(config, workdir)          # training.setup: checks and builds, no compile
    steps = compile_steps(setup)              # the jitted init, train and eval steps
    state, position = resume(setup, checkpointer) or fresh_state(setup, steps)
    train_loop(...)                           # steps, metrics, evals, checkpoints, preemption
    summarize(...)                            # summary.json

``execute(setup)`` runs them all in the workdir under its lock; ``run(config, workdir)`` is
``execute(prepare(...))``; ``config.profile_steps`` traces a window of its steps with
``jax.profiler`` into ``WORKDIR/profile`` (``Profile``). A vmapped sweep group
(``training.vmapped``) trains through the same parts: ``workspace``, ``restore``,
``open_records``, ``run_steps`` (with its own ``Ledger``), ``evaluate`` and ``summarize``.
"""

import contextlib
import dataclasses
import functools
import json
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import jax

from training import batch_tests, records
from training import batches as batches_lib
from training import mesh as mesh_lib
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
  ``train`` is compiled for the first stage's batch; ``for_shape`` gives (and compiles once)
  the train step of another batch shape, a ramp's later stage: ``programs`` holds every one
  compiled so far, by the batch's shapes.
  """

  init: Callable
  train: Callable
  evaluate: Callable
  batch_sharding: jax.sharding.NamedSharding
  eval_sharding: jax.sharding.NamedSharding
  compile_s: float
  compile_train: Callable | None = None  # example batch -> the compiled train step
  programs: dict = dataclasses.field(default_factory=dict)

  def for_shape(self, batch) -> Callable:
    """The train step for ``batch``'s shapes: ``train``, or one compiled once for them."""
    key = _shape_key(batch)
    if key not in self.programs:
      self.programs[key] = self.compile_train(_abstract(batch))
    return self.programs[key]


def _shape_key(batch) -> tuple:
  return tuple(x.shape for x in jax.tree.leaves(batch))


def _abstract(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


def placed(abstract_state, shardings, *, runs: int | None = None):
  """``abstract_state`` with ``shardings``; ``runs``: stacked on a leading run axis of that size
  (a vmapped group's states)."""
  lead = () if runs is None else (runs,)
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct((*lead, *x.shape), x.dtype, sharding=s),
      abstract_state, shardings)


def compile_steps(setup: Setup) -> Steps:
  """Compiles the train and eval steps of ``setup`` once, for its shapes and shardings.

  The train step is ``jax.jit`` of ``train_step`` with the state's shardings in and out and the
  state donated; ``compile_s`` is the seconds spent compiling both.
  """
  cfg, mesh = setup.config, setup.mesh
  batch_sharding = mesh_lib.batch_sharding(mesh, microbatched=True)
  eval_sharding = mesh_lib.batch_sharding(mesh, microbatched=False)
  state_sharding = setup.state_sharding
  abstract_state = placed(setup.abstract_state, state_sharding)
  first = setup.ramp.stages[0]
  train_example = batches_lib.train_batch(setup.source, 0, first.batch,
                                          cfg.train.num_microbatches, batch_sharding,
                                          first.seq_len)
  t0 = time.perf_counter()
  jitted = jax.jit(
      functools.partial(train_step, model=setup.model, tx=setup.tx, loss_fn=setup.loss_fn),
      in_shardings=(state_sharding, batch_sharding), out_shardings=(state_sharding, None),
      donate_argnums=0)
  compile_train = lambda example: jitted.lower(abstract_state, example).compile()
  train = compile_train(_abstract(train_example))
  evaluate = jax.jit(functools.partial(eval_step, model=setup.model, loss_fn=setup.loss_fn),
                     in_shardings=(state_sharding, eval_sharding))
  if cfg.train.eval_every:
    eval_example = next(batches_lib.eval_batches(setup.source.eval_set(), cfg.train.eval_batch,
                                                 eval_sharding))
    evaluate = evaluate.lower(abstract_state, _abstract(eval_example)).compile()
  compile_s = time.perf_counter() - t0
  return Steps(init=init_program(setup), train=train, evaluate=evaluate,
               batch_sharding=batch_sharding, eval_sharding=eval_sharding, compile_s=compile_s,
               compile_train=compile_train, programs={_shape_key(train_example): train})


def init_program(setup: Setup) -> Callable:
  """``init(rng, example_inputs)``: the sharded initial state of ``setup``, with its own
  hyperparameters (a sweep's runs share the train step, each starts from its own state)."""
  return jax.jit(functools.partial(init_state, model=setup.model, tx=setup.tx),
                 out_shardings=setup.state_sharding)


@dataclasses.dataclass
class Position:
  """Where a run stands besides its state: examples drawn from the stream, seconds trained,
  and the batch an adaptive test chose for the next step (0: no adaptive batch)."""

  examples_seen: int = 0
  time_s: float = 0.0
  batch: int = 0

  def as_meta(self) -> dict:
    return {"examples_seen": self.examples_seen, "time_s": self.time_s, "batch": self.batch}


def restore(checkpointer: Checkpointer, abstract) -> tuple[Any, Position] | None:
  """The tree (shaped as ``abstract``) and position of the newest readable checkpoint, or
  ``None`` if there is none."""
  restored = checkpointer.restore(abstract)
  if restored is None:
    return None
  tree, meta = restored
  return tree, Position(int(meta["examples_seen"]), float(meta["time_s"]),
                        int(meta.get("batch", 0)))


def resume(setup: Setup, checkpointer: Checkpointer) -> tuple[TrainState, Position] | None:
  """The state and position of the newest readable checkpoint, or ``None`` if there is none."""
  return restore(checkpointer, placed(setup.abstract_state, setup.state_sharding))


def fresh_state(setup: Setup, steps: Steps) -> tuple[TrainState, Position]:
  """The initial state (from ``config.seed``), sharded, at position 0."""
  example = setup.source.examples(0, 1)["inputs"]
  return steps.init(jax.random.PRNGKey(setup.config.seed), example), Position()


def evaluate(steps: Steps, state: TrainState, eval_set: dict, eval_batch: int) -> dict:
  """``eval_<metric>`` means over the whole evaluation set (padding rows weigh 0).

  Given a vmapped group's programs (``vmapped.GroupSteps``) and stacked states, each mean is a
  list with one value per run.
  """
  sums = [steps.evaluate(state, b)
          for b in batches_lib.eval_batches(eval_set, eval_batch, steps.eval_sharding)]
  sums = jax.device_get(sums)
  count = sum(s["count"] for s in sums)
  # ``tolist``: a float from a scalar, a list of floats from a group's run axis.
  return {f"eval_{key[:-len('_sum')]}": (sum(s[key] for s in sums) / count).tolist()
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
  state: TrainState | None  # None: a vmapped group's run (its state is a lane of the group's)
  step: int
  position: Position
  last_record: dict
  step_time_s: float | None  # steady-state seconds per step (from the second step on)


@dataclasses.dataclass(frozen=True)
class Cadence:
  """Which steps log, evaluate and checkpoint (``config.train``'s ``*_every``).

  The last step always logs (and evaluates, when there is evaluation at all); it is
  checkpointed after the loop, with the run's end.
  """

  total: int
  log_every: int
  eval_every: int  # 0: no evaluation
  checkpoint_every: int

  @classmethod
  def of(cls, config, total: int | None = None) -> "Cadence":
    """``config.train``'s cadence over ``total`` steps (a ramp's; default ``train.steps``)."""
    t = config.train
    return cls(t.steps if total is None else total, t.log_every, t.eval_every,
               t.checkpoint_every)

  def logs(self, step: int) -> bool:
    return step % self.log_every == 0 or step == self.total

  def evaluates(self, step: int) -> bool:
    return bool(self.eval_every) and self.logs(step) and (
        step % self.eval_every == 0 or step == self.total)

  def checkpoints(self, step: int) -> bool:
    return step % self.checkpoint_every == 0 and step < self.total


def healthy(loss, bound: float):
  """Whether ``loss`` is finite and at most ``bound`` (``train.divergence_loss``).

  Comparisons only, so the same test runs on the host's fetched floats and inside a vmapped
  group's program on its lanes' losses.
  """
  return (-math.inf < loss) & (loss < math.inf) & (loss <= bound)


class Profile:
  """A ``jax.profiler`` trace of the steps ``window = (start, stop)`` (numbered as in
  ``metrics.jsonl``, both included) written under ``directory``; ``window=None``: no trace.

  The trace starts before step ``start`` is dispatched and stops once step ``stop`` has
  finished on the device (what happens between, evaluations and checkpoints included, is in
  it); each step is a ``StepTraceAnnotation``, so TensorBoard's profile plugin tells the steps
  apart. A run resumed inside the window traces what is left of it. The trace is
  ``plugins/profile/<time>/<host>.xplane.pb`` (TensorBoard, XProf) with a
  ``perfetto_trace.json.gz`` beside it (ui.perfetto.dev).
  """

  def __init__(self, directory: str = "", window: tuple[int, int] | None = None):
    self.directory, self.window, self.active = directory, window, False

  def before(self, done: int) -> contextlib.AbstractContextManager:
    """Called before step ``done + 1`` is dispatched: starts the trace when that step is the
    window's first (or later, on a resumed run); the context annotates the step."""
    if self.window is None or not self.window[0] <= done + 1 <= self.window[1]:
      return contextlib.nullcontext()
    if not self.active:
      jax.profiler.start_trace(self.directory, create_perfetto_trace=True)
      self.active = True
    return jax.profiler.StepTraceAnnotation("train", step_num=done + 1)

  def after(self, done: int, tree) -> None:
    """Called once step ``done`` is dispatched: stops the trace after the window's last."""
    if self.active and done >= self.window[1]:
      self.stop(tree)

  def stop(self, tree=None) -> None:
    """Ends the trace if it is running, once ``tree`` (if given) is computed."""
    if self.active:
      if tree is not None:
        jax.block_until_ready(tree)
      self.active = False
      jax.profiler.stop_trace()


class Ledger(Protocol):
  """The host's side of ``run_steps``: what each step leaves, written one step late."""

  def note(self, step: int, tree, metrics: dict, *, examples_seen: int, time_s: float,
           evals: dict) -> None:
    """Keeps the outputs of ``step`` (still on the device: nothing is fetched here)."""

  def settle(self) -> bool:
    """Fetches and writes what was noted; whether training goes on (no divergence ended it)."""


def run_steps(train: Callable, tree, step: int, position: Position, *,
              next_batch: Callable[[int, int], tuple[Any, int]], cadence: Cadence,
              ledger: Ledger, evaluate_at: Callable | None, checkpointer: Checkpointer,
              progress: records.Progress, preemption: Preemption,
              profile: Profile | None = None) -> tuple[str, Any, int, float | None]:
  """Trains ``tree`` from ``step`` to ``cadence.total``; returns ``(status, tree, step,
  step_time_s)`` and leaves ``position`` at the end.

  ``train(tree, batch) -> (tree, metrics)`` donates ``tree``; ``next_batch(step,
  examples_seen) -> (batch, examples in it)``;
  ``evaluate_at(tree)`` gives the ``eval_*`` means. The ledger settles a step after the next one
  is dispatched, so the host never waits for the device except at the first step (timed apart:
  it includes the first dispatch), at evaluations and at checkpoints. ``status`` is ``diverged``
  when the ledger ends the run, ``preempted`` on SIGTERM, else ``ok``. ``profile``: the
  window of steps to trace (``Profile``; none by default).
  """
  profile = profile or Profile()
  try:
    return _run_steps(train, tree, step, position, next_batch=next_batch, cadence=cadence,
                      ledger=ledger, evaluate_at=evaluate_at, checkpointer=checkpointer,
                      progress=progress, preemption=preemption, profile=profile)
  finally:
    profile.stop()  # a run that ended inside its window, or failed: the trace so far


def _run_steps(train, tree, step, position, *, next_batch, cadence, ledger, evaluate_at,
               checkpointer, progress, preemption, profile):
  """``run_steps``'s loop; ``run_steps`` ends the profile's trace however it exits."""
  going, preempted, first_step_done = True, False, None
  start = step
  t0, time_offset = time.perf_counter(), position.time_s
  elapsed = lambda: time_offset + time.perf_counter() - t0
  while step < cadence.total and going:
    with profile.before(step):  # a traced step: its batch and its dispatch
      batch, drawn = next_batch(step, position.examples_seen)
      tree, metrics = train(tree, batch)
    step += 1
    position.examples_seen += drawn
    going = ledger.settle()
    if first_step_done is None:
      jax.block_until_ready(metrics["loss"])
      first_step_done = time.perf_counter()
    time_s = elapsed()  # a record's time excludes its evaluation
    evals = evaluate_at(tree) if evaluate_at is not None and cadence.evaluates(step) else {}
    ledger.note(step, tree, metrics, examples_seen=position.examples_seen, time_s=time_s,
                evals=evals)
    progress.update(1)
    if preemption.requested:
      preempted = True
      break
    if cadence.checkpoints(step):
      position.time_s = elapsed()
      checkpointer.save(step, tree, position.as_meta())
    profile.after(step, tree)
  going = ledger.settle() and going
  jax.block_until_ready(tree)
  profile.stop()
  step_time = None
  if first_step_done is not None and step - start > 1:
    step_time = (time.perf_counter() - first_step_done) / (step - start - 1)
  position.time_s = elapsed()
  status = "diverged" if not going else "preempted" if preempted else "ok"
  return status, tree, step, step_time


class _RunLedger:
  """One run's records: its logged steps, written to ``metrics.jsonl`` until the first whose
  loss is not ``healthy``."""

  def __init__(self, writer: records.MetricWriter, progress: records.Progress, *,
               cadence: Cadence, bound: float, tokens_seen: Callable[[int, int], int | None]):
    self._writer, self._progress, self._cadence = writer, progress, cadence
    self._bound, self._tokens_seen = bound, tokens_seen
    self._pending = []
    self.diverged, self.last_record = False, {}

  def note(self, step, tree, metrics, *, examples_seen, time_s, evals):
    del tree
    if self._cadence.logs(step):
      self._pending.append({**records.step_record(
          step, metrics, examples_seen=examples_seen, time_s=time_s,
          tokens_seen=self._tokens_seen(step, examples_seen)), **evals})

  def settle(self) -> bool:
    for record in jax.device_get(self._pending):
      if self.diverged:
        break  # the run ends at its first bad record, wherever it was resumed from
      self._writer.write(record)
      self._progress.record(record)
      self.last_record = record
      self.diverged = not healthy(float(record["loss"]), self._bound)
    self._pending.clear()
    return not self.diverged


def train_loop(setup: Setup, steps: Steps, state: TrainState, position: Position, *,
               checkpointer: Checkpointer, writer: records.MetricWriter,
               progress: records.Progress, preemption: Preemption) -> LoopResult:
  """Trains from ``state`` to the run's last step (``train.steps``, or a Seesaw ramp's): logs,
  evaluates and checkpoints on schedule, each step at its ramp stage's batch and length.

  Metrics are fetched one step late (``run_steps``). A logged loss that is not finite or above
  ``train.divergence_loss`` stops the run as ``diverged``.
  """
  cfg, source, ramp = setup.config, setup.source, setup.ramp
  cadence = Cadence.of(cfg, ramp.total_steps)
  tokens = source.tokens_per_example
  tokens_seen = ((lambda step, seen: ramp.tokens_before(step)) if len(ramp.stages) > 1
                 else (lambda step, seen: seen * tokens if tokens else None))
  ledger = _RunLedger(writer, progress, cadence=cadence, bound=cfg.train.divergence_loss,
                      tokens_seen=tokens_seen)
  evaluate_at = None
  if cfg.train.eval_every:
    evaluate_at = functools.partial(evaluate, steps, eval_set=source.eval_set(),
                                    eval_batch=cfg.train.eval_batch)
  micro_size = cfg.train.global_batch // cfg.train.num_microbatches
  adaptive = ramp.adaptive
  if adaptive is not None:
    position.batch = position.batch or cfg.train.global_batch
    test = batch_tests.compiled_test(adaptive.test, adaptive.eta, setup.loss_fn, setup.model)
  testing = False

  def next_batch(step: int, seen: int):
    nonlocal testing
    # The batch and length of this step: its stage's, or the adaptive test's last choice.
    stage = ramp.stage(step)
    size = position.batch if adaptive is not None else stage.batch
    testing = adaptive is not None and step % adaptive.every == 0
    return batches_lib.train_batch(source, seen, size, size // micro_size,
                                   steps.batch_sharding, stage.seq_len), size

  def train(state, batch):
    size = jax.tree.leaves(batch)[0].shape[0] * micro_size
    if testing:  # AdAdaGrad: tested at the step's point on its batch; sets the next batch
      first = jax.tree.map(lambda x: x[0], batch)  # per-example gradients of one microbatch
      wanted = float(test(state.params, state.model_state, first, state.rng))
      position.batch = batch_tests.next_batch(size, wanted, multiple=micro_size,
                                              cap=adaptive.max_batch)
    # Each distinct batch shape compiles once, the first time the run reaches it.
    state, metrics = steps.for_shape(batch)(state, batch)
    return state, ({**metrics, "batch": size} if len(ramp.stages) > 1 or adaptive else metrics)

  profile_dir = os.path.join(setup.workdir, "profile")
  if jax.process_count() > 1:  # each process traces its own devices; one folder each
    profile_dir = os.path.join(profile_dir, f"process_{jax.process_index()}")
  status, state, step, step_time = run_steps(
      train, state, int(state.step), position, next_batch=next_batch, cadence=cadence,
      ledger=ledger, evaluate_at=evaluate_at, checkpointer=checkpointer, progress=progress,
      preemption=preemption, profile=Profile(profile_dir, setup.profile_steps))
  last = ledger.last_record
  if status == "diverged":  # reported at the bad record, not at the step the host had reached
    step, position.examples_seen = last["step"], last["examples_seen"]
  return LoopResult(status=status, state=state, step=step, position=position,
                    last_record=last, step_time_s=step_time)


def summarize(setup: Setup, result: LoopResult, *, plot: bool = True,
              group: dict | None = None) -> dict:
  """Writes ``summary.json`` and ``report/loss.png`` (first process) and returns the summary.

  ``group``: the vmapped group the run trained in, recorded as the summary's ``group``.
  """
  cfg, workdir, source = setup.config, setup.workdir, setup.source
  is_main = jax.process_index() == 0
  history = records.read_metrics(workdir) if is_main else []
  batch, per_example, tokens_seen = cfg.train.global_batch, source.tokens_per_example, None
  examples = result.position.examples_seen
  if len(setup.ramp.stages) > 1 and result.step and examples:  # the ramp's means
    tokens_seen = setup.ramp.tokens_before(result.step)
    batch, per_example = examples / result.step, tokens_seen / examples
  summary = records.summarize(
      status=result.status, steps=result.step, examples_seen=examples, tokens_seen=tokens_seen,
      history=history, last_record=result.last_record, step_time_s=result.step_time_s,
      wall_time_s=result.position.time_s, global_batch=batch,
      tokens_per_example=per_example, num_params=setup.num_params,
      flops_per_example=setup.flops_per_example, data_info=source.info,
      devices=jax.device_count(), processes=jax.process_count(), jax_version=jax.__version__)
  if group is not None:
    summary["group"] = group
  if is_main:
    records.write_json(os.path.join(workdir, "summary.json"), summary)
    if history and plot:
      records.plot_loss(workdir, history, f"{cfg.model.name} / {cfg.optimizer.name}")
  return summary


@contextlib.contextmanager
def workspace(directory: str, *, keep: int, state_bytes: int,
              records_of: str) -> Iterator[Checkpointer]:
  """Holds ``directory`` (its lock) and yields its ``Checkpointer``, closed on the way out.

  A full disk while writing the records (``records_of``: whose, for the message) ends in the
  one-line ``CheckpointError`` a checkpoint's would; the checkpoints are intact.
  """
  with workdir_lib.Lock(directory, enabled=jax.process_index() == 0), quiet_writer_failures():
    checkpointer = Checkpointer(directory, max_to_keep=keep, state_bytes=state_bytes)
    try:
      yield checkpointer
    except OSError as e:  # the metrics, the summary or the plot
      if is_disk_full(e):
        raise checkpointer.disk_full_error(records_of) from None
      raise
    finally:
      checkpointer.close()


def open_records(setup: Setup, *, tensorboard: bool) -> records.MetricWriter:
  """Writes the run's ``config.json`` and opens its ``metrics.jsonl`` (first process)."""
  is_main = jax.process_index() == 0
  os.makedirs(setup.workdir, exist_ok=True)
  if is_main:
    records.write_json(os.path.join(setup.workdir, "config.json"),
                       json.loads(setup.config.to_json_best_effort()))
  return records.MetricWriter(setup.workdir, tensorboard=tensorboard, enabled=is_main)


def execute(setup: Setup, steps: Steps | None = None, *, plot: bool = True) -> dict:
  """Trains from the newest checkpoint in the workdir (or from scratch); returns the summary.

  ``steps``: programs compiled for another setup of the same shapes and optimizer structure
  (a sweep's group); by default ``compile_steps(setup)``. ``plot=False``: no ``report/loss.png``
  (a sweep's runs: the sweep's report draws them together).

  Raises ``workdir.WorkdirBusy`` (another live run holds the workdir) or
  ``checkpointing.CheckpointError`` (no checkpoint readable, one could not be saved, or the disk
  filled up under the records) with a one-line message; the workdir is left resumable.
  """
  cfg, workdir = setup.config, setup.workdir
  with workspace(workdir, keep=cfg.train.keep_checkpoints, state_bytes=setup.state_bytes,
                 records_of=f"the run's records in {workdir}") as checkpointer:
    resumed = resume(setup, checkpointer)
    writer = open_records(setup, tensorboard=cfg.tensorboard)
    try:
      steps = compile_steps(setup) if steps is None else steps
      state, position = resumed or fresh_state(setup, steps)
      writer.truncate_after(int(state.step))
      with Preemption() as preemption, records.Progress(
          setup.ramp.total_steps, int(state.step),
          enabled=jax.process_index() == 0) as progress:
        result = train_loop(setup, steps, state, position, checkpointer=checkpointer,
                            writer=writer, progress=progress, preemption=preemption)
      if result.status != "diverged":
        checkpointer.save(result.step, result.state, result.position.as_meta())
      checkpointer.wait()
    finally:
      writer.close()
    return summarize(setup, result, plot=plot)


def run(config, workdir: str, *, allow_config_change: bool = False) -> dict:
  """Trains ``config`` in ``workdir`` (resuming from its checkpoints); returns the summary."""
  return execute(prepare(config, workdir, allow_config_change=allow_config_change))
