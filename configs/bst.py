"""The BST rule tested on our task: Scion on the byte GPT at two token budgets, over batch sizes.

    python train.py --config=configs/bst.py:mini --workdir=runs/bst    # minutes on a CPU
    python train.py --config=configs/bst.py:small --workdir=runs/bst_small   # T0, B = 1 to 8
    python train.py --config=configs/bst.py:smoke --workdir=/tmp/bst   # seconds, for tests

At a fixed token budget the loss against the batch size should improve, level off, then
degrade as the steps run short (Islamov et al., 2026, arXiv 2603.21191). Each budget (``T0``,
and ``T1`` = 4 x T0) sweeps batch sizes over powers of two (steps = budget / B) and Scion's
stepsize over a grid (constrained Scion, the nanoGPT radii; momentum 0.1; a warmup, then
cosine to zero). The report (``experiments/protocols.py``: ``bst``) gives the best loss at each
batch size per budget, and puts the rule's transfer from T0's best (B0, stepsize0) to T1 --
B1 = B0 (T1/T0)^(2/3), stepsize1 = stepsize0 (B1/B0)(T0/T1) -- beside T1's measured best.
"""

import ml_collections

from configs import modalities
from configs.base import base_config, parse_variants, set_protocol_run, set_sweep


def _cell(budget: int, smoke: bool):
  c = modalities.get_config("language,gpt,smoke")
  with c.unlocked():
    set_protocol_run(
        c, "scion",  # constrained Scion with the nanoGPT LMOs and radii
        kwargs=dict(momentum=0.1),  # Scion's momentum: the weight on the new gradient
        grad_clip_norm=0.0,  # no clipping: Scion's step is set by its LMO
        warmup_steps=0)  # the sweep's warmup fraction sets it
    c.sweep.examples_budget = budget  # this budget's sequences: steps = budget / B
    if smoke:
      c.model.depth = 1  # the smallest model that is still a transformer
  return c


def get_config(arg: str = "mini"):
  variants = parse_variants(arg, ("mini", "smoke", "small"))
  smoke, small = "smoke" in variants, "small" in variants
  c = base_config()
  t0 = 64 if smoke else 2048  # sequences of 32 tokens at T0
  if small:  # T0 alone below and at mini's smallest batch: where the other regimes would be
    batches, rates, cells = (1, 2, 4, 8), (3e-5, 1e-4, 3e-4, 1e-3), {"T0": _cell(t0, smoke)}
  else:
    batches = (8, 16) if smoke else (8, 16, 32, 64, 128, 256)
    rates = (1e-3,) if smoke else (1e-4, 3e-4, 1e-3, 3e-3)
    cells = {"T0": _cell(t0, smoke),  # the tuned budget
             "T1": _cell(4 * t0, smoke)}  # four times it
  set_sweep(
      c,
      grid={"train.global_batch": batches,  # batch sizes
            "seed": (0,)},  # one seed (the grid is the measurement)
      cells=cells,
      cell_axes={name: {"optimizer.learning_rate": rates} for name in cells},  # stepsizes
      warmup_fraction=0.05)  # linear warmup over 5% of each run's steps
  c.protocol = ml_collections.ConfigDict()
  c.protocol.name = "bst"  # experiments/protocols.py: the grid, then the report
  # The BST constants (experiments/bst_constants.py), measured along T0's best run at this many
  # points (0: not measured): f and its gradient on full_batch sequences, the noise from draws
  # batches of probe_batch sequences.
  c.protocol.points = 2 if smoke else 8  # points along the run where the constants are read
  c.protocol.full_batch = 16 if smoke else 256  # sequences of the "full" gradient
  c.protocol.probe_batch = 4 if smoke else 8  # sequences of each small-batch gradient
  c.protocol.draws = 2 if smoke else 8  # small batches per point (the noise's spread)
  return c.lock()
