"""Activation rematerialisation (``model.remat``) on the quickstart GPT: step time and memory.

    python benchmarks/remat.py [--config configs/quickstart.py] [--steps 10] [--rounds 3]

Time: each variant's train step is compiled once in this process and called on one fixed
batch, the variants taking turns (``rounds`` x ``steps`` calls each), so that a change in the
machine's load hits both alike; the median call is reported. Memory, two accounts: XLA's own
plan for the compiled step (``memory_analysis``: ``temp`` holds the activations kept for the
backward pass, which remat trades for recomputation; ``peak`` adds the arguments and outputs
that are not aliased by donation), and the resident memory of a fresh process that prepares
and compiles the variant alone and then runs a few steps: its peak RSS while stepping (the
kernel's high-water mark, reset once the program is compiled and the state made, so that the
compiler's own peak is not counted) and how far that is above the RSS before the first step.
That process runs with glibc's default malloc settings, which hand freed memory back to the
kernel; the malloc settings of ``train.py`` keep it, which would hide the steps' part.

On XLA's CPU backend remat saves nothing by default: its pipeline expands the optimization
barriers that ``jax.checkpoint`` puts around the recomputation early, and common-subexpression
elimination then merges the recomputation back into the forward pass. ``--keep-opt-barriers``
runs with ``XLA_FLAGS=--xla_disable_hlo_passes=cse_barrier_expander`` (set before JAX starts),
which keeps them, so the CPU shows what remat does on an accelerator.

``compare`` takes any variants (``benchmarks/precision.py`` compares compute dtypes with it).
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import train  # noqa: E402  (for the malloc settings the command line uses)

KEEP_OPT_BARRIERS = "--xla_disable_hlo_passes=cse_barrier_expander"

if __name__ == "__main__":  # imported (benchmarks/precision.py), the importer has decided
  flags = os.environ.get("XLA_FLAGS", "")
  if "--keep-opt-barriers" in sys.argv and KEEP_OPT_BARRIERS not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} {KEEP_OPT_BARRIERS}".strip()  # read once, at JAX's start
  train.reexec_with_launch_env()

import jax  # noqa: E402

import training  # noqa: E402
from training import cli  # noqa: E402

VARIANTS = {"remat off": {"model.remat": False}, "remat on": {"model.remat": True}}
_MB = 2.0**20


def variant_config(spec: str, overrides: dict):
  """The config of ``spec`` with dotted-key ``overrides`` and no evaluation (none is timed)."""
  config = cli.load_config(spec)
  with config.unlocked():
    config.train.eval_every = 0  # no eval step to compile
    config.update_from_flattened_dict(overrides)
  return config


def compiled_variant(spec: str, overrides: dict):
  """``(compiled train step, initial state, one batch, setup)`` of a variant."""
  with tempfile.TemporaryDirectory() as tmp:  # prepare checks a workdir; nothing is written
    setup = training.prepare(variant_config(spec, overrides), os.path.join(tmp, "unused"))
  steps = training.compile_steps(setup)
  state, _ = training.fresh_state(setup, steps)
  cfg = setup.config
  batch = training.train_batch(setup.source, 0, cfg.train.global_batch,
                               cfg.train.num_microbatches, steps.batch_sharding)
  return steps.train, state, batch, setup


def memory_of(compiled) -> dict:
  """XLA's memory plan for ``compiled``, in MiB."""
  m = compiled.memory_analysis()
  return {"temp": m.temp_size_in_bytes / _MB, "arguments": m.argument_size_in_bytes / _MB,
          "outputs": m.output_size_in_bytes / _MB, "aliased": m.alias_size_in_bytes / _MB,
          "peak": (m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes
                   - m.alias_size_in_bytes) / _MB}


def interleaved_step_times(runs: dict, steps: int, rounds: int) -> dict[str, list[float]]:
  """Seconds per call of each ``runs[name] = [train, state, batch]``, taking turns."""
  for run in runs.values():  # warm up: the first calls allocate
    for _ in range(2):
      run[1], metrics = run[0](run[1], run[2])
    jax.block_until_ready(metrics)
  times = {name: [] for name in runs}
  for _ in range(rounds):
    for name, run in runs.items():
      for _ in range(steps):
        t = time.perf_counter()
        run[1], metrics = run[0](run[1], run[2])
        jax.block_until_ready(metrics)
        times[name].append(time.perf_counter() - t)
  return times


def stepping_rss_mb(spec: str, overrides: dict, steps: int = 3) -> dict:
  """``{"peak", "steps"}`` (MiB): the peak RSS of a fresh process (this one's XLA flags,
  glibc's default malloc) while it runs ``steps`` steps of the compiled variant, and how far
  that peak is above its RSS before the first step."""
  env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
  out = subprocess.run(
      [sys.executable, os.path.abspath(__file__), "--config", spec, "--rss-of",
       json.dumps(overrides), "--steps", str(steps)],
      capture_output=True, text=True, check=True, env={**env, "OPTLAB_NO_REEXEC": "1"},
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  return json.loads(out.stdout.strip().splitlines()[-1])


def _status_mb(field: str) -> float:
  """``VmRSS`` or ``VmHWM`` (its high-water mark) of this process, in MiB (Linux)."""
  with open("/proc/self/status") as f:
    line = next(line for line in f if line.startswith(field + ":"))
  return int(line.split()[1]) / 1024  # kB


def _rss_child(spec: str, overrides: dict, steps: int) -> None:
  train_step, state, batch, _ = compiled_variant(spec, overrides)
  jax.block_until_ready((state, batch))
  before = _status_mb("VmRSS")
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets VmHWM to the current RSS
  for _ in range(steps):
    state, metrics = train_step(state, batch)
  jax.block_until_ready(metrics)
  peak = _status_mb("VmHWM")
  print(json.dumps({"peak": peak, "steps": peak - before}))


def compare(spec: str, variants: dict, *, steps: int, rounds: int, rss: bool = True) -> None:
  """Prints the step time and memory of each variant (``{name: dotted-key overrides}``)."""
  runs, memory, compile_s, setup = {}, {}, {}, None
  for name, overrides in variants.items():
    t = time.perf_counter()
    train_step, state, batch, setup = compiled_variant(spec, overrides)
    compile_s[name] = time.perf_counter() - t
    runs[name] = [train_step, state, batch]
    memory[name] = memory_of(train_step)
  times = interleaved_step_times(runs, steps, rounds)
  cfg = setup.config
  print(f"config {spec}: {cfg.model.name}, {setup.num_params / 1e6:.2f}M parameters, batch "
        f"{cfg.train.global_batch}, {setup.source.tokens_per_example} tokens/example, "
        f"{jax.device_count()} {jax.devices()[0].platform} device(s), jax {jax.__version__}")
  print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
  print(f"{'variant':<12} {'step ms':>9} {'(min)':>8} {'temp MiB':>9} {'peak MiB':>9} "
        f"{'RSS MiB':>8} {'(+steps)':>9} {'prep+compile s':>15}")
  base = None
  for name, overrides in variants.items():
    median = statistics.median(times[name])
    base = base or median
    rss_mb = stepping_rss_mb(spec, overrides) if rss else {"peak": math.nan, "steps": math.nan}
    print(f"{name:<12} {median * 1e3:9.1f} {min(times[name]) * 1e3:8.1f} "
          f"{memory[name]['temp']:9.1f} {memory[name]['peak']:9.1f} {rss_mb['peak']:8.0f} "
          f"{rss_mb['steps']:9.0f} {compile_s[name]:15.1f}")
  print(f"step time: median of {rounds} x {steps} calls per variant, variants alternating; "
        f"time relative to the first: " + ", ".join(
            f"{name} {statistics.median(times[name]) / base:.2f}x" for name in variants))


def arguments(doc: str) -> argparse.ArgumentParser:
  """The command line this benchmark and ``benchmarks/precision.py`` share."""
  parser = argparse.ArgumentParser(description=doc.splitlines()[0])
  parser.add_argument("--config", default="configs/quickstart.py")
  parser.add_argument("--steps", type=int, default=10, help="calls per variant per round")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--no-rss", action="store_true", help="skip the RSS processes")
  return parser


def main():
  parser = arguments(__doc__)
  parser.add_argument("--keep-opt-barriers", action="store_true",
                      help=f"XLA_FLAGS={KEEP_OPT_BARRIERS}: remat takes effect on a CPU")
  parser.add_argument("--rss-of", help=argparse.SUPPRESS)  # a child: one variant's RSS
  args = parser.parse_args()
  if args.rss_of is not None:
    _rss_child(args.config, json.loads(args.rss_of), args.steps)
    return
  compare(args.config, VARIANTS, steps=args.steps, rounds=args.rounds, rss=not args.no_rss)


if __name__ == "__main__":
  main()
