"""A sweep's group trained as one program: the runs' states stacked on a leading run axis.

Runs of a group (``sweep.program_key``) differ only in values the state carries, so their train
steps are one function of the state: ``jax.vmap(train_step)`` over the stacked states trains K
runs in one call, on one batch when their data streams are the same (one seed) or on K stacked
batches when they are not. A run whose loss is not finite or above ``train.divergence_loss`` is
frozen at its last good state inside the program (its lane keeps computing and is discarded),
so the other runs go on untouched: every lane computes only on its own values.

The group checkpoints its stacked state in ``DIR/groups/<group id>`` (every
``train.checkpoint_every`` steps) and resumes from it; each run still gets its own
``metrics.jsonl`` and ``summary.json`` in its workdir, so rows, reports and restarts treat it as
any run. A run's ``wall_time_s`` and ``step_time_s`` are its share (the group's over K).
``profile_steps`` traces those steps of the group's program into ``DIR/groups/<group id>/profile``.

The group trains through the single run's loop (``loop.run_steps``): only its ledger, which
reads each run's lane of the metrics, is its own.
"""

import dataclasses
import functools
import hashlib
import json
import os
import time

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec

from training import batches as batches_lib
from training import mesh as mesh_lib
from training import records
from training.loop import (
  Cadence,
  LoopResult,
  Position,
  Preemption,
  Profile,
  evaluate,
  healthy,
  init_program,
  open_records,
  placed,
  restore,
  run_steps,
  summarize,
  workspace,
)
from training.setup import Setup
from training.step import eval_step, train_step


def _stacked_sharding(sharding: NamedSharding) -> NamedSharding:
  return NamedSharding(sharding.mesh, PartitionSpec(None, *sharding.spec))


def stack(trees):
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def lane(tree, k: int):
  return jax.tree.map(lambda x: x[k], tree)


@dataclasses.dataclass(frozen=True)
class GroupSteps:
  """``train(states, alive, batch) -> (states, alive, metrics)`` (states donated) and
  ``evaluate(states, batch) -> sums``, both over the leading run axis."""

  train: object
  evaluate: object
  shared_batch: bool
  batch_sharding: NamedSharding
  eval_sharding: NamedSharding
  state_sharding: object
  compile_s: float


def shares_batches(setups: list[Setup]) -> bool:
  """Whether every run of the group reads the same stream (same data identity and seed)."""
  ids = {json.dumps(s.source.info, sort_keys=True, default=str) + f"|{s.config.seed}"
         for s in setups}
  return len(ids) == 1


def compile_group(setups: list[Setup]) -> GroupSteps:
  """Compiles the vmapped train and eval steps of a group of ``len(setups)`` runs, once."""
  setup, k = setups[0], len(setups)
  cfg, mesh = setup.config, setup.mesh
  shared = shares_batches(setups)
  batch_sharding = mesh_lib.batch_sharding(mesh, microbatched=True)
  eval_sharding = mesh_lib.batch_sharding(mesh, microbatched=False)
  state_sharding = jax.tree.map(_stacked_sharding, setup.state_sharding)
  abstract = placed(setup.abstract_state, state_sharding, runs=k)
  example = batches_lib.train_batch(setup.source, 0, cfg.train.global_batch,
                                    cfg.train.num_microbatches, batch_sharding)
  if not shared:
    batch_sharding = _stacked_sharding(batch_sharding)
    example = jax.tree.map(lambda x: jax.ShapeDtypeStruct((k, *x.shape), x.dtype), example)
  example = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=batch_sharding),
                         example)
  one = functools.partial(train_step, model=setup.model, tx=setup.tx, loss_fn=setup.loss_fn)
  bound = cfg.train.divergence_loss

  def group_step(states, alive, batch):
    new, metrics = jax.vmap(one, in_axes=(0, None if shared else 0))(states, batch)
    ok = alive & healthy(metrics["loss"], bound)
    keep = lambda n, o: jnp.where(ok.reshape((k,) + (1,) * (n.ndim - 1)), n, o)
    return jax.tree.map(keep, new, states), ok, metrics

  t0 = time.perf_counter()
  alive_abstract = jax.ShapeDtypeStruct((k,), jnp.bool_)
  train = jax.jit(group_step, in_shardings=(state_sharding, None, batch_sharding),
                  out_shardings=(state_sharding, None, None), donate_argnums=0
                  ).lower(abstract, alive_abstract, example).compile()
  evaluate = jax.jit(jax.vmap(functools.partial(eval_step, model=setup.model,
                                                loss_fn=setup.loss_fn), in_axes=(0, None)),
                     in_shardings=(state_sharding, eval_sharding))
  return GroupSteps(train=train, evaluate=evaluate, shared_batch=shared,
                    batch_sharding=mesh_lib.batch_sharding(mesh, microbatched=True),
                    eval_sharding=eval_sharding, state_sharding=state_sharding,
                    compile_s=time.perf_counter() - t0)


def _is_injected(node) -> bool:
  return isinstance(node, optax.InjectStatefulHyperparamsState | optax.InjectHyperparamsState)


def _hyperparams(opt_state) -> list[dict]:
  leaves = jax.tree.leaves(opt_state, is_leaf=_is_injected)
  return [node.hyperparams for node in leaves if _is_injected(node)]


def with_own_hyperparams(state, setup: Setup):
  """``state``, made by another run's init program of the group, with ``setup``'s own
  hyperparameters (the only values in which the group's initial states differ but the seed's).

  Their values come from a program that keeps nothing of ``setup.tx.init`` but those scalars,
  which compiles in a moment where a whole init program takes seconds.
  """
  mine = iter(jax.jit(lambda params: _hyperparams(setup.tx.init(params)))(state.params))

  def own(node):
    if not _is_injected(node):
      return node
    new = next(mine)
    return node._replace(hyperparams={
        k: jax.device_put(jax.numpy.asarray(new[k], v.dtype), v.sharding)
        for k, v in node.hyperparams.items()})

  return state.replace(opt_state=jax.tree.map(own, state.opt_state, is_leaf=_is_injected))


def group_id(run_ids: list[str]) -> str:
  return hashlib.sha1("|".join(run_ids).encode()).hexdigest()[:12]


def _batch(setups, steps: GroupSteps, start: int):
  cfg = setups[0].config
  make = lambda s: batches_lib.train_batch(s.source, start, cfg.train.global_batch,
                                           cfg.train.num_microbatches, steps.batch_sharding)
  return make(setups[0]) if steps.shared_batch else stack([make(s) for s in setups])


def _train(program, tree, batch):
  """The group's program as ``run_steps`` calls it: the states and the alive mask in one tree.
  Only the states are donated: the ledger reads a step's mask after the next step starts."""
  states, alive, metrics = program(tree["states"], tree["alive"], batch)
  return {"states": states, "alive": alive}, metrics


def _fresh(setups: list[Setup], steps: GroupSteps, init) -> dict:
  example = setups[0].source.examples(0, 1)["inputs"]
  states = stack([with_own_hyperparams(init(jax.random.PRNGKey(s.config.seed), example), s)
                  for s in setups])
  return {"states": jax.device_put(states, steps.state_sharding),
          "alive": jnp.ones((len(setups),), jnp.bool_)}


class _GroupLedger:
  """Each run's records, read from its lane of the group's metrics: its logged steps, and the
  step at which the program froze it (diverged), whatever the cadence.

  The alive mask, like the metrics, is fetched a step late; a run frozen before a resume takes
  its end and last record from its ``metrics.jsonl``.
  """

  def __init__(self, setups: list[Setup], writers: list[records.MetricWriter],
               alive: list[bool], *, step: int, cadence: Cadence, tokens_per_example: int):
    self._writers, self._cadence = writers, cadence
    self._tokens_per_example = tokens_per_example
    self._pending = None
    self.alive = alive
    self.ended = [None] * len(setups)  # the step at which a run diverged
    self.last = [{} for _ in setups]
    for j, s in enumerate(setups):
      if not alive[j]:
        rows = records.read_metrics(s.workdir)
        self.ended[j], self.last[j] = (rows[-1]["step"], rows[-1]) if rows else (step, {})

  def note(self, step, tree, metrics, *, examples_seen, time_s, evals):
    self._pending = (step, tree["alive"], metrics, examples_seen, time_s, evals)

  def settle(self) -> bool:
    if self._pending is not None:
      self._write(*self._pending)
      self._pending = None
    return any(self.alive)

  def _write(self, step, alive, metrics, examples_seen, time_s, evals):
    now_alive = [bool(a) for a in jax.device_get(alive)]
    logged = self._cadence.logs(step)
    if logged or now_alive != self.alive:
      host = jax.device_get(metrics)
      for j, writer in enumerate(self._writers):
        if not self.alive[j] or (now_alive[j] and not logged):
          continue  # frozen before, or alive at a step that does not log
        tokens = self._tokens_per_example
        record = records.step_record(step, lane(host, j), examples_seen=examples_seen,
                                     time_s=time_s,
                                     tokens_seen=examples_seen * tokens if tokens else None)
        if now_alive[j]:
          record.update({key: means[j] for key, means in evals.items()})
        else:
          self.ended[j] = step
        writer.write(record)
        self.last[j] = {key: records.plain(v) for key, v in record.items()}
    self.alive = now_alive


def train_group(setups: list[Setup], run_ids: list[str], group_dir: str, *,
                programs: dict | None = None) -> list[dict] | None:
  """Trains the group to ``train.steps`` (resuming from ``group_dir``); returns each run's
  summary, or ``None`` when preempted (SIGTERM): the group's checkpoint is saved.
  ``programs`` keeps compiled groups across calls (by program, size and batch sharing)."""
  k, cfg, first = len(setups), setups[0].config, setups[0]
  with workspace(group_dir, keep=cfg.train.keep_checkpoints, state_bytes=k * first.state_bytes,
                 records_of=f"the records of its runs ({', '.join(run_ids)})") as checkpointer:
    from training.sweep import program_key  # noqa: PLC0415 -- the sweep imports this module
    key = f"vmap{k}|{shares_batches(setups)}|{program_key(cfg)}"
    programs = {} if programs is None else programs
    if key not in programs:
      programs[key] = compile_group(setups)
    steps = programs[key]
    abstract = {"states": placed(first.abstract_state, steps.state_sharding, runs=k),
                "alive": jax.ShapeDtypeStruct((k,), jnp.bool_)}
    tree, position = restore(checkpointer, abstract) or (
        _fresh(setups, steps, programs.setdefault(key + "|init", init_program(first))),
        Position())
    step = int(jax.device_get(tree["states"].step).max())
    writers = [open_records(s, tensorboard=False) for s in setups]
    for writer in writers:
      writer.truncate_after(step)
    cadence = Cadence.of(cfg)
    ledger = _GroupLedger(setups, writers, [bool(a) for a in jax.device_get(tree["alive"])],
                          step=step, cadence=cadence,
                          tokens_per_example=first.source.tokens_per_example)
    evaluate_at = None
    if cfg.train.eval_every:
      eval_set = first.source.eval_set()
      evaluate_at = lambda t: evaluate(steps, t["states"], eval_set, cfg.train.eval_batch)
    with Preemption() as preemption, records.Progress(
        cfg.train.steps, step, enabled=jax.process_index() == 0) as progress:
      status, tree, step, step_time = run_steps(
          functools.partial(_train, steps.train), tree, step, position,
          next_batch=lambda _, seen: (_batch(setups, steps, seen), cfg.train.global_batch),
          cadence=cadence, ledger=ledger,
          evaluate_at=evaluate_at, checkpointer=checkpointer, progress=progress,
          preemption=preemption,
          profile=Profile(os.path.join(group_dir, "profile"), first.profile_steps))
    checkpointer.save(step, tree, position.as_meta())
    checkpointer.wait()
    if status == "preempted":
      return None
    summaries = []
    for j, s in enumerate(setups):
      ended = ledger.ended[j]
      run_steps_done = step if ended is None else ended
      result = LoopResult(
          status="ok" if ended is None else "diverged", state=None, step=run_steps_done,
          position=Position(run_steps_done * cfg.train.global_batch, position.time_s / k),
          last_record=ledger.last[j], step_time_s=step_time / k if step_time else None)
      summaries.append(summarize(s, result, plot=False,
                                 group={"id": group_id(run_ids), "size": k, "mode": "vmap"}))
    return summaries
