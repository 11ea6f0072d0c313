"""Batch and sequence-length ramps (``training/ramps.py``): stages by steps, examples or tokens,
Seesaw's coupled schedule against an independent reading of its rule, and bad ramps."""

import math
import os

import jax
import ml_collections
import numpy as np
import optax
import pytest

from training import ramps


def _cfg(**kw):
  c = ml_collections.ConfigDict(dict(unit="steps", stages=(), seq_len=0, max_batch=0,
                                     seesaw_alpha=0.0, adaptive_test="", test_every=10,
                                     test_eta=0.1))
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


# ----------------------------------------------------------------------------- in the loop

RAMP = ("--config.train.num_microbatches=2", "--config.train.ramp.seq_len=16",
        "--config.train.ramp.stages=((8, 32, 16), (16, 32, 32))")


def _ramped(**train):
  from configs import quickstart
  config = quickstart.get_config("smoke")
  with config.unlocked():
    config.train.num_microbatches = 2  # microbatches of 8: the ramp adds microbatches
    config.train.ramp.seq_len = 16  # the first stage's sequences: half the windows
    config.train.ramp.stages = ((8, 32, 16), (16, 32, 32))  # batch x2, then length x2
    for key, value in train.items():
      config.train[key] = value
  return config


@pytest.mark.slow  # compiles several programs: seconds on two cores
def test_a_ramp_compiles_once_per_shape_and_counts_examples_and_tokens(tmp_path):
  import dataclasses

  from conftest import read_metrics

  import training
  setup = training.prepare(_ramped(steps=24, log_every=1), str(tmp_path))
  steps = training.compile_steps(setup)
  compiled = []

  def counting(example):
    compiled.append(jax.tree.map(lambda x: x.shape, example))
    return steps.compile_train(example)

  summary = training.execute(setup, dataclasses.replace(steps, compile_train=counting))
  # Three stages, three shapes: the first compiled with the setup, two more the first time
  # each stage came, none per step.
  assert len(compiled) == 2 and len(steps.programs) == 3
  assert sorted(c["inputs"] for c in compiled) == [(4, 8, 16), (4, 8, 32)]
  history = read_metrics(tmp_path)
  seen = [r["examples_seen"] for r in history]
  tokens = [r["tokens_seen"] for r in history]
  expected_batch = [16] * 8 + [32] * 16
  expected_tokens = [16 * 16] * 8 + [32 * 16] * 8 + [32 * 32] * 8
  assert seen == list(np.cumsum(expected_batch))
  assert tokens == list(np.cumsum(expected_tokens))
  assert summary["tokens_seen"] == tokens[-1] and summary["examples_seen"] == seen[-1]


@pytest.mark.slow  # a GPT trained through three batch sizes
def test_seesaw_in_the_loop_logs_its_rate_and_batch_against_the_base_schedule(tmp_path):
  from conftest import read_metrics

  import training
  from configs import quickstart
  config = quickstart.get_config("smoke")
  with config.unlocked():
    config.train.num_microbatches = 2  # microbatches of 8
    config.train.ramp.seesaw_alpha = 2.0  # batch x2, rate / sqrt 2 where cosine halves
    config.train.ramp.max_batch = 64  # two doublings at most
    config.train.log_every = 1  # every step: batch and rate of each
  summary = training.run(config, str(tmp_path))
  history = read_metrics(tmp_path)
  base = optax.warmup_cosine_decay_schedule(0.0, 3e-3, 2, 20, 3e-4)  # the smoke's schedule
  drawn = [r["examples_seen"] for r in history]
  batches = np.diff([0] + drawn)
  assert summary["steps"] == len(history) < 20 and drawn[-1] >= 20 * 16
  assert set(batches) == {16, 32, 64}
  for record, batch, before in zip(history, batches, [0] + drawn[:-1], strict=True):
    # The rate logged at a step is the one its update used (the optimizer's count before it).
    want = float(base(before / 16)) * math.sqrt(batch / 16)
    assert record["lr"] == pytest.approx(want, rel=2e-6, abs=1e-9), record["step"]


def test_train_py_refuses_a_bad_ramp_in_one_line(tmp_path, capsys):
  from conftest import ROOT

  from training import cli
  workdir = tmp_path / "run"
  code = cli.main(["train.py", f"--config={ROOT / 'configs/quickstart.py'}:smoke",
                   f"--workdir={workdir}", "--config.train.num_microbatches=2",
                   "--config.train.ramp.stages=((8, 36, 0),)"])
  lines = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(lines) == 1, lines
  assert "train.ramp.stages[0]" in lines[0] and "36" in lines[0] and "8" in lines[0], lines
  assert not workdir.exists() or not os.listdir(workdir)


@pytest.mark.slow  # train.py three times, one of them killed
def test_a_ramped_run_killed_and_resumed_equals_the_uninterrupted_one(tmp_path):
  import signal
  import subprocess
  import time

  from conftest import loss_curve, read_metrics, run_train, train_cmd
  args = (*RAMP, "--config.train.steps=24", "--config.train.checkpoint_every=4",
          "--config.train.log_every=1")
  whole, cut = tmp_path / "whole", tmp_path / "cut"
  run_train("configs/quickstart.py:smoke", whole, *args)
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
  proc = subprocess.Popen(train_cmd("configs/quickstart.py:smoke", cut, *args), env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  # Killed in the second stage, after the checkpoint at step 12: the resumed run starts there
  # and crosses into the third stage (longer sequences) at step 16.
  while not (cut / "metrics.jsonl").exists() or len(read_metrics(cut)) < 14:
    assert proc.poll() is None and time.time() < deadline, "the run ended before the kill"
    time.sleep(0.01)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (cut / "summary.json").exists()
  run_train("configs/quickstart.py:smoke", cut, *args)
  assert loss_curve(cut) == loss_curve(whole)  # bit for bit
  assert [r["tokens_seen"] for r in read_metrics(cut)] == [
      r["tokens_seen"] for r in read_metrics(whole)]


@pytest.mark.slow  # a GPT trained twice, with per-example gradients
def test_an_adaptive_batch_grows_at_tests_only_and_resumes_exactly(tmp_path):
  import shutil

  from conftest import read_metrics

  import training
  from configs import quickstart
  config = quickstart.get_config("smoke")
  with config.unlocked():
    config.train.num_microbatches = 2  # microbatches of 8 examples: the test's sample
    config.train.ramp.adaptive_test = "norm"  # AdAdaGrad's norm test
    config.train.ramp.test_every = 3  # at steps 0, 3, 6, ... (counted before the update)
    config.train.ramp.test_eta = 0.2  # (loose enough to pass sometimes on this GPT)
    config.train.ramp.max_batch = 48  # the cap
    config.train.steps, config.train.checkpoint_every, config.train.log_every = 12, 4, 1
  whole = tmp_path / "whole"
  training.run(config, str(whole))
  history = read_metrics(whole)
  batches = [r["batch"] for r in history]
  assert batches[0] == 16 and max(batches) > 16 and all(b <= 48 and b % 8 == 0 for b in batches)
  # A test at step i (counted from 0, before its update) sets the batch of step i + 1.
  for step, (before, after) in enumerate(zip(batches[:-1], batches[1:], strict=True)):
    assert after >= before and (after == before or step % 3 == 0), batches
  assert [r["examples_seen"] for r in history] == list(np.cumsum(batches))
  # Resumed from its checkpoint at step 8 (the later ones removed), the run draws the same
  # batches and losses: the chosen batch is part of the checkpoint.
  cut = tmp_path / "cut"
  shutil.copytree(whole, cut)
  for name in ("12",):
    shutil.rmtree(cut / "checkpoints" / name)
  os.remove(cut / "summary.json")
  training.run(config, str(cut))
  assert read_metrics(cut) == [{**r, "time_s": c["time_s"]}
                               for r, c in zip(history, read_metrics(cut), strict=True)]


def test_adaptive_batches_need_a_cap_and_no_other_ramp():
  with pytest.raises(ValueError, match="max_batch=0 must cap an adaptive batch"):
    ramps.build(_cfg(adaptive_test="norm"), steps=20, global_batch=8, micro_size=4, devices=1,
                seq_len=0)
  with pytest.raises(ValueError, match="adaptive_test is exclusive"):
    ramps.build(_cfg(adaptive_test="norm", max_batch=32, stages=((5, 16, 0),)), steps=20,
                global_batch=8, micro_size=4, devices=1, seq_len=0)
  with pytest.raises(ValueError, match="adaptive_test='variance' must be one of norm"):
    ramps.build(_cfg(adaptive_test="variance", max_batch=32), steps=20, global_batch=8,
                micro_size=4, devices=1, seq_len=0)


def test_a_stage_s_rate_factor_scales_the_base_schedule_from_its_first_step():
  base = optax.warmup_cosine_decay_schedule(0.0, 1.0, 2, 40, 0.0)
  ramp = ramps.build(_cfg(unit="examples", stages=((64, 16, 0, 0.25), (200, 32, 0))), steps=40,
                     global_batch=8, micro_size=8, devices=1, seq_len=0, base_schedule=base)
  assert [(s.step, s.batch) for s in ramp.stages] == [(0, 8), (8, 16), (17, 32)]
  lr_shape = jax.jit(ramp.lr_shape)
  for step in range(40):
    factor = 1.0 if step < 8 else 0.25  # a later stage without a factor keeps the last one
    # float32 inside and outside jit: the cosine agrees to a few ulps of 1 (near its end,
    # 1 + cos cancels: an absolute band there)
    assert float(lr_shape(step)) == pytest.approx(float(base(step)) * factor, rel=1e-5, abs=1e-6)
  with pytest.raises(ValueError, match=r"stages\[0\].*rate factor > 0"):
    ramps.build(_cfg(stages=((5, 16, 0, -1.0),)), steps=20, global_batch=8, micro_size=8,
                devices=1, seq_len=0, base_schedule=base)
