"""Step time, throughput and MFU of the quickstart GPT; the training loop's overhead.

    python benchmarks/step.py [--steps 20] [--config configs/quickstart.py]

MFU = model FLOP/s (6 N + 12 L D T per token, PaLM's convention; XLA's own count of the
compiled step beside it) / the f32 matmul peak that XLA reaches in this same process (best of
square matmuls). "bare" is the jitted train step called in a Python loop on one fixed batch;
"loop" is ``training.execute`` (data, metrics fetched one step late, progress) over the same
config and programs, each step timed from its records' ``time_s``; both leave out their first 3
steps. The helpers (``matmul_rates``, ``matmul_peak``, ``xla_flops``, ``bare_step_times``,
``loop_step_times``) are shared with ``benchmarks/run.py`` and ``benchmarks/torch_peer.py``;
importing this module has no side effect.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import train  # noqa: E402  (for the malloc settings the command line uses)

if __name__ == "__main__":  # imported (benchmarks/run.py), the importer has decided already
  train.reexec_with_launch_env()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import training  # noqa: E402
from training import cli, records  # noqa: E402


def matmul_rates(sizes=(1024, 2048, 3072), reps=5) -> dict[int, float]:
  """Best f32 FLOP/s of a jitted ``n x n @ n x n`` for each ``n`` in ``sizes`` (best of ``reps``
  timed calls after two untimed ones: a peak, so the least disturbed call counts)."""
  matmul = jax.jit(lambda x, y: x @ y)
  rates = {}
  for n in sizes:
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    for _ in range(2):
      matmul(a, b).block_until_ready()
    best = 0.0
    for _ in range(reps):
      t = time.perf_counter()
      matmul(a, b).block_until_ready()
      best = max(best, 2 * n**3 / (time.perf_counter() - t))
    rates[n] = best
  return rates


def matmul_peak(sizes=(1024, 2048, 3072), reps=5) -> float:
  """Best f32 FLOP/s of a jitted square matmul: the denominator of MFU on this machine."""
  return max(matmul_rates(sizes, reps).values())


def xla_flops(compiled) -> float | None:
  """FLOPs of one call of ``compiled`` (a ``jax.stages.Compiled``) as XLA counts them, or
  ``None`` where the backend gives no count. A ``while`` body (``lax.scan``) counts once."""
  cost = compiled.cost_analysis()
  if isinstance(cost, list | tuple):  # older jax: one dict per program
    cost = cost[0] if cost else {}
  flops = (cost or {}).get("flops")
  return float(flops) if flops and flops > 0 else None


def bare_step_times(setup, steps: int, compiled: training.Steps | None = None, *,
                    warmup: int = 3) -> tuple[list[float], float]:
  """Seconds per call of the compiled train step on one fixed batch, after ``warmup`` calls;
  and the compile time. ``compiled``: the setup's programs, compiled here if not given."""
  cfg = setup.config
  compiled = training.compile_steps(setup) if compiled is None else compiled
  state, _ = training.fresh_state(setup, compiled)
  batch = training.train_batch(setup.source, 0, cfg.train.global_batch,
                               cfg.train.num_microbatches, compiled.batch_sharding)
  for _ in range(warmup):
    state, metrics = compiled.train(state, batch)
  jax.block_until_ready(state)
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    state, metrics = compiled.train(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t)
  return times, compiled.compile_s


def loop_step_times(setup, compiled: training.Steps) -> tuple[list[float], float | None]:
  """Seconds of the steps of ``training.execute(setup, compiled)`` and its own ``step_time_s``.

  The records' ``time_s`` (``train.log_every`` must be 1) give each step: the loop fetches a
  step's metrics while the next one runs, so the difference of two records is one step's time.
  The list starts at the second step; leave the warm-up steps out as a bare timing does.
  """
  if setup.config.train.log_every != 1:
    raise ValueError("loop_step_times needs train.log_every=1 (a time_s for every step)")
  summary = training.execute(setup, compiled, plot=False)
  times = [r["time_s"] for r in records.read_metrics(setup.workdir)]
  return [b - a for a, b in zip(times[1:-1], times[2:], strict=True)], summary["step_time_s"]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/quickstart.py")
  parser.add_argument("--steps", type=int, default=20)
  args = parser.parse_args()

  config = cli.load_config(args.config)
  warmup = 3  # steps left out at the start of the bare timing and of the loop alike
  with config.unlocked():
    config.train.steps = warmup + args.steps + 1
    config.train.log_every = 1  # a time_s for every step of the loop (loop_step_times)
    config.optimizer.schedule.warmup_steps = 0
    config.train.eval_every = 0
    config.train.checkpoint_every = 10**9
  with tempfile.TemporaryDirectory() as tmp:
    setup = training.prepare(config, os.path.join(tmp, "loop"))
    peak = matmul_peak()
    compiled = training.compile_steps(setup)
    bare, compile_s = bare_step_times(setup, args.steps, compiled, warmup=warmup)
    loop, _ = loop_step_times(setup, compiled)
    bare_again, _ = bare_step_times(setup, args.steps, compiled, warmup=warmup)

  cfg = setup.config
  bare_s = statistics.median(bare + bare_again)
  loop_s = statistics.median(loop[-args.steps:])
  tokens = cfg.train.global_batch * setup.source.tokens_per_example
  flops = cfg.train.global_batch * setup.flops_per_example
  print(f"config                {args.config}  ({setup.num_params / 1e6:.2f}M parameters, "
        f"batch {cfg.train.global_batch}, devices {jax.device_count()})")
  print(f"compile (train step)  {compile_s:8.1f} s")
  print(f"f32 matmul peak       {peak / 1e9:8.1f} GFLOP/s")
  print(f"bare step             {bare_s * 1e3:8.1f} ms  (median of {len(bare) * 2}; "
        f"min {min(bare + bare_again) * 1e3:.1f})")
  print(f"loop step             {loop_s * 1e3:8.1f} ms  (training.execute, median of its last "
        f"{args.steps} steps)")
  print(f"loop overhead         {100 * (loop_s / bare_s - 1):8.1f} %")
  print(f"tokens/s (bare)       {tokens / bare_s:8.0f}")
  counted = xla_flops(compiled.train)
  print(f"FLOP/step (6N+12LDT)  {flops / 1e9:8.2f} G  (XLA's count of the compiled step: "
        f"{'n/a' if counted is None else f'{counted / 1e9:.2f} G'})")
  print(f"model FLOP/s (bare)   {flops / bare_s / 1e9:8.1f} GFLOP/s")
  print(f"MFU (bare)            {flops / bare_s / peak:8.3f}")
  print(f"MFU (loop)            {flops / loop_s / peak:8.3f}")


if __name__ == "__main__":
  main()
