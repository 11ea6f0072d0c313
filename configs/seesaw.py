"""Seesaw against cosine at equal examples: the final loss of both and the serial steps saved.

    python train.py --config=configs/seesaw.py:mini --workdir=runs/seesaw   # minutes on a CPU
    python train.py --config=configs/seesaw.py:smoke --workdir=/tmp/seesaw # seconds, for tests

The byte-level GPT of the gap study's mini scale, AdamW with a linear warmup then cosine decay
at a constant batch (``cosine``), against the same schedule turned into Seesaw's coupled
(learning rate, batch) schedule (``seesaw``: wherever cosine would halve the rate, the rate is
divided by sqrt 2 and the batch doubled, up to 8x; ``training/ramps.py``). Both draw the same
examples; Seesaw in fewer optimizer steps. Each at the same peak rates and seeds; the report
(``experiments/protocols.py``: ``seesaw``) compares each one's best rate over seeds, and adds
SGD on noisy linear regression, exactly, where a rate decay and the batch ramp that replaces it
give overlapping risks (the paper's equivalence).
"""

import ml_collections

from configs import modalities
from configs.base import base_config, parse_variants, set_sweep


def _cell(seesaw: bool, smoke: bool, steps: int, batch: int):
  """The GPT of ``modalities.py:language,gpt,smoke`` at ``batch`` for ``steps`` base steps."""
  c = modalities.get_config("language,gpt,smoke")
  with c.unlocked():
    c.optimizer.name = "adamw"  # Adam with decoupled weight decay
    c.optimizer.weight_decay = 0.0  # none: the schedules alone differ
    c.optimizer.schedule.name = "warmup_cosine"  # the base schedule Seesaw transforms
    c.optimizer.schedule.warmup_steps = steps // 20  # 5% warmup (cuts come after it)
    c.optimizer.schedule.end_factor = 0.0  # cosine to zero
    c.train.steps = steps  # the constant-batch run's steps; Seesaw draws as many examples
    c.train.global_batch = batch  # the first stage's batch (cosine's throughout)
    c.train.log_every = 1  # every step: the final loss is the least over the last 1%
    c.train.eval_every = 10**9  # evaluated at the end only
    c.train.checkpoint_every = 10**9  # a checkpoint at the end only
    c.train.eval_batch = 16  # sequences per evaluation batch
    if seesaw:
      c.train.ramp.seesaw_alpha = 2.0  # halve-the-rate points: rate / sqrt 2, batch x 2
      c.train.ramp.max_batch = 8 * batch  # three doublings at most (within the CBS, we hope)
    if smoke:
      c.model.depth = 1  # the smallest model that is still a transformer
  return c


def get_config(arg: str = "mini"):
  smoke = "smoke" in parse_variants(arg, ("mini", "smoke"))
  c = base_config()
  steps, batch = (40, 8) if smoke else (600, 16)  # base steps, first batch
  set_sweep(
      c,
      grid={"optimizer.learning_rate": (3e-3,) if smoke else (1e-3, 3e-3, 1e-2),  # peak rates
            "seed": (0, 1) if smoke else (0, 1, 2)},  # seeds of every (schedule, rate)
      cells={"cosine": _cell(False, smoke, steps, batch),  # constant batch, cosine
             "seesaw": _cell(True, smoke, steps, batch)})  # Seesaw on the same cosine
  c.protocol = ml_collections.ConfigDict()
  c.protocol.name = "seesaw"  # experiments/protocols.py: run the grid, then the report
  c.protocol.seeds = 1  # (the grid's seeds are the seeds: nothing is re-run)
  c.protocol.edge_extensions = 0  # (the rates are not extended)
  c.protocol.grid_factor = 10**0.5  # (the grid's step)
  return c.lock()
