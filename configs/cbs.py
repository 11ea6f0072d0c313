"""Critical batch size: the fewest steps to a target loss at each batch size, and S = a + b/B.

    python train.py --config=configs/cbs.py:mini --workdir=runs/cbs    # minutes on a CPU
    python train.py --config=configs/cbs.py:smoke --workdir=/tmp/cbs   # seconds, for tests

Two tasks: SGD (no momentum) on noisy linear regression, where the report sets the measured
S(B) beside the exact one (``theory/batch_size.py``: SGD's expected risk, no sampling), and
the byte-level GPT with Adam. Each batch size over powers of two at an equal example budget
(steps = budget / B), a constant learning rate after a short warmup over a grid per task, the
eval loss every few steps. A run's steps to the target are its first evaluation at or below it;
S(B) is the least over the rates (``experiments/protocols.py``: ``cbs``; the report fits
S = a + b/B and gives B* = 0.2 b / a, where S is 20% above linear scaling).
"""

import ml_collections

from configs import modalities
from configs.base import base_config, parse_variants, set_protocol_run, set_sweep


def _cell(modality: str, arch: str, optimizer: str, kwargs: dict, eval_every: int,
          smoke: bool):
  c = modalities.get_config(f"{modality},{arch},smoke")
  with c.unlocked():
    set_protocol_run(
        c, optimizer,  # the task's method
        kwargs=kwargs,  # its arguments
        grad_clip_norm=0.0,  # no clipping
        warmup_steps=0)  # the sweep's warmup fraction sets it
    c.optimizer.schedule.name = "warmup_constant"  # a constant rate: steps to a target
    c.train.eval_every = eval_every  # steps between evaluations (the target is read there)
    c.train.log_every = eval_every  # a metric line at each evaluation
    if smoke and "depth" in c.model:
      c.model.depth = 1  # the smallest model that is still the architecture
  return c


def get_config(arg: str = "mini"):
  smoke = "smoke" in parse_variants(arg, ("mini", "smoke"))
  c = base_config()
  cells = {
      "linear": _cell("theory", "linear", "sgd",  # plain SGD: the exact theory's method
                      dict(momentum=0.0, nesterov=False), 1, smoke),  # no momentum
      "gpt": _cell("language", "gpt", "adam", dict(b1=0.9, b2=0.95, eps=1e-8),  # Adam, LM betas
                   2, smoke),
  }
  rates = {  # each task's constant rates, a factor of about 2 apart
      "linear": (0.05, 0.1, 0.2, 0.4) if smoke else (0.1, 0.2, 0.4, 0.8, 1.2, 1.6),
      "gpt": (3e-3, 1e-2) if smoke else (2e-3, 4e-3, 8e-3, 1.6e-2, 3.2e-2),
  }
  set_sweep(
      c,
      grid={"train.global_batch": (8, 32) if smoke else (8, 16, 32, 64, 128),  # batch sizes
            "seed": (0,)},  # one seed per cell: S(B) is the least over the rates
      cells=cells,  # the two tasks
      cell_axes={name: {"optimizer.learning_rate": r} for name, r in rates.items()},
      examples_budget=512 if smoke else 12288,  # examples per run: steps = budget / B
      warmup_fraction=0.02)  # a short linear warmup (2% of the steps)
  c.protocol = ml_collections.ConfigDict()
  c.protocol.name = "cbs"  # experiments/protocols.py: the grid, then the report
  # The targets (eval loss): linear regression's Bayes risk is 0.125 (noise_std 0.5); the
  # GPT's bytes start at ln 256 = 5.55 nats.
  c.protocol.targets = ml_collections.ConfigDict(
      {"linear": 0.16 if smoke else 0.13,  # eval MSE/2: excess risk about 0.035 / 0.005
       "gpt": 4.2 if smoke else 3.0})  # eval cross-entropy, nats per byte
  c.protocol.overhead = 0.2  # B* is where S(B) is this far above linear scaling
  return c.lock()
