"""Wall time of one sweep group of 8 learning rates, three ways: vmapped, one executable, separate.

    python benchmarks/sweep.py [--runs 8] [--models digits,gpt] [--steps 40,4]

"vmap": the group as one vmapped program (``sweep.mode=vmap``); "one executable": the runs one
after another through one compiled train step (``sweep.mode=sequential``); "separate": each run
its own ``training.run``, compiled anew. Each is a fresh sweep in a temporary directory, timed
from the call to the last row (compiles included, as a user waits for them). "auto" names what
``sweep.mode=auto`` picks on this device. Prints a table and writes ``--json``. ``measure`` is
shared with ``benchmarks/run.py`` (importing this module has no side effect).
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import train  # noqa: E402  (for the malloc settings the command line uses)

if __name__ == "__main__":  # imported (benchmarks/run.py), the importer has decided already
  train.reexec_with_launch_env()

import jax  # noqa: E402
import ml_collections  # noqa: E402

import training  # noqa: E402
from configs import digits_mlp, quickstart  # noqa: E402
from training import sweep  # noqa: E402

MODELS = {"digits": lambda: digits_mlp.get_config(), "gpt": lambda: quickstart.get_config()}


def _config(model: str, steps: int, runs: int, mode: str):
  c = ml_collections.ConfigDict(MODELS[model]().to_dict())
  c.train.steps = steps
  c.train.log_every = max(1, steps // 4)
  c.train.eval_every = 0
  c.train.checkpoint_every = 10**9  # at the end only
  c.optimizer.schedule.warmup_steps = 0
  rates = tuple(float(c.optimizer.learning_rate) * 2.0 ** (i - runs // 2) for i in range(runs))
  c.sweep.grid = (("optimizer.learning_rate", rates), ("seed", (0,)))
  c.sweep.mode = mode
  c.sweep.vmap_size = runs
  return c


def _time(fn) -> float:
  t0 = time.perf_counter()
  fn()
  return time.perf_counter() - t0


def measure(model: str, steps: int, runs: int) -> dict:
  """Seconds of the sweep group (``runs`` learning rates x ``steps``) per mode, and the mode
  ``auto`` picks; ``batch``: the examples of one run's step."""
  out = {"model": model, "steps": steps, "runs": runs,
         "batch": MODELS[model]().train.global_batch}
  for mode in ("vmap", "sequential"):
    config = _config(model, steps, runs, mode)
    with tempfile.TemporaryDirectory() as d:
      out[mode] = _time(lambda config=config, d=d: training.run_sweep(config, d))
  config = _config(model, steps, runs, "sequential")
  with tempfile.TemporaryDirectory() as d:
    out["separate"] = _time(lambda: [
        training.run(sweep.run_config(config, run), os.path.join(d, run.run_id))
        for run in sweep.expand(config)])
  with tempfile.TemporaryDirectory() as d:
    prepared = sweep.prepare_sweep(config, d)
    out["auto"] = sweep.resolve_mode("auto", [s for _, s in prepared])
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--runs", type=int, default=8)
  parser.add_argument("--models", default="digits,gpt")
  parser.add_argument("--steps", default="40,4", help="steps per run, one per model")
  parser.add_argument("--json", default="sweep_benchmark.json")
  args = parser.parse_args()
  models, steps = args.models.split(","), [int(s) for s in args.steps.split(",")]
  device = jax.devices()[0]
  print(f"device: {device.platform} ({device.device_kind}), {os.cpu_count()} CPU cores, "
        f"jax {jax.__version__}")
  print(f"{'model':8} {'steps':>5} {'runs':>4} {'vmap s':>8} {'one exe s':>9} "
        f"{'separate s':>10} {'vmap/one':>8} {'auto':>10}")
  results = []
  for model, n in zip(models, steps, strict=True):
    r = measure(model, n, args.runs)
    results.append(r)
    print(f"{model:8} {n:5d} {args.runs:4d} {r['vmap']:8.1f} {r['sequential']:9.1f} "
          f"{r['separate']:10.1f} {r['vmap'] / r['sequential']:8.2f} {r['auto']:>10}",
          flush=True)
  with open(args.json, "w") as f:
    json.dump({"device": device.platform, "results": results}, f, indent=1)


if __name__ == "__main__":
  main()
