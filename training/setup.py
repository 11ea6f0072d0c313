"""``prepare``: every check and every build a run needs, before anything is compiled or written.

A bad config value, an unknown component, a batch the devices cannot split, missing data or an
unusable workdir raises ``ValueError`` with one line that names the key and the fix. The state
is initialised abstractly (``jax.eval_shape``); ``training.loop`` compiles and trains.
"""

import dataclasses
import functools
import re
from typing import Any

import jax
import jax.numpy as jnp
import optax

import data
import models
import optimizers
from plain_numbers import is_int, is_number
from training import mesh as mesh_lib
from training import ramps
from training import workdir as workdir_lib
from training.state import TrainState
from training.step import LOSSES


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
  ramp: ramps.Ramp  # the batch and sequence length of each step (one stage without a ramp)
  profile_steps: tuple[int, int] | None = None  # first and last step traced (None: no trace)

  @property
  def state_bytes(self) -> int:
    """Bytes of the whole train state (what a checkpoint holds, before compression)."""
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(self.abstract_state))


def _int_at_least(key: str, value, minimum: int, meaning: str = "") -> None:
  if not is_int(value):
    raise ValueError(f"{key}={value!r} must be an integer{meaning}")
  if value < minimum:
    raise ValueError(f"{key}={value} must be >= {minimum}{meaning}")


def profile_window(value, total_steps: int | None = None) -> tuple[int, int] | None:
  """``profile_steps`` (``"start,stop"``, a pair of ints, or empty for none) as ``(start,
  stop)`` with ``1 <= start < stop`` (and ``stop <= total_steps`` where given); ``ValueError``
  naming the key otherwise."""
  if isinstance(value, str):
    if not value.strip():
      return None
    parts = value.split(",")
    if len(parts) == 2 and all(p.strip().isdecimal() for p in parts):
      value = tuple(int(p) for p in parts)
  elif isinstance(value, (tuple, list)) and not value:
    return None
  if not (isinstance(value, (tuple, list)) and len(value) == 2 and all(map(is_int, value))):
    raise ValueError(f"profile_steps={value!r} must be 'start,stop' (e.g. '10,20': steps 10 "
                     f"to 20 traced) or '' (off)")
  start, stop = value
  if not 1 <= start < stop:
    raise ValueError(f"profile_steps={start},{stop} must have 1 <= start < stop")
  if total_steps is not None and stop > total_steps:
    raise ValueError(f"profile_steps={start},{stop} must have stop <= {total_steps} (the "
                     f"run's steps)")
  return int(start), int(stop)


def check_config(config) -> None:
  """The keys of ``configs/base.py`` that the loop reads: type and range, one line each.

  The model, data and optimizer check their own keys when they are built.
  """
  _int_at_least("seed", config.seed, 0)
  for key in ("dtype", "param_dtype"):
    if config[key] not in models.DTYPES:
      raise ValueError(f"{key}={config[key]!r}: valid are {', '.join(sorted(models.DTYPES))}")
  if config.loss not in LOSSES:
    raise ValueError(f"unknown loss {config.loss!r}: valid names are {', '.join(sorted(LOSSES))}")
  t = config.train
  _int_at_least("train.steps", t.steps, 1)
  _int_at_least("train.global_batch", t.global_batch, 1)
  _int_at_least("train.num_microbatches", t.num_microbatches, 1)
  _int_at_least("train.eval_batch", t.eval_batch, 1)
  _int_at_least("train.log_every", t.log_every, 1, " (log every this many steps)")
  _int_at_least("train.eval_every", t.eval_every, 0, " (0 = never)")
  _int_at_least("train.checkpoint_every", t.checkpoint_every, 1,
                " (a checkpoint is also saved at the end)")
  _int_at_least("train.keep_checkpoints", t.keep_checkpoints, 1)
  if not is_number(t.divergence_loss) or not t.divergence_loss > 0:
    raise ValueError(f"train.divergence_loss={t.divergence_loss!r} must be a number > 0 "
                     f"(a logged loss above it marks the run diverged)")
  _int_at_least("mesh.fsdp", config.mesh.fsdp, 1)
  d = config.distributed
  if not isinstance(d.initialize, bool):
    raise ValueError(f"distributed.initialize={d.initialize!r} must be True or False")
  if d.coordinator_address:
    if not re.fullmatch(r"[^:\s]+:\d{1,5}", d.coordinator_address):
      raise ValueError(f"distributed.coordinator_address={d.coordinator_address!r} must be "
                       f"host:port, e.g. localhost:12345")
    _int_at_least("distributed.num_processes", d.num_processes, 1)
    _int_at_least("distributed.process_id", d.process_id, 0)
    if d.process_id >= d.num_processes:
      raise ValueError(f"distributed.process_id={d.process_id} must be below "
                       f"distributed.num_processes={d.num_processes}")
  if d.cpu_collectives not in ("", "gloo", "mpi"):
    raise ValueError(f"distributed.cpu_collectives={d.cpu_collectives!r}: valid are gloo, mpi "
                     f"or '' (none)")
  if not isinstance(config.tensorboard, bool):
    raise ValueError(f"tensorboard={config.tensorboard!r} must be True or False")
  profile_window(config.profile_steps)  # its form; prepare checks it against the run's steps


def check_batch(config, num_devices: int) -> None:
  """The global batch splits into microbatches, and each microbatch over the devices."""
  batch, micro = config.train.global_batch, config.train.num_microbatches
  if batch % micro:
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


def init_state(rng, example_inputs, *, model, tx) -> TrainState:
  init_rng, state_rng = jax.random.split(rng)
  variables = model.init(init_rng, example_inputs, train=False)
  params = variables.pop("params")
  return TrainState(step=jnp.zeros([], jnp.int32), params=params, opt_state=tx.init(params),
                    rng=state_rng, model_state=dict(variables))


def prepare(config, workdir: str, *, allow_config_change: bool = False) -> Setup:
  """Checks the config against the data, model, optimizer, devices and workdir; builds them all.

  Raises ``ValueError`` with a one-line message for any bad input. Nothing is compiled and
  nothing is written: the state is initialised abstractly with ``jax.eval_shape``.
  """
  check_config(config)
  workdir_lib.check_path(workdir)
  mesh_lib.initialize_distributed(config.distributed)
  workdir_lib.check_config(config, workdir, allow_config_change)
  model = models.build(config.model, dtype=config.dtype, param_dtype=config.param_dtype)
  mesh = mesh_lib.make_mesh(config.mesh.fsdp)
  check_batch(config, mesh.devices.size)
  source = data.build(config.data, seed=config.seed)
  example = source.examples(0, 1)["inputs"]
  one_example = jax.tree.map(lambda x: x[0], example)
  rng = jax.random.PRNGKey(config.seed)
  abstract_params = jax.eval_shape(
      lambda r: model.init(r, example, train=False), rng)["params"]
  t = config.train
  ramp = ramps.build(
      t.ramp, steps=t.steps, global_batch=t.global_batch,
      micro_size=t.global_batch // t.num_microbatches, devices=mesh.devices.size,
      seq_len=source.tokens_per_example,
      base_schedule=optimizers.build_schedule(config.optimizer.schedule, 1.0, t.steps),
      warmup_steps=config.optimizer.schedule.warmup_steps)
  tx = optimizers.build(config.optimizer, total_steps=config.train.steps,
                        param_labels=models.param_roles, schedule=ramp.lr_shape)
  abstract_state = jax.eval_shape(functools.partial(init_state, model=model, tx=tx), rng, example)
  profile_steps = profile_window(config.profile_steps, ramp.total_steps)
  return Setup(
      config=config, workdir=workdir, source=source, model=model, tx=tx,
      loss_fn=LOSSES[config.loss], mesh=mesh, abstract_state=abstract_state,
      state_sharding=mesh_lib.state_shardings(abstract_state, mesh),
      num_params=sum(x.size for x in jax.tree.leaves(abstract_params)),
      flops_per_example=float(model.flops_per_example(one_example)), ramp=ramp,
      profile_steps=profile_steps)
