import atexit
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

# In-process tests see 8 CPU devices (sharding tests); must be set before JAX starts.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

# One persistent compilation cache for the session, shared with the train.py processes the
# tests start (they inherit the environment): many tests compile the same smoke programs in
# fresh processes, and a cache hit replaces a compile by a read (measured: the end-to-end and
# fault tests 205 -> 148 s). Keyed by the program, the compile options, XLA's flags and the
# jax version, so a hit is the same executable; removed at the end of the session.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _cache_dir = tempfile.mkdtemp(prefix="optlab-test-jax-cache-")
  atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)
  os.environ.update({"JAX_COMPILATION_CACHE_DIR": _cache_dir,
                     "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                     "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"})

import jax  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
jax.config.update("jax_numpy_rank_promotion", "raise")


def train_cmd(config: str, workdir, *overrides: str) -> list[str]:
  return [sys.executable, str(ROOT / "train.py"), f"--config={ROOT / config}",
          f"--workdir={workdir}", *overrides]


def run_train(config: str, workdir, *overrides: str, devices: int = 1, env=None,
              check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
  """Runs train.py in a fresh process (device count is fixed at process start)."""
  env = {**os.environ, **(env or {})}
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  proc = subprocess.run(train_cmd(config, workdir, *overrides), cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)
  if check and proc.returncode != 0:
    raise AssertionError(f"train.py exited {proc.returncode}:\n{proc.stderr[-3000:]}")
  return proc


def read_metrics(workdir) -> list[dict]:
  with open(pathlib.Path(workdir) / "metrics.jsonl") as f:
    return [json.loads(line) for line in f if line.strip()]


def loss_curve(workdir) -> list[float]:
  """The training losses of a run's ``metrics.jsonl``, in step order."""
  return [r["loss"] for r in read_metrics(workdir)]


def history(workdir, key: str) -> list[tuple[int, float]]:
  """(step, value) pairs of one metric: two runs with equal histories logged the same."""
  return [(r["step"], r[key]) for r in read_metrics(workdir) if key in r]


def read_summary(workdir) -> dict:
  with open(pathlib.Path(workdir) / "summary.json") as f:
    return json.load(f)


def minimize(tx, loss_fn, params, steps):
  """``(params, state)`` after ``steps`` updates of ``tx`` on ``loss_fn``, as one compiled
  ``lax.scan``. The loss goes in as ``value=`` and ``obj_fn=`` (NGN and line searches read
  them; other methods ignore them)."""
  value_and_grad = jax.value_and_grad(loss_fn)

  def step(carry, _):
    params, state = carry
    loss, grads = value_and_grad(params)
    updates, state = tx.update(grads, state, params, value=loss, obj_fn=loss_fn)
    return (optax.apply_updates(params, updates), state), None

  run = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), None, length=steps)[0])
  return run(params)


@pytest.fixture
def root():
  return ROOT
