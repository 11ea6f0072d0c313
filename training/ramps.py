r"""Batch and sequence-length ramps: the global batch and the sequence length as functions of the
step counter, and Seesaw's coupled (learning rate, batch) schedule.

A ramp is a list of stages, each from its first step on: a global batch and a sequence length.
The batch grows by the number of microbatches (the per-device shape stays fixed, so each
distinct (microbatches, length) pair compiles once); a shorter sequence is the first ``seq_len``
tokens of each training window, so the data stream's position stays one integer (examples
drawn) and a resumed run draws exactly the batches of an uninterrupted one. ``Ramp`` maps
``state.step`` to its stage, to the examples and tokens drawn before it, and (for Seesaw) to
the learning rate, all from the same stage table:

    config.train.ramp.stages = ((1000, 64, 256), (3000, 128, 256))   # from step 1000: batch 64
    config.train.ramp.stages = ((1000, 64, 256, 0.5),)   # and half the rate from there on

**Seesaw** (Meterez et al., 2025, arXiv 2510.14717): wherever the base schedule (the
constant-batch run's, by examples drawn) would divide the learning rate by $\alpha$, divide it by
$\sqrt\alpha$ and multiply the batch by $\alpha$ instead, up to a largest batch. The $k$-th cut
is where the base schedule first falls to $\alpha^{-k}$ of its peak after the warmup. Between
cuts the rate follows the base schedule's shape, so at every step

$$\frac{\eta_{\rm seesaw}}{\sqrt{B}} = \frac{\eta_{\rm base}}{\sqrt{B_0}}$$

with both taken at the same number of examples drawn: a cut divides $\eta/\sqrt B$ by
$\sqrt\alpha\cdot\sqrt\alpha = \alpha$, as the base schedule's cut divides $\eta$. (For normalized
SGD the paper's invariant is the decay factor times the square root of the batch factor; for
plain SGD on linear regression it is the decay factor times the batch factor: a decay by
$\alpha$ equals a batch ramp by $\alpha$ at a fixed rate.) The run ends at the base run's
examples, in fewer serial steps. Once the batch reaches the cap the rate decays as the base
schedule's does.
"""

import dataclasses
import math
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

from plain_numbers import is_int, is_number

UNITS = ("steps", "examples", "tokens")


@dataclasses.dataclass(frozen=True)
class Stage:
  step: int  # the stage's first step
  batch: int  # global batch: examples per update
  seq_len: int  # tokens per training sequence (0: the data are not token sequences)


@dataclasses.dataclass(frozen=True)
class Ramp:
  """Stages from step 0 on, ``total_steps`` updates in all; ``base_batch`` is the first stage's
  batch and ``lr_shape`` (Seesaw) the learning-rate shape as a function of the step."""

  stages: tuple[Stage, ...]
  total_steps: int
  lr_shape: Callable | None = None
  adaptive: "Adaptive | None" = None  # the batch grows when a test fails (one stage then)

  def stage(self, step: int) -> Stage:
    index = int(np.searchsorted([s.step for s in self.stages], step, side="right")) - 1
    return self.stages[max(index, 0)]

  def examples_before(self, step: int) -> int:
    """Examples drawn by steps ``0 .. step - 1``."""
    total = 0
    for stage, end in zip(self.stages, [s.step for s in self.stages[1:]] + [math.inf],
                          strict=True):
      total += stage.batch * max(0, min(step, end) - stage.step)
    return total

  def tokens_before(self, step: int) -> int:
    total = 0
    for stage, end in zip(self.stages, [s.step for s in self.stages[1:]] + [math.inf],
                          strict=True):
      total += stage.batch * stage.seq_len * max(0, min(step, end) - stage.step)
    return total

  @property
  def shapes(self) -> list[tuple[int, int]]:
    """The distinct (batch, sequence length) pairs: one compiled train step each."""
    return sorted({(s.batch, s.seq_len) for s in self.stages})

  def examples_at(self, step):
    """``examples_before`` for a traced step (for the learning-rate schedule)."""
    starts = jnp.asarray([s.step for s in self.stages], jnp.int32)
    batches = jnp.asarray([s.batch for s in self.stages], jnp.float32)
    drawn = jnp.asarray([self.examples_before(s.step) for s in self.stages], jnp.float32)
    index = jnp.maximum(jnp.sum(step >= starts) - 1, 0)
    return drawn[index] + (step - starts[index]) * batches[index]


@dataclasses.dataclass(frozen=True)
class Adaptive:
  """AdAdaGrad's batch growth (``training/batch_tests.py``): every ``every`` steps, ``test``
  on the per-example gradients of the step's first microbatch; a failed test grows the next
  batch to what it asks for, a multiple of the microbatch size, at most ``max_batch``."""

  test: str  # norm | inner_product | augmented
  eta: float  # the test's eta (theta = nu for the augmented test)
  every: int
  max_batch: int


def _fail(key: str, problem: str) -> None:
  raise ValueError(f"train.ramp.{key}{'' if problem.startswith('=') else ' '}{problem}")


def build(ramp_cfg, *, steps: int, global_batch: int, micro_size: int, devices: int,
          seq_len: int, base_schedule: Callable | None = None,
          warmup_steps: int = 0) -> Ramp:
  """The ramp of ``train.ramp`` (``configs/base.py``), checked: one-line ``ValueError``s name the
  key and the numbers.

  Args:
    ramp_cfg: ``unit``, ``stages``, ``seq_len``, ``max_batch``, ``seesaw_alpha``.
    steps, global_batch: ``train.steps`` and ``train.global_batch`` (the first stage's batch).
    micro_size: examples per microbatch (``global_batch / num_microbatches``): every batch of
      the ramp is a multiple of it.
    devices: data-parallel devices (they split each microbatch).
    seq_len: the data's sequence length (0: not token sequences).
    base_schedule: Seesaw's base learning-rate shape over the constant-batch run's steps.
    warmup_steps: the base schedule's warmup (Seesaw cuts only after it).
  """
  unit, stages_cfg = ramp_cfg.unit, tuple(ramp_cfg.stages)
  first_seq, cap, alpha = ramp_cfg.seq_len, ramp_cfg.max_batch, ramp_cfg.seesaw_alpha
  if unit not in UNITS:
    _fail("unit", f"={unit!r} must be one of {', '.join(UNITS)}")
  if not is_int(first_seq) or first_seq < 0:
    _fail("seq_len", f"={first_seq!r} must be an integer >= 0 (0 = data.seq_len)")
  if not is_int(cap) or cap < 0:
    _fail("max_batch", f"={cap!r} must be an integer >= 0 (0 = no cap)")
  if not is_number(alpha) or not (alpha == 0 or alpha > 1):
    _fail("seesaw_alpha", f"={alpha!r} must be 0 (off) or a number > 1")
  if (stages_cfg or first_seq) and not seq_len and (first_seq or any(
      len(s) == 3 and s[2] for s in stages_cfg)):
    _fail("stages", "sets a sequence length, but the data are not token sequences")
  if unit == "tokens" and not seq_len:
    _fail("unit", "='tokens' needs token-sequence data; use steps or examples")
  if first_seq > seq_len:
    _fail("seq_len", f"={first_seq} is beyond the data's windows of {seq_len} tokens "
                     f"(data.seq_len; the model's positions are model.max_len)")
  if alpha and stages_cfg:
    _fail("seesaw_alpha", "and train.ramp.stages are exclusive: Seesaw makes its own stages")
  adaptive = _adaptive(ramp_cfg, micro_size, global_batch)
  if adaptive and (alpha or stages_cfg or first_seq):
    _fail("adaptive_test", "is exclusive with train.ramp.stages, seq_len and seesaw_alpha: "
                           "the test alone sets the batch")

  def check_batch(where: str, batch: int) -> None:
    if batch % micro_size:
      _fail(where, f"asks for a global batch of {batch}, not a multiple of the microbatch size "
                   f"{micro_size} (train.global_batch / train.num_microbatches), which the "
                   f"{devices} devices split")
    if cap and batch > cap:
      _fail(where, f"asks for a global batch of {batch}, above train.ramp.max_batch={cap}")

  first = Stage(0, global_batch, first_seq or seq_len)
  if cap and global_batch > cap:
    _fail("max_batch", f"={cap} is below the first stage's batch, "
                       f"train.global_batch={global_batch}")
  if alpha:
    if base_schedule is None:
      raise ValueError("Seesaw needs the base learning-rate schedule")
    return _seesaw(first, float(alpha), cap, micro_size, steps, base_schedule, warmup_steps)
  if not stages_cfg:
    return Ramp((first,), steps, adaptive=adaptive)
  per_step = lambda stage: {"steps": 1, "examples": stage.batch,
                            "tokens": stage.batch * stage.seq_len}[unit]
  stages, counted, previous_start, factors = [first], 0, 0, [1.0]
  for i, spec in enumerate(stages_cfg):
    where = f"stages[{i}]"
    if (not isinstance(spec, tuple | list) or len(spec) not in (3, 4)
        or not all(is_int(v) for v in spec[:3])
        or (len(spec) == 4 and not (is_number(spec[3]) and spec[3] > 0))):
      _fail(where, f"={spec!r} must be (start, global_batch, seq_len[, lr_factor]): three "
                   f"integers and a rate factor > 0")
    start, batch, length = spec[:3]
    factors.append(float(spec[3]) if len(spec) == 4 else factors[-1])
    length = length or seq_len
    if start <= previous_start:
      _fail(where, f"starts at {start} {unit}, not after the previous stage's start "
                   f"({previous_start}): starts must increase")
    if batch < 1:
      _fail(where, f"asks for a global batch of {batch}; it must be >= 1")
    check_batch(where, batch)
    if length > seq_len:
      _fail(where, f"asks for sequences of {length} tokens, beyond the data's {seq_len} "
                   f"(data.seq_len; the model's positions are model.max_len)")
    prev = stages[-1]
    if batch < prev.batch or length < prev.seq_len or (batch, length) == (prev.batch,
                                                                          prev.seq_len):
      _fail(where, f"goes from (batch {prev.batch}, length {prev.seq_len}) to (batch {batch}, "
                   f"length {length}): a ramp must grow one and shrink neither")
    # The stage starts at the first step at which the count reaches its start.
    step = prev.step + max(1, math.ceil((start - counted) / per_step(prev)))
    counted += per_step(prev) * (step - prev.step)
    previous_start = start
    if step >= steps:
      _fail(where, f"starts at {start} {unit}, after the run's {steps} steps (train.steps)")
    stages.append(Stage(step, batch, length))
  ramp = Ramp(tuple(stages), steps)
  if all(f == 1.0 for f in factors):
    return ramp
  if base_schedule is None:
    raise ValueError("a ramp with rate factors needs the base learning-rate schedule")
  # A stage's factor multiplies the base schedule from its first step on (the BST rule's
  # restart at a new budget: a larger batch and its own stepsize).
  starts = jnp.asarray([s.step for s in stages], jnp.int32)
  scale = jnp.asarray(factors, jnp.float32)
  lr_shape = lambda step: base_schedule(step) * scale[jnp.maximum(jnp.sum(step >= starts) - 1, 0)]
  return dataclasses.replace(ramp, lr_shape=lr_shape)


def _adaptive(ramp_cfg, micro_size: int, global_batch: int) -> Adaptive | None:
  from training import batch_tests  # noqa: PLC0415 -- JAX code for the loop, not for configs
  name, every, eta, cap = (ramp_cfg.adaptive_test, ramp_cfg.test_every, ramp_cfg.test_eta,
                           ramp_cfg.max_batch)
  if name == "":
    return None
  if name not in batch_tests.TESTS:
    _fail("adaptive_test", f"={name!r} must be one of {', '.join(batch_tests.TESTS)} or '' "
                           f"(off)")
  if not is_int(every) or every < 1:
    _fail("test_every", f"={every!r} must be an integer >= 1 (steps between tests)")
  if not is_number(eta) or not eta > 0:
    _fail("test_eta", f"={eta!r} must be a number > 0")
  if not cap or cap % micro_size or cap < global_batch:
    _fail("max_batch", f"={cap} must cap an adaptive batch: a multiple of the microbatch size "
                       f"{micro_size}, at least train.global_batch={global_batch}")
  if micro_size < 2:
    _fail("adaptive_test", "needs microbatches of two or more examples (the test's variances)")
  return Adaptive(name, float(eta), every, cap)


def _seesaw(first: Stage, alpha: float, cap: int, micro_size: int, base_steps: int,
            base_schedule: Callable, warmup_steps: int) -> Ramp:
  """Seesaw's stages and learning-rate shape over a base run of ``base_steps`` at
  ``first.batch`` (module doc). A batch of ``B0 alpha^k`` is rounded to a multiple of the
  microbatch size; the rate uses the batch actually drawn, so the invariant holds exactly."""
  b0, budget = first.batch, base_steps * first.batch  # examples of the base run
  peak = float(base_schedule(warmup_steps))
  shape = np.asarray(base_schedule(np.arange(base_steps + 1)), np.float64) / peak
  cuts = []  # (examples at the cut, batch after it)
  k = 1
  while True:
    batch = micro_size * round(b0 * alpha**k / micro_size)
    if (cap and batch > cap) or batch <= (cuts[-1][1] if cuts else b0):
      break
    below = np.nonzero((np.arange(base_steps + 1) >= warmup_steps) & (shape <= alpha**-k))[0]
    if not len(below) or below[0] >= base_steps:
      break
    cuts.append((int(below[0]) * b0, batch))
    k += 1
  stages, drawn = [first], 0
  for at, batch in cuts:
    prev = stages[-1]
    n = max(1, math.ceil((at - drawn) / prev.batch))  # the first step at or past the cut
    if drawn + n * prev.batch >= budget:
      break
    drawn += n * prev.batch
    stages.append(Stage(prev.step + n, batch, first.seq_len))
  total = stages[-1].step + math.ceil((budget - drawn) / stages[-1].batch)
  ramp = Ramp(tuple(stages), total)
  batches = jnp.asarray([s.batch for s in stages], jnp.float32)
  starts = jnp.asarray([s.step for s in stages], jnp.int32)

  def lr_shape(step):
    base_step = ramp.examples_at(step) / b0  # where the base run would be
    index = jnp.maximum(jnp.sum(step >= starts) - 1, 0)
    return base_schedule(base_step) * jnp.sqrt(batches[index] / b0)

  return dataclasses.replace(ramp, lr_shape=lr_shape)
