"""Batch and sequence-length ramps (``training/ramps.py``): stages by steps, examples or tokens,
Seesaw's coupled schedule against an independent reading of its rule, and bad ramps."""

import math

import jax
import ml_collections
import optax
import pytest

from training import ramps


def _cfg(**kw):
  c = ml_collections.ConfigDict(dict(unit="steps", stages=(), seq_len=0, max_batch=0,
                                     seesaw_alpha=0.0))
  c.update(kw)
  return c


def test_stages_by_tokens_start_at_the_first_step_that_reaches_them():
  # Batch 8 x 64 tokens = 512 tokens a step; 2,000 tokens are reached after 4 steps.
  ramp = ramps.build(_cfg(unit="tokens", stages=((2000, 16, 64), (6000, 16, 128)), seq_len=64),
                     steps=20, global_batch=8, micro_size=8, devices=1, seq_len=128)
  assert [(s.step, s.batch, s.seq_len) for s in ramp.stages] == [(0, 8, 64), (4, 16, 64),
                                                                  (8, 16, 128)]
  # 4 x 512 + 4 x 1024 = 6,144 >= 6,000 at step 8; 6,000 - 2,048 = 3,952 needs 4 steps.
  assert ramp.tokens_before(8) == 6144 and ramp.tokens_before(4) == 2048
  assert ramp.examples_before(10) == 4 * 8 + 6 * 16
  assert ramp.shapes == [(8, 64), (16, 64), (16, 128)]
  examples_at = jax.jit(ramp.examples_at)
  for step in range(21):
    assert float(examples_at(step)) == ramp.examples_before(step)
    assert ramp.tokens_before(step) == sum(ramp.stage(s).batch * ramp.stage(s).seq_len
                                           for s in range(step))


def _cosine_crossing(k, alpha, warmup, steps):
  """The first base step at which warmup-cosine (peak 1, to 0) is <= alpha^-k (closed form)."""
  t = warmup + (steps - warmup) * math.acos(2 * alpha**-k - 1) / math.pi
  return math.ceil(t - 1e-9)


@pytest.mark.parametrize("alpha,cap", [(2.0, 256), (2.0, 64), (4.0, 0)])
def test_seesaw_keeps_lr_over_sqrt_batch_cuts_at_the_crossings_and_holds_the_cap(alpha, cap):
  steps, warmup, b0, micro = 1000, 100, 32, 8
  base = optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup, steps, 0.0)
  ramp = ramps.build(_cfg(seesaw_alpha=alpha, max_batch=cap), steps=steps, global_batch=b0,
                     micro_size=micro, devices=8, seq_len=0, base_schedule=base,
                     warmup_steps=warmup)
  batches = [s.batch for s in ramp.stages]
  assert batches == [b0 * int(alpha) ** k for k in range(len(batches))]
  assert all(b % micro == 0 and b % 8 == 0 for b in batches)  # microbatches, devices
  assert not cap or max(batches) <= cap
  if cap == 64:
    assert batches == [32, 64]  # the cap stops the ramp; the rate then decays as the base
  for k, stage in enumerate(ramp.stages[1:], start=1):
    tau = _cosine_crossing(k, alpha, warmup, steps)
    assert ramp.examples_before(stage.step - 1) < tau * b0 <= ramp.examples_before(stage.step)
  budget = steps * b0
  assert budget <= ramp.examples_before(ramp.total_steps) < budget + batches[-1]
  assert ramp.total_steps < steps if len(batches) > 1 else ramp.total_steps == steps
  lr_shape = jax.jit(ramp.lr_shape)
  for step in range(0, ramp.total_steps, 7):
    batch = ramp.stage(step).batch
    base_lr = float(base(ramp.examples_before(step) / b0))
    lr = float(lr_shape(step))
    assert lr / math.sqrt(batch) == pytest.approx(base_lr / math.sqrt(b0), rel=1e-5, abs=1e-9)


def test_seesaw_serial_steps_for_the_paper_s_doubling():
  # Cosine from the peak with alpha = 2 up to 8x the batch: the cuts at 1/2, 1/4 and 1/8 of the
  # peak come at 50%, 66.7% and 77% of the examples, so the steps are
  # 0.5 + 0.167/2 + 0.103/4 + 0.23/8 = 0.64 of the base run's.
  steps = 10_000
  base = optax.cosine_decay_schedule(1.0, steps)
  ramp = ramps.build(_cfg(seesaw_alpha=2.0, max_batch=8 * 16), steps=steps, global_batch=16,
                     micro_size=16, devices=1, seq_len=0, base_schedule=base)
  fractions = [math.acos(2 * 2.0**-k - 1) / math.pi for k in (1, 2, 3)]
  expected = (fractions[0] + (fractions[1] - fractions[0]) / 2
              + (fractions[2] - fractions[1]) / 4 + (1 - fractions[2]) / 8)
  assert ramp.total_steps / steps == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("kw,fragments", [
    (dict(stages=((5, 36, 0),)), ["stages[0]", "36", "microbatch size 8", "devices"]),
    (dict(stages=((5, 64, 0),), max_batch=32), ["stages[0]", "64", "max_batch=32"]),
    (dict(stages=((5, 16, 512),)), ["stages[0]", "512 tokens", "data's 128", "model.max_len"]),
    (dict(stages=((5, 16, 0), (9, 8, 0))), ["stages[1]", "batch 16", "batch 8", "grow"]),
    (dict(stages=((5, 16, 0), (9, 16, 0))), ["stages[1]", "grow one and shrink neither"]),
    (dict(stages=((5, 16, 0), (5, 32, 0))), ["stages[1]", "starts must increase"]),
    (dict(stages=((50, 16, 0),)), ["stages[0]", "after the run's 20 steps"]),
    (dict(stages=((5, 16),)), ["stages[0]", "three integers"]),
    (dict(unit="epochs"), ["unit='epochs'", "steps, examples, tokens"]),
    (dict(seesaw_alpha=0.5), ["seesaw_alpha=0.5", "> 1"]),
    (dict(seq_len=256), ["seq_len=256", "data's windows of 128"]),
])
def test_bad_ramps_name_the_stage_and_the_numbers(kw, fragments):
  with pytest.raises(ValueError) as e:
    ramps.build(_cfg(**kw), steps=20, global_batch=8, micro_size=8, devices=8, seq_len=128)
  message = str(e.value)
  assert "\n" not in message and message.startswith("train.ramp."), message
  for fragment in fragments:
    assert fragment in message, message
