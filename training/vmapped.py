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
from training import workdir as workdir_lib
from training.checkpointing import Checkpointer, quiet_writer_failures
from training.loop import Preemption, init_program
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
  abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct((k, *x.shape), x.dtype, sharding=s),
                          setup.abstract_state, state_sharding)
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
    loss = metrics["loss"]
    ok = alive & jnp.isfinite(loss) & (loss <= bound)
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


def _evaluate(steps: GroupSteps, states, eval_set, eval_batch: int, k: int) -> list[dict]:
  sums = jax.device_get([steps.evaluate(states, b) for b in batches_lib.eval_batches(
      eval_set, eval_batch, steps.eval_sharding)])
  out = []
  for j in range(k):
    count = sum(s["count"][j] for s in sums)
    out.append({f"eval_{key[:-len('_sum')]}": float(sum(s[key][j] for s in sums) / count)
                for key in sums[0] if key.endswith("_sum")})
  return out


def train_group(setups: list[Setup], run_ids: list[str], group_dir: str, *,
                programs: dict | None = None) -> list[dict] | None:
  """Trains the group to ``train.steps`` (resuming from ``group_dir``); returns each run's
  summary, or ``None`` when preempted (SIGTERM): the group's checkpoint is saved.
  ``programs`` keeps compiled groups across calls (by program, size and batch sharing)."""
  k, cfg, first = len(setups), setups[0].config, setups[0]
  total, batch = cfg.train.steps, cfg.train.global_batch
  tokens_per_example = first.source.tokens_per_example
  is_main = jax.process_index() == 0
  with workdir_lib.Lock(group_dir, enabled=is_main), quiet_writer_failures():
    checkpointer = Checkpointer(group_dir, max_to_keep=cfg.train.keep_checkpoints,
                                state_bytes=k * first.state_bytes)
    try:
      from training.sweep import program_key  # noqa: PLC0415 -- the sweep imports this module
      key = f"vmap{k}|{shares_batches(setups)}|{program_key(cfg)}"
      programs = {} if programs is None else programs
      if key not in programs:
        programs[key] = compile_group(setups)
      steps = programs[key]
      abstract = {"states": jax.tree.map(
          lambda x, s: jax.ShapeDtypeStruct((k, *x.shape), x.dtype, sharding=s),
          first.abstract_state, steps.state_sharding),
          "alive": jax.ShapeDtypeStruct((k,), jnp.bool_)}
      restored = checkpointer.restore(abstract)
      if restored is None:
        example = first.source.examples(0, 1)["inputs"]
        init = programs.setdefault(key + "|init", init_program(first))
        states = stack([with_own_hyperparams(init(jax.random.PRNGKey(s.config.seed), example), s)
                        for s in setups])
        states = jax.device_put(states, steps.state_sharding)
        alive, examples_seen, time_offset = jnp.ones((k,), jnp.bool_), 0, 0.0
      else:
        tree, meta = restored
        states, alive = tree["states"], tree["alive"]
        examples_seen, time_offset = int(meta["examples_seen"]), float(meta["time_s"])
      step = int(jax.device_get(states.step).max())
      writers = []
      for s in setups:
        os.makedirs(s.workdir, exist_ok=True)
        if is_main:
          records.write_json(os.path.join(s.workdir, "config.json"),
                             json.loads(s.config.to_json_best_effort()))
        writers.append(records.MetricWriter(s.workdir, tensorboard=False, enabled=is_main))
        writers[-1].truncate_after(step)
      eval_set = first.source.eval_set() if cfg.train.eval_every else None
      ended = [None] * k  # the step at which a run diverged
      last = [{} for _ in range(k)]
      was_alive = [bool(a) for a in jax.device_get(alive)]
      for j in range(k):
        if not was_alive[j]:
          rows = records.read_metrics(setups[j].workdir)
          ended[j], last[j] = (rows[-1]["step"], rows[-1]) if rows else (step, {})
      t0 = time.perf_counter()
      elapsed = lambda: time_offset + time.perf_counter() - t0
      status, first_done, start = "ok", None, step
      with Preemption() as preemption, records.Progress(total, step, enabled=is_main) as bar:
        while step < total:
          states, alive, metrics = steps.train(states, alive, _batch(setups, steps, examples_seen))
          step += 1
          examples_seen += batch
          logged = step % cfg.train.log_every == 0 or step == total
          now_alive = [bool(a) for a in jax.device_get(alive)]
          if first_done is None:
            first_done = time.perf_counter()
          if logged or now_alive != was_alive:
            host = jax.device_get(metrics)
            evals = (_evaluate(steps, states, eval_set, cfg.train.eval_batch, k)
                     if eval_set is not None and logged and
                     (step % cfg.train.eval_every == 0 or step == total) else [{}] * k)
            for j in range(k):
              if not was_alive[j] or not (logged or not now_alive[j]):
                continue
              record = {"step": step, **lane(host, j), "examples_seen": examples_seen,
                        "time_s": elapsed()}
              if tokens_per_example:
                record["tokens_seen"] = examples_seen * tokens_per_example
              if now_alive[j]:
                record.update(evals[j])
              else:
                ended[j] = step
              writers[j].write(record)
              last[j] = {key: records.plain(v) for key, v in record.items()}
          was_alive = now_alive
          bar.update(1)
          if not any(now_alive):
            break
          if preemption.requested:
            status = "preempted"
            break
          if step % cfg.train.checkpoint_every == 0 and step < total:
            checkpointer.save(step, {"states": states, "alive": alive},
                              {"examples_seen": examples_seen, "time_s": elapsed()})
      jax.block_until_ready(states)
      wall = elapsed()
      step_time = ((time.perf_counter() - first_done) / (step - start - 1)
                   if first_done is not None and step - start > 1 else None)
      checkpointer.save(step, {"states": states, "alive": alive},
                        {"examples_seen": examples_seen, "time_s": wall})
      checkpointer.wait()
    finally:
      checkpointer.close()
  if status == "preempted":
    return None
  summaries = []
  for j, s in enumerate(setups):
    history = records.read_metrics(s.workdir) if is_main else []
    diverged = ended[j] is not None
    run_steps = ended[j] if diverged else step
    summary = records.summarize(
        status="diverged" if diverged else "ok", steps=run_steps,
        examples_seen=run_steps * batch, history=history, last_record=last[j],
        step_time_s=step_time / k if step_time else None, wall_time_s=wall / k,
        global_batch=batch, tokens_per_example=tokens_per_example, num_params=s.num_params,
        flops_per_example=s.flops_per_example, data_info=s.source.info,
        devices=jax.device_count(), processes=jax.process_count(), jax_version=jax.__version__)
    summary["group"] = {"id": group_id(run_ids), "size": k, "mode": "vmap"}
    if is_main:
      records.write_json(os.path.join(s.workdir, "summary.json"), summary)
    summaries.append(summary)
  return summaries
