"""Step time, throughput and MFU of the quickstart GPT; the training loop's overhead.

    python benchmarks/step.py [--steps 20] [--config configs/quickstart.py]

MFU = model FLOP/s (6 N + 12 L D T per token, PaLM's convention) / the f32 matmul peak that
XLA reaches in this same process (best of square matmuls). "bare" is the jitted train step
called in a Python loop on one fixed batch; "loop" is ``training.execute`` (data, metrics at
its log steps, progress) over the same config, timed from its second step to its last.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import train  # noqa: E402  (for the malloc settings the command line uses)

train.reexec_with_malloc_tunables()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import training  # noqa: E402
from training import cli  # noqa: E402


def matmul_peak(sizes=(1024, 2048, 3072), reps=5) -> float:
  """Best f32 FLOP/s of a jitted square matmul."""
  best = 0.0
  for n in sizes:
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    f(a, b).block_until_ready()
    for _ in range(reps):
      t = time.perf_counter()
      f(a, b).block_until_ready()
      best = max(best, 2 * n**3 / (time.perf_counter() - t))
  return best


def bare_step_times(setup, steps: int) -> tuple[list[float], float]:
  """Seconds per call of the compiled train step on one fixed batch; and the compile time."""
  cfg = setup.config
  compiled = training.compile_steps(setup)
  state, _ = training.fresh_state(setup, compiled)
  batch = training.train_batch(setup.source, 0, cfg.train.global_batch,
                               cfg.train.num_microbatches, compiled.batch_sharding)
  for _ in range(3):
    state, metrics = compiled.train(state, batch)
  jax.block_until_ready(state)
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    state, metrics = compiled.train(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t)
  return times, compiled.compile_s


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/quickstart.py")
  parser.add_argument("--steps", type=int, default=20)
  args = parser.parse_args()

  config = cli.load_config(args.config)
  with tempfile.TemporaryDirectory() as tmp:
    setup = training.prepare(config, os.path.join(tmp, "unused"))
    peak = matmul_peak()
    bare, compile_s = bare_step_times(setup, args.steps)
    with config.unlocked():
      config.train.steps = args.steps + 1
      config.optimizer.schedule.warmup_steps = 0
      config.train.eval_every = 0
      config.train.checkpoint_every = 10**9
    summary = training.run(config, os.path.join(tmp, "loop"))
    bare_again, _ = bare_step_times(setup, args.steps)

  cfg = setup.config
  bare_s = statistics.median(bare + bare_again)
  loop_s = summary["step_time_s"]
  tokens = cfg.train.global_batch * setup.source.tokens_per_example
  flops = cfg.train.global_batch * setup.flops_per_example
  print(f"config                {args.config}  ({setup.num_params / 1e6:.2f}M parameters, "
        f"batch {cfg.train.global_batch}, devices {jax.device_count()})")
  print(f"compile (train+eval)  {compile_s:8.1f} s")
  print(f"f32 matmul peak       {peak / 1e9:8.1f} GFLOP/s")
  print(f"bare step             {bare_s * 1e3:8.1f} ms  (median of {len(bare) * 2}; "
        f"min {min(bare + bare_again) * 1e3:.1f})")
  print(f"loop step             {loop_s * 1e3:8.1f} ms  (training.run, {args.steps} steps)")
  print(f"loop overhead         {100 * (loop_s / bare_s - 1):8.1f} %")
  print(f"tokens/s (bare)       {tokens / bare_s:8.0f}")
  print(f"model FLOP/s (bare)   {flops / bare_s / 1e9:8.1f} GFLOP/s")
  print(f"MFU (bare)            {flops / bare_s / peak:8.3f}")
  print(f"MFU (loop)            {flops / loop_s / peak:8.3f}")


if __name__ == "__main__":
  main()
