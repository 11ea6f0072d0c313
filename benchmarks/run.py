"""One table of the train step of every model family, and of the sweep runner's modes.

    python -m benchmarks.run [--families gpt,gated_conv,resnet,vit,dna_cnn,gnn] [--steps 10]
        [--warmup 3] [--sweep digits:4x40] [--out FILE]

Each family trains its default config (``FAMILIES``: ``configs/modalities.py``'s pairs;
``quickstart`` adds ``configs/quickstart.py``) in a subprocess of its own, so that its peak
memory is its own, through the repository's training API: ``training.prepare``,
``compile_steps``, ``fresh_state``, ``train_batch`` and ``execute``. Columns:

* ``step ms``: median of ``--steps`` calls of the compiled train step on one fixed batch, after
  ``--warmup`` calls (half of them before the loop below, half after); ``ex/s``, ``tok/s`` from it.
* ``XLA GFLOP``: XLA's count of one compiled step (``cost_analysis()['flops']``: forward,
  backward, optimizer and metrics; a ``lax.scan`` body counts once). ``formula``: the model's
  own ``flops_per_example`` x batch (PaLM's 6N + 12LDT for the GPT, the full T x T attention).
* ``GFLOP/s`` = XLA GFLOP / step; ``MFU`` = that / ``peak``, the best f32 matmul rate XLA reaches
  in the same process (``benchmarks/step.py``'s ``matmul_rates``, before and after the steps).
* ``compile s``: ``compile_steps`` (the train step only: evaluation is off).
* ``data ms``: median time to build one global batch (``training.train_batch``, device put
  included); ``data %`` of the step.
* ``loop ms``: median step of ``training.execute`` (data, the step, metrics fetched one step
  late, progress) over its last ``--steps`` steps, after ``--warmup`` + 1 as the bare step has;
  the records' ``time_s`` give each step (a metric line every step: ``train.log_every=1``).
  ``loop +%``: over the bare step.
* ``RSS MB``: the subprocess's peak resident memory (``resource.getrusage``), the matmul peak's
  3072 x 3072 operands included.

The sweep rows (``--sweep MODEL:RUNSxSTEPS,...``; models of ``benchmarks/sweep.py``) time one
group of learning rates three ways with ``benchmarks/sweep.py``'s ``measure``: ``step ms`` is
then the wall time per run-step, compiles included (as a user waits for them), and ``ex/s`` the
examples of all runs per second of wall time. Prints Markdown, writes JSON to ``--out``.
"""

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import train  # noqa: E402  (for the malloc settings the command line uses)

train.reexec_with_launch_env()

import jax  # noqa: E402

import training  # noqa: E402
from benchmarks import step as step_bench  # noqa: E402
from benchmarks import sweep as sweep_bench  # noqa: E402
from training import cli  # noqa: E402

# family: (label, config); the default ones are each family's default config of the gap study.
FAMILIES = {
    "gpt": ("GPT", "configs/modalities.py:language,gpt"),
    "gated_conv": ("gated-conv LM", "configs/modalities.py:language,gated_conv"),
    "resnet": ("ResNet-20", "configs/modalities.py:vision,resnet"),
    "vit": ("ViT", "configs/modalities.py:vision,vit"),
    "dna_cnn": ("DNA CNN", "configs/modalities.py:genomics,cnn"),
    "gnn": ("GNN", "configs/modalities.py:graphs,gnn"),
    "quickstart": ("GPT quickstart", "configs/quickstart.py"),
}
DEFAULT_FAMILIES = "gpt,gated_conv,resnet,vit,dna_cnn,gnn"
SWEEP_MODES = (("vmap", "vmapped"), ("sequential", "one executable"), ("separate", "separate"))


def _max_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def batch_times(setup, compiled: training.Steps, count: int) -> list[float]:
  """Seconds to build each of ``count`` successive global batches, as the loop builds them."""
  t = setup.config.train
  times = []
  for i in range(count):
    start = time.perf_counter()
    batch = training.train_batch(setup.source, (i + 1) * t.global_batch, t.global_batch,
                                 t.num_microbatches, compiled.batch_sharding)
    jax.block_until_ready(batch)
    times.append(time.perf_counter() - start)
  return times


def measure_family(family: str, steps: int, warmup: int) -> dict:
  """The row of ``family``: its step, throughput, FLOPs, compile time, data and loop costs."""
  label, spec = FAMILIES[family]
  config = cli.load_config(os.path.join(ROOT, spec))
  with config.unlocked():
    config.train.steps = warmup + steps + 1  # the loop's warm-up steps are left out as the bare's
    config.train.log_every = 1  # a time for every step of the loop (loop_step_times)
    config.optimizer.schedule.warmup_steps = 0
    config.train.eval_every = 0  # the train step alone
    config.train.checkpoint_every = 10**9  # one checkpoint, after the timed steps
  with tempfile.TemporaryDirectory() as tmp:
    setup = training.prepare(config, os.path.join(tmp, "loop"))
    rates = step_bench.matmul_rates()
    compiled = training.compile_steps(setup)
    first = (steps + 1) // 2
    bare, compile_s = step_bench.bare_step_times(setup, first, compiled, warmup=warmup)
    data = batch_times(setup, compiled, steps)
    loop, loop_api_s = step_bench.loop_step_times(setup, compiled)
    if steps - first:
      bare += step_bench.bare_step_times(setup, steps - first, compiled, warmup=1)[0]
    # Measured again after the steps: on a shared machine the best of the two is the peak.
    rates = {n: max(r, rates[n]) for n, r in step_bench.matmul_rates(reps=3).items()}

  t = setup.config.train
  step_s, peak = statistics.median(bare), max(rates.values())
  tokens = setup.source.tokens_per_example
  counted = step_bench.xla_flops(compiled.train)
  data_s, loop = statistics.median(data), loop[-steps:]
  loop_s = statistics.median(loop)
  device = jax.devices()[0]
  return {
      "family": family, "label": label, "config": spec, "params": setup.num_params,
      "batch": t.global_batch, "tokens_per_example": tokens,
      "compile_s": compile_s,
      "step_s": step_s, "step_min_s": min(bare), "step_max_s": max(bare), "step_times_s": bare,
      "examples_per_s": t.global_batch / step_s,
      "tokens_per_s": t.global_batch * tokens / step_s if tokens else None,
      "xla_flops_per_step": counted,
      "formula_flops_per_step": t.global_batch * setup.flops_per_example,
      "flops_per_s": counted / step_s if counted else None,
      "matmul_peak_flops_per_s": peak, "matmul_rates": {str(n): r for n, r in rates.items()},
      "mfu": counted / step_s / peak if counted else None,
      "data_s": data_s, "data_fraction": data_s / step_s,
      "loop_step_s": loop_s, "loop_overhead": loop_s / step_s - 1, "loop_times_s": loop,
      "loop_step_time_s": loop_api_s,  # training.execute's own figure, from its second step
      "max_rss_mb": _max_rss_mb(),
      "device": f"{device.platform} ({device.device_kind})", "devices": jax.device_count(),
  }


def parse_sweeps(text: str) -> list[tuple[str, int, int]]:
  """``"digits:4x40,gpt:2x3"`` -> ``[("digits", 4, 40), ("gpt", 2, 3)]`` (model, runs, steps)."""
  out = []
  for item in filter(None, text.split(",")):
    model, _, size = item.partition(":")
    runs, _, steps = size.partition("x")
    if model not in sweep_bench.MODELS or not runs.isdigit() or not steps.isdigit():
      raise SystemExit(f"--sweep {item!r}: give MODEL:RUNSxSTEPS with MODEL one of "
                       f"{', '.join(sweep_bench.MODELS)}, e.g. digits:4x40")
    out.append((model, int(runs), int(steps)))
  return out


def measure_sweep(model: str, runs: int, steps: int) -> list[dict]:
  """One row per mode of a sweep group: wall time per run-step and examples per second."""
  r = sweep_bench.measure(model, steps, runs)
  rss, run_steps = _max_rss_mb(), runs * steps
  return [{"family": f"sweep:{model}", "label": f"sweep {model} {runs}x{steps}: {name}",
           "mode": mode, "runs": runs, "steps": steps, "batch": r["batch"], "wall_s": r[mode],
           "step_s": r[mode] / run_steps, "examples_per_s": run_steps * r["batch"] / r[mode],
           "auto": r["auto"], "max_rss_mb": rss} for mode, name in SWEEP_MODES]


def machine() -> dict:
  """The CPU, its cores, the library versions and the settings that move the figures."""
  info = {}
  with open("/proc/cpuinfo") as f:
    for line in f:
      key, _, value = line.partition(":")
      info.setdefault(key.strip(), value.strip())
  flags = set(info.get("flags", "").split())
  git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout
  import flax
  import jaxlib
  import optax
  return {
      "cpu": info.get("model name", platform.processor()),
      "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
      "cpu_flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}),
      "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
      "load_avg_start": os.getloadavg(), "python": platform.python_version(),
      "jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__,
      "optax": optax.__version__, "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
      "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", ""),
      "xla_flags": os.environ.get("XLA_FLAGS", ""), "commit": git("rev-parse", "HEAD").strip(),
      "dirty": bool(git("status", "--porcelain", "--untracked-files=no").strip()),
      "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
  }


def run_child(args: list[str], log_path: str, timeout_s: float) -> list[dict] | str:
  """Runs this module with ``--child ARGS`` in a fresh process; its rows, or why it failed."""
  fd, out = tempfile.mkstemp(suffix=".json")
  os.close(fd)
  cmd = [sys.executable, "-m", "benchmarks.run", "--child", *args, "--child-out", out]
  try:
    with open(log_path, "w") as log:
      proc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            timeout=timeout_s)
    if proc.returncode:
      with open(log_path) as log:
        tail = log.read().strip().splitlines()[-1:] or [""]
      return f"exit {proc.returncode}: {tail[0][:160]} (log: {log_path})"
    with open(out) as f:
      return json.load(f)
  except subprocess.TimeoutExpired:
    return f"over {timeout_s:.0f} s (log: {log_path})"
  finally:
    os.remove(out)


def _f(value, spec: str, scale: float = 1.0) -> str:
  return "—" if value is None else format(value * scale, spec)


COLUMNS = ("family", "params", "batch", "compile s", "step ms", "ex/s", "tok/s", "XLA GFLOP",
           "formula", "GFLOP/s", "peak", "MFU", "data ms", "data %", "loop ms", "loop +%",
           "RSS MB")


def table_row(r: dict) -> list[str]:
  if "error" in r:
    return [r["label"], f"failed: {r['error']}"] + [""] * (len(COLUMNS) - 2)
  if "mode" in r:  # a sweep mode: wall time per run-step, compiles included
    return ([r["label"] + (" (auto)" if r["mode"] == r["auto"] else ""), "—", str(r["batch"]),
             "—", _f(r["step_s"], ".1f", 1e3), _f(r["examples_per_s"], ".0f")]
            + ["—"] * 10 + [_f(r["max_rss_mb"], ".0f")])
  return [r["label"], f"{r['params'] / 1e6:.2f}M", str(r["batch"]), _f(r["compile_s"], ".1f"),
          _f(r["step_s"], ".1f", 1e3), _f(r["examples_per_s"], ".0f"),
          _f(r["tokens_per_s"], ".0f"), _f(r["xla_flops_per_step"], ".2f", 1e-9),
          _f(r["formula_flops_per_step"], ".2f", 1e-9), _f(r["flops_per_s"], ".1f", 1e-9),
          _f(r["matmul_peak_flops_per_s"], ".0f", 1e-9), _f(r["mfu"], ".2f"),
          _f(r["data_s"], ".1f", 1e3), _f(r["data_fraction"], ".1f", 100),
          _f(r["loop_step_s"], ".1f", 1e3), _f(r["loop_overhead"], "+.1f", 100),
          _f(r["max_rss_mb"], ".0f")]


def markdown(rows: list[dict]) -> str:
  lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
  lines += ["| " + " | ".join(table_row(r)) + " |" for r in rows]
  return "\n".join(lines)


def _child(args) -> None:
  if args.child == "sweep":
    (model, runs, steps), = parse_sweeps(args.sweep)
    rows = measure_sweep(model, runs, steps)
  else:
    rows = [measure_family(args.child, args.steps, args.warmup)]
  with open(args.child_out, "w") as f:
    json.dump(rows, f)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--families", default=DEFAULT_FAMILIES,
                      help=f"comma-separated, of {', '.join(FAMILIES)} ('' for none)")
  parser.add_argument("--steps", type=int, default=10, help="timed steps of each measurement")
  parser.add_argument("--warmup", type=int, default=3, help="untimed steps before the bare step")
  parser.add_argument("--sweep", default="digits:4x40",
                      help="sweep groups MODEL:RUNSxSTEPS,... ('' for none)")
  parser.add_argument("--out", default="", help="JSON file (default: a new one under "
                      f"{os.path.join(tempfile.gettempdir(), 'optlab-benchmarks')})")
  parser.add_argument("--timeout", type=float, default=600, help="seconds per subprocess")
  parser.add_argument("--child", help=argparse.SUPPRESS)
  parser.add_argument("--child-out", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.steps < 1 or args.warmup < 1:
    parser.error("--steps and --warmup must be at least 1")
  if args.child:
    _child(args)
    return

  families = [f for f in args.families.split(",") if f]
  unknown = sorted(set(families) - set(FAMILIES))
  if unknown:
    parser.error(f"unknown families {', '.join(unknown)}: valid are {', '.join(FAMILIES)}")
  sweeps = parse_sweeps(args.sweep)
  out = args.out or os.path.join(tempfile.gettempdir(), "optlab-benchmarks",
                                 time.strftime("run-%Y%m%d-%H%M%S.json"))
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  logs = tempfile.mkdtemp(prefix="optlab-benchmarks-logs-")
  info = machine()
  t0 = time.perf_counter()
  jobs = [(FAMILIES[f][0], f, [f, "--steps", str(args.steps), "--warmup", str(args.warmup)])
          for f in families]
  jobs += [(f"sweep {m} {r}x{s}", "sweep", ["sweep", "--sweep", f"{m}:{r}x{s}"])
           for m, r, s in sweeps]
  rows = []
  for label, name, child_args in jobs:
    started = time.perf_counter()
    result = run_child(child_args, os.path.join(logs, f"{name}-{len(rows)}.log"), args.timeout)
    if isinstance(result, str):
      result = [{"family": name, "label": label, "error": result}]
    rows += result
    print(f"{label}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
  info["load_avg_end"] = os.getloadavg()
  if not any("error" in r for r in rows):
    shutil.rmtree(logs, ignore_errors=True)  # kept, and named in the table, when a child failed

  print(f"machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), "
        f"{info['memory_gb']} GB; jax {info['jax']}, flax {info['flax']}, python "
        f"{info['python']}; load average {info['load_avg_start'][0]:.2f} at start, "
        f"{info['load_avg_end'][0]:.2f} at end; malloc tunables "
        f"{'on' if info['glibc_tunables'] else 'off'}")
  print(f"steps: medians of {args.steps} after {args.warmup} warm-up (loop: +1); "
        f"{time.perf_counter() - t0:.0f} s in all\n")
  print(markdown(rows))
  print("\nXLA GFLOP: the compiled step's cost_analysis; formula: the model's flops_per_example "
        "(GPT: PaLM's 6N+12LDT); peak: f32 matmul GFLOP/s in the same process; sweep rows: "
        "ms per run-step and examples/s of wall time, compiles included.")
  with open(out, "w") as f:
    json.dump({"machine": info, "args": vars(args), "rows": rows}, f, indent=1)
  print(f"\nwrote {out}")


if __name__ == "__main__":
  main()
