"""The Adam-SGD gap across modalities: where Adam beats SGD, and the crossover batch size.

    python train.py --config=configs/gap.py:mini --workdir=runs/gap        # minutes on a CPU
    python train.py --config=configs/gap.py:mini,smoke --workdir=/tmp/gap  # seconds, for tests
    python train.py --config=configs/gap.py:full --workdir=runs/gap_full   # for accelerators

For each modality x architecture pair, batch sizes over powers of two at a fixed example budget
(steps = budget / batch; tokens = examples x sequence length); SGD with heavy-ball momentum beta
(no Nesterov, no weight decay) against Adam with tied betas b1 = b2 = beta; a log-spaced
learning-rate grid per optimizer; the global gradient norm clipped at 1; cosine to zero after a
linear warmup over 10% of the steps. ``experiments/protocols.py`` runs the grid, extends it where
the best rate sits at an edge, re-runs each best cell with more seeds, and writes the report.
"""

import ml_collections

from configs import modalities
from configs.base import base_config, parse_variants, set_sweep

MINI_PAIRS = (("language", "gpt"), ("language", "gated_conv"), ("vision", "vit"),
              ("vision", "cnn"))
FULL_PAIRS = (("language", "gpt"), ("language", "gated_conv"), ("vision", "vit"),
              ("vision", "resnet"), ("genomics", "gpt"), ("genomics", "cnn"),
              ("graphs", "transformer"), ("graphs", "gnn"))


def _cell(modality: str, arch: str, optimizer: str, beta: float, smoke: bool, full: bool):
  """The pair's own config with the protocol's optimizer, clipping and schedule."""
  c = modalities.get_config(f"{modality},{arch}" + ("" if full else ",smoke"))
  with c.unlocked():
    c.optimizer.name = optimizer  # adam | sgd
    c.optimizer.kwargs = ml_collections.ConfigDict(
        dict(b1=beta, b2=beta, eps=1e-8) if optimizer == "adam"  # tied betas
        else dict(momentum=beta, nesterov=False))  # heavy-ball momentum
    c.optimizer.weight_decay = 0.0  # no weight decay
    c.optimizer.grad_clip_norm = 1.0  # the global gradient norm clipped at 1
    c.optimizer.schedule.name = "warmup_cosine"  # linear warmup, cosine decay
    c.optimizer.schedule.end_factor = 0.0  # to zero
    c.train.log_every = 1  # every step: the final loss is the least over the last 1% of steps
    c.train.eval_every = 10**9  # evaluated at the end only
    c.train.checkpoint_every = 10**9 if not full else 500  # at the end (and every 500 steps)
    if smoke and "depth" in c.model:
      c.model.depth = 1  # the smallest model that is still the architecture
  return c


def get_config(arg: str = "mini"):
  variants = parse_variants(arg, ("mini", "full", "smoke"))
  full, smoke = "full" in variants, "smoke" in variants
  c = base_config()
  pairs = FULL_PAIRS if full else (("vision", "mlp"),) if smoke else MINI_PAIRS
  betas = (0.9, 0.95, 0.99, 0.999) if full else (0.9,)  # SGD's momentum = Adam's b1 = b2
  batches = ((16, 32, 64, 128, 256, 512) if full else (8, 16) if smoke
             else (8, 16, 32))  # powers of two at a fixed budget
  grids = {  # log-spaced learning rates, a factor of about 3 apart
      "adam": (3e-4, 1e-3, 3e-3, 1e-2, 3e-2) if full else (1e-3, 1e-2) if smoke
              else (1e-3, 3e-3, 1e-2),
      "sgd": (1e-2, 3e-2, 0.1, 0.3, 1.0) if full else (3e-2, 0.3) if smoke
             else (3e-2, 0.1, 0.3),
  }
  cells, axes = {}, {}
  for modality, arch in pairs:
    for beta in betas:
      for optimizer in ("adam", "sgd"):
        name = f"{modality}-{arch}-beta{beta:g}-{optimizer}"
        cells[name] = _cell(modality, arch, optimizer, beta, smoke, full)
        axes[name] = {"optimizer.learning_rate": grids[optimizer]}
  set_sweep(
      c,
      grid={"train.global_batch": batches,  # examples per update
            "seed": (0,)},  # the grid's seed; the best cells get more (protocol.seeds)
      cells=cells,  # modality x architecture x beta x optimizer, each with its own rates
      cell_axes=axes,  # the learning-rate grid of each optimizer
      examples_budget=(2**17 if full else 128 if smoke else 1280),  # examples per run
      warmup_fraction=0.1)  # linear warmup over 10% of each run's steps
  c.protocol = ml_collections.ConfigDict()
  c.protocol.name = "gap"  # experiments/protocols.py: the gap study
  c.protocol.seeds = 2 if smoke else 3  # seeds of each best (optimizer, batch) cell
  c.protocol.edge_extensions = 1 if smoke else 2  # rates added beyond an edge, at most
  c.protocol.grid_factor = 10**0.5  # the step of an added rate (the grids' step)
  return c.lock()
