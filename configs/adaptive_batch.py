"""Adaptive batch sizes (AdAdaGrad, Lau et al. 2024): the batch grows when a test on the
per-example gradients fails, with AdaGrad-Norm and with Adam.

    python train.py --config=configs/adaptive_batch.py:mini --workdir=runs/adaptive
    python train.py --config=configs/adaptive_batch.py:smoke --workdir=/tmp/adaptive  # seconds

The MNIST-1D MLP of the gap study's mini scale from a batch of 8, every 5 steps the norm test or
the augmented inner-product test (eta = theta = nu, from the authors' default 0.1 to 1) on the
per-example gradients of the step's first microbatch of 8 (``training/batch_tests.py``); a failed
test grows the next batch to what it asks, a multiple of 8, up to 512. The report
(``experiments/protocols.py``: ``adaptive``) gives each run's batch over training, its final
loss and the examples it drew.
"""

import ml_collections

from configs import modalities
from configs.base import base_config, parse_variants, set_protocol_run, set_sweep


def _cell(optimizer: str, kwargs: dict, test: str, smoke: bool):
  c = modalities.get_config("vision,mlp,smoke")
  with c.unlocked():
    set_protocol_run(
        c, optimizer,  # the base method
        kwargs=kwargs,  # its arguments
        grad_clip_norm=0.0,  # no clipping: the tests read the raw gradients
        warmup_steps=0)  # no warmup
    c.optimizer.schedule.name = "constant"  # the batch, not the rate, adapts
    c.train.steps = 20 if smoke else 400  # optimizer updates
    c.train.global_batch = 8  # the first batch
    c.train.num_microbatches = 1  # one microbatch of 8: the test's sample; the batch grows by 8s
    c.train.ramp.adaptive_test = test  # norm | augmented
    c.train.ramp.test_every = 5  # steps between tests
    c.train.ramp.test_eta = 0.1  # the authors' default eta = theta = nu
    c.train.ramp.max_batch = 512  # the cap
    c.train.eval_every = 10**9  # evaluated at the end only
  return c


def get_config(arg: str = "mini"):
  smoke = "smoke" in parse_variants(arg, ("mini", "smoke"))
  c = base_config()
  methods = {"adagrad_norm": ("adagrad_norm", dict(b0=0.1), 1.0),  # AdaGrad-Norm, its b0
             "adam": ("adam", dict(b1=0.9, b2=0.999, eps=1e-8), 3e-3)}  # Adam's defaults
  cells = {}
  for name, (optimizer, kwargs, rate) in methods.items():
    for test in ("norm", "augmented"):
      cell = _cell(optimizer, kwargs, test, smoke)
      with cell.unlocked():
        cell.optimizer.learning_rate = rate  # the method's rate
      cells[f"{name}-{test}"] = cell
  set_sweep(
      c,
      grid={"train.ramp.test_eta": (0.1, 1.0) if smoke else (0.1, 0.3, 1.0),  # test strictness
            "seed": (0,) if smoke else (0, 1)},  # seeds of every (cell, eta)
      cells=cells)  # method x test
  c.protocol = ml_collections.ConfigDict()
  c.protocol.name = "adaptive"  # experiments/protocols.py: the grid, then the report
  return c.lock()
