"""Learning-rate robustness: final loss against learning rate, NGN-M against SGD-M and Adam.

    python train.py --config=configs/robustness.py:mini --workdir=runs/robust    # 4.8 min, 2 cores
    python train.py --config=configs/robustness.py:smoke --workdir=/tmp/robust   # seconds

The claim under test (Islamov et al. 2025, arXiv 2508.15071): with momentum, NGN keeps its loss
near its best up to about 10x past the tuned learning rate, where SGD with momentum and Adam
degrade. For each task x optimizer cell, a log-spaced learning-rate grid (a factor of sqrt(10)
per step, three or four decades in ``mini``) at one batch size and a fixed number of steps, seed 0;
every method at momentum 0.9 (heavy ball for SGD, NGN-M, NGN-MD and Momo; Adam's b1), no
weight decay, no gradient clipping (a clip would change NGN's step, which reads the gradient
norm); linear warmup over 10% of the steps, then cosine to zero (the schedule of
``configs/gap.py``). ``experiments/protocols.py`` (``robustness``) extends the grid where the
best rate sits at an edge, runs ``protocol.seeds`` more seeds (1, 2, ...) at each cell's best
rate and at 10x it,
and writes ``DIR/report/`` (``experiments/report.py``).
"""

import ml_collections

from configs import modalities
from configs.base import base_config, parse_variants, set_protocol_run, set_sweep

OPTIMIZERS = ("ngn_m", "ngn_md", "sgd", "adam", "momo")
MINI_TASKS = (("vision", "mlp"), ("language", "gpt"))  # MNIST-1D MLP; byte-level GPT
SMOKE_TASKS = (("vision", "mlp"),)

# Each method's arguments (the ones it takes; momentum 0.9 everywhere).
_KWARGS = {
    "ngn_m": dict(momentum=0.9),  # heavy-ball momentum on the NGN step
    "ngn_md": dict(momentum=0.9, b2=0.999, eps=1e-8),  # NGN in an RMSprop metric, heavy ball
    "sgd": dict(momentum=0.9, nesterov=False),  # heavy-ball momentum
    "adam": dict(b1=0.9, b2=0.999, eps=1e-8),  # Adam's defaults
    "momo": dict(beta=0.9, lower_bound=0.0),  # model-based momentum; losses are >= 0
}
# Each grid's lowest rate (a power of ten) and its span in decades: SGD-like scales for the
# methods whose rate is a step on the raw gradient (SGD, NGN-M's c, Momo's cap), Adam-like ones
# for the preconditioned; the NGN and Momo grids reach a decade higher, where their step caps
# itself and the claim says their loss holds.
_GRIDS = {"ngn_m": (1e-2, 4), "ngn_md": (1e-4, 4), "sgd": (1e-2, 3), "adam": (1e-4, 3),
          "momo": (1e-2, 4)}


def grid(lowest: float, decades: float, per_decade: int) -> tuple[float, ...]:
  """Log-spaced rates from ``lowest`` over ``decades``, ``per_decade`` steps a decade, each
  rounded to three significant digits (so that 10x a rate of the grid is again one of it)."""
  steps = round(decades * per_decade)
  return tuple(float(f"{lowest * 10 ** (k / per_decade):.3g}") for k in range(steps + 1))


def _cell(modality: str, arch: str, optimizer: str, steps: int, batch: int):
  """The task's own smoke-sized model and data with the study's optimizer and schedule."""
  c = modalities.get_config(f"{modality},{arch},smoke")
  with c.unlocked():
    set_protocol_run(
        c, optimizer,  # one of OPTIMIZERS
        kwargs=_KWARGS[optimizer],  # the method's arguments
        grad_clip_norm=0.0,  # no clipping: each method's own step decides
        warmup_steps=steps // 10)  # warmup over 10% of the steps
    c.train.steps = steps  # updates per run, fixed for every rate
    c.train.global_batch = batch  # examples (sequences) per update, one size for the study
  return c


def get_config(arg: str = "mini"):
  variants = parse_variants(arg, ("mini", "smoke"))
  smoke = "smoke" in variants
  c = base_config()
  tasks = SMOKE_TASKS if smoke else MINI_TASKS
  # (steps, batch) per task: fixed for every rate and optimizer.
  budget = {"vision": (30, 32) if smoke else (200, 32), "language": (20, 16) if smoke
            else (100, 16)}
  per_decade = 1 if smoke else 2  # rates per decade: a factor of 10 (smoke) or sqrt(10)
  cells, axes = {}, {}
  for modality, arch in tasks:
    steps, batch = budget[modality]
    for optimizer in OPTIMIZERS:
      name = f"{modality}-{arch}-{optimizer}"
      cells[name] = _cell(modality, arch, optimizer, steps, batch)
      lowest, decades = _GRIDS[optimizer]
      decades = 2 if smoke else decades  # smoke: three rates a decade apart
      axes[name] = {"optimizer.learning_rate": grid(lowest, decades, per_decade)}
  set_sweep(
      c,
      grid={"seed": (0,)},  # the grid's seed; the best and 10x-best rates get more
      cells=cells,  # task x optimizer, each with its own rates
      cell_axes=axes,  # the learning-rate grid of each optimizer
      examples_budget=0,  # steps fixed per task (above), not by a budget
      warmup_fraction=0.0)  # each cell sets its own warmup
  c.protocol = ml_collections.ConfigDict()
  c.protocol.name = "robustness"  # experiments/protocols.py: the robustness study
  # Seed 0 picks the rate, the others measure it (no winner's curse on the seed that chose).
  c.protocol.seeds = 2 if smoke else 3  # seeds 1..this at each best rate and at 10x it
  c.protocol.edge_extensions = 0 if smoke else 1  # rates added beyond an edge, at most
  c.protocol.grid_factor = 10 ** (1 / per_decade)  # the step of an added rate (the grid's)
  c.protocol.overshoot = 10.0  # the rate past the tuned one whose loss the report compares
  c.protocol.within = 0.10  # the width counts rates whose loss is within this of the best
  return c.lock()
