"""The keys every experiment config has, each with its meaning. Experiments start from here.

``set_optimizer`` and ``set_budget`` fill the two blocks every experiment sets (the method with
its schedule, and the run's length and cadence) in one call each; the caller gives every value,
with its comment, so each hyperparameter still reads in the experiment's own file.
``set_sweep`` declares a sweep over any keys (``training/sweep.py``).
"""

import ml_collections


def parse_variants(arg: str, valid: tuple[str, ...]) -> set[str]:
  """The comma-separated variants in a config's ``:arg``, refusing unknown ones."""
  variants = {a for a in arg.split(",") if a}
  unknown = sorted(variants - set(valid))
  if unknown:
    raise ValueError(f"unknown config variant {', '.join(unknown)}: valid are {', '.join(valid)}")
  return variants


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0  # seeds parameter init, the data order and the step rng
  # Precision (models/layers.py DTYPES): activations and matmuls run in dtype; the loss,
  # softmax and norm statistics in float32 whatever it is.
  c.dtype = "float32"  # compute dtype: float32 | bfloat16
  # Parameters are stored in param_dtype and cast to dtype at use, so gradients and optimizer
  # state follow it: float32 keeps f32 master weights and f32 optimizer moments under bfloat16.
  c.param_dtype = "float32"  # float32 | bfloat16 (pure low-precision training)

  c.model = ml_collections.ConfigDict()  # model.name picks from models.available(); rest = args
  # Recompute each block's activations in the backward pass (jax.checkpoint) instead of storing
  # them: less memory for about one more forward pass (models built of blocks; others refuse).
  # XLA's CPU backend undoes it unless XLA_FLAGS has --xla_disable_hlo_passes=cse_barrier_expander
  # (benchmarks/remat.py measures both).
  c.model.remat = False  # rematerialise every block (models/gpt.py, vision.py, ...)

  c.data = ml_collections.ConfigDict()  # data.name picks from data.available(); rest = args

  c.loss = "cross_entropy"  # a loss from training.LOSSES

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adamw"  # an optimizer from optimizers.available()
  c.optimizer.learning_rate = 1e-3  # peak learning rate of the schedule
  c.optimizer.kwargs = ml_collections.ConfigDict()  # method arguments: b1, b2, momentum, ...
  c.optimizer.weight_decay = 0.0  # decoupled where the method has it, else L2 on the gradient
  c.optimizer.decay_roles = ("embedding", "hidden", "head", "conv")  # roles that are decayed
  c.optimizer.grad_clip_norm = 0.0  # clip the global gradient norm to this (0 = off)
  # Per-role groups: by_role.<role> = {name, learning_rate, kwargs, weight_decay} gives the
  # parameters of that role (embedding, hidden, head, norm, bias, conv) their own method.
  c.optimizer.by_role = ml_collections.ConfigDict()
  c.optimizer.schedule = ml_collections.ConfigDict()
  c.optimizer.schedule.name = "constant"  # constant | warmup_constant | warmup_cosine | wsd
  c.optimizer.schedule.warmup_steps = 0  # linear warmup from 0 over this many steps
  c.optimizer.schedule.end_factor = 0.0  # final learning rate / peak (cosine, wsd)
  c.optimizer.schedule.decay_fraction = 0.2  # wsd: the last fraction of the run that decays

  c.train = ml_collections.ConfigDict()
  c.train.steps = 100  # optimizer updates in the run (the schedule's length)
  c.train.global_batch = 32  # examples per update, over all devices and microbatches
  c.train.num_microbatches = 1  # gradient accumulation: the update is averaged over these
  c.train.eval_batch = 64  # examples per evaluation batch (padded at the end of the set)
  c.train.log_every = 10  # write metrics.jsonl every this many steps
  c.train.eval_every = 50  # evaluate every this many steps and at the end (0 = never)
  c.train.checkpoint_every = 50  # save a checkpoint every this many steps and at the end
  c.train.keep_checkpoints = 3  # checkpoints kept on disk
  c.train.divergence_loss = 1e4  # a logged loss above this (or nan/inf) marks the run diverged
  # Batch and sequence-length ramps (training/ramps.py): empty stages = one batch throughout.
  c.train.ramp = ml_collections.ConfigDict()
  c.train.ramp.unit = "steps"  # steps | examples | tokens: what a stage's start counts
  c.train.ramp.stages = ()  # ((start, global_batch, seq_len[, lr_factor]), ...) after the first
  c.train.ramp.seq_len = 0  # the first stage's sequence length (0 = data.seq_len)
  c.train.ramp.max_batch = 0  # the largest global batch a ramp may ask for (0 = no cap)
  c.train.ramp.seesaw_alpha = 0.0  # > 1: Seesaw on the schedule (train.steps = the base run's)
  c.train.ramp.adaptive_test = ""  # norm | inner_product | augmented: AdAdaGrad's batch growth
  c.train.ramp.test_every = 10  # steps between adaptive tests
  c.train.ramp.test_eta = 0.1  # the test's eta (theta = nu for the augmented test)

  c.mesh = ml_collections.ConfigDict()
  c.mesh.fsdp = 1  # devices over which parameters are sharded; the rest form the data axis

  c.distributed = ml_collections.ConfigDict()
  c.distributed.initialize = False  # call jax.distributed.initialize (multi-host)
  c.distributed.coordinator_address = ""  # host:port of process 0 ("" = detect, Cloud TPU)
  c.distributed.num_processes = 1  # with coordinator_address: number of processes
  c.distributed.process_id = 0  # with coordinator_address: this process's index
  c.distributed.cpu_collectives = "gloo"  # cross-process collectives on CPU hosts

  c.tensorboard = False  # also write TensorBoard event files (tensorboardX)
  # A jax.profiler trace of steps start..stop (numbered as in metrics.jsonl, both included),
  # written to WORKDIR/profile for TensorBoard's profile plugin or Perfetto.
  c.profile_steps = ""  # "start,stop", e.g. "10,20" ("" = off)

  # A sweep (training/sweep.py; set_sweep fills it): empty for a single run.
  c.sweep = ml_collections.ConfigDict()
  c.sweep.grid = ()  # axes ((key, (value, ...)), ...), crossed
  c.sweep.cells = ()  # named overrides ((name, ((key, value), ...)), ...), each x the grid
  c.sweep.runs = ()  # explicit runs ((cell, ((key, value), ...)), ...) besides the grid
  c.sweep.examples_budget = 0  # > 0: each run's steps = this // train.global_batch
  c.sweep.warmup_fraction = 0.0  # > 0, with a budget: each run's warmup, a fraction of its steps
  c.sweep.shard = ""  # "i/n": this process runs every n-th run from the i-th
  c.sweep.mode = "auto"  # auto | vmap | sequential: how a group's runs share one program
  c.sweep.vmap_size = 8  # runs per vmapped program, at most
  return c


def set_sweep(c: ml_collections.ConfigDict, *, grid: dict | None = None,
              cells: dict | None = None, cell_axes: dict | None = None,
              examples_budget: int = 0, warmup_fraction: float = 0.0) -> None:
  """Declares a sweep: ``grid`` maps a key to the values it takes (the axes are crossed);
  ``cells`` maps a name to overrides ``{key: value}`` or to the cell's whole config, each cell
  crossed with the grid; ``cell_axes`` maps a cell to axes of its own (they replace the grid's
  axis of the same key)."""
  grid, cells, cell_axes = grid or {}, cells or {}, cell_axes or {}
  pairs = lambda axes: tuple((k, tuple(v)) for k, v in axes.items())
  c.sweep.grid = pairs(grid)  # the axes, crossed
  whole = lambda v: v if isinstance(v, ml_collections.ConfigDict) else tuple(v.items())
  cells = [(k, whole(v), pairs(cell_axes.get(k, {}))) for k, v in cells.items()]
  c.sweep.cells = tuple(cells)  # each cell x the grid
  c.sweep.examples_budget = examples_budget  # > 0: steps = this // train.global_batch
  c.sweep.warmup_fraction = warmup_fraction  # with a budget: warmup = this x steps


def set_optimizer(c: ml_collections.ConfigDict, name: str, *, learning_rate: float,
                  weight_decay: float, grad_clip_norm: float, schedule: str, warmup_steps: int,
                  end_factor: float, **kwargs) -> None:
  """Sets ``c.optimizer``: the method ``name`` with its ``kwargs`` (in the order given)."""
  c.optimizer.name = name  # an optimizer from optimizers.available()
  c.optimizer.learning_rate = learning_rate  # peak learning rate of the schedule
  for key, value in kwargs.items():
    c.optimizer.kwargs[key] = value  # a method argument: b1, b2, eps, momentum, ...
  c.optimizer.weight_decay = weight_decay  # decoupled where the method has it, else L2
  c.optimizer.grad_clip_norm = grad_clip_norm  # global gradient-norm clip (0 = off)
  c.optimizer.schedule.name = schedule  # constant | warmup_constant | warmup_cosine | wsd
  c.optimizer.schedule.warmup_steps = warmup_steps  # linear warmup from 0 over this many steps
  c.optimizer.schedule.end_factor = end_factor  # final learning rate / peak (cosine, wsd)


def set_adam(c: ml_collections.ConfigDict, *, learning_rate: float, b2: float = 0.999,
             grad_clip_norm: float, warmup_steps: int, end_factor: float) -> None:
  """The study's adaptive method, as every modality sets it (``modalities.py`` ``sgd`` swaps
  it): Adam with b1 = 0.9, eps = 1e-8, no weight decay, linear warmup then cosine decay."""
  set_optimizer(
      c, "adam",  # the study's adaptive method
      learning_rate=learning_rate,  # Adam's peak learning rate
      b1=0.9,  # Adam's first-moment decay
      b2=b2,  # Adam's second-moment decay
      eps=1e-8,  # Adam's denominator floor
      weight_decay=0.0,  # no weight decay
      grad_clip_norm=grad_clip_norm,  # global gradient-norm clip (0 = off)
      schedule="warmup_cosine",  # linear warmup, cosine decay to end_factor
      warmup_steps=warmup_steps,  # warmup length
      end_factor=end_factor)  # final learning rate / peak


def set_protocol_run(c: ml_collections.ConfigDict, name: str, *, kwargs: dict,
                     grad_clip_norm: float, warmup_steps: int,
                     checkpoint_every: int = 10**9) -> None:
  """A protocol's run (``configs/gap.py``, ``configs/robustness.py``): the method ``name`` with
  exactly ``kwargs`` (the cell's own replaced), no weight decay, linear warmup then cosine to
  zero, a metric line every step and an evaluation at the end."""
  c.optimizer.kwargs = ml_collections.ConfigDict()  # the method's arguments, and no others
  set_optimizer(
      c, name,  # the protocol's method
      learning_rate=c.optimizer.learning_rate,  # swept by the protocol
      weight_decay=0.0,  # no weight decay
      grad_clip_norm=grad_clip_norm,  # global gradient-norm clip (0 = off)
      schedule="warmup_cosine",  # linear warmup, cosine decay
      warmup_steps=warmup_steps,  # warmup length (a sweep's warmup_fraction may set it)
      end_factor=0.0,  # to zero
      **kwargs)  # the method's arguments, each commented where the protocol gives it
  c.train.log_every = 1  # every step: the final loss is the least over the last 1% of steps
  c.train.eval_every = 10**9  # evaluated at the end only
  c.train.checkpoint_every = checkpoint_every  # and a checkpoint at the end


def set_budget(c: ml_collections.ConfigDict, *, steps: int, batch: int, eval_batch: int,
               log_every: int, eval_every: int, checkpoint_every: int) -> None:
  """Sets the run's length and cadence in ``c.train``."""
  c.train.steps = steps  # optimizer updates in the run (the schedule's length)
  c.train.global_batch = batch  # examples per update, over all devices and microbatches
  c.train.eval_batch = eval_batch  # examples per evaluation batch (the last one padded)
  c.train.log_every = log_every  # steps between lines of metrics.jsonl
  c.train.eval_every = eval_every  # steps between evaluations (and at the end; 0 = never)
  c.train.checkpoint_every = checkpoint_every  # steps between checkpoints (and at the end)
