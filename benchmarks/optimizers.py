"""Update time and state memory of every optimizer on the quickstart GPT's parameter tree.

    python benchmarks/optimizers.py [--repeats 5] [--only adam,muon,...] [--step-ms 600]
                                    [--widths 128,256,512] [--stack auto|on|off]
    python benchmarks/optimizers.py --only shampoo,shampoo:precondition_frequency=100

For each name in ``optimizers.available()`` (built with its defaults and a constant learning rate):
the time of one jitted ``update`` + ``apply_updates`` on the 3.35M-parameter tree, as the mean
over a block of ``--block`` consecutive updates (10: a block holds one of SOAP's refreshes, so
periodic work is counted at its share, not hidden by a median), the median over ``--repeats``
blocks timed alternately with ``optax.adam`` blocks in the same process; its ratio to Adam; its
share of one quickstart train step (``--step-ms``, or measured here as ``benchmarks/step.py``
does: the jitted step of ``configs/quickstart.py`` on one batch); and the optimizer state's
bytes per parameter. Elementwise methods should stay within 1.5x of Adam.

``--widths`` adds a table for the matrix methods (``--scaling-only`` names them): the same
GPT (depth 4, MLP ratio 4, vocabulary and sequence 256) at each width, ms per update, the growth
over the first width and (``--width-steps``) the share of the quickstart step at that width.
Newton–Schulz and the Shampoo/SOAP products grow like width^3 and the step like width^2 (at
fixed tokens per batch), so the matrix methods' share roughly doubles with each doubling of the
width.

SOAP's QR and Shampoo's eigendecompositions are LAPACK calls (OpenBLAS) whose threads compete
with XLA's: on a loaded 2-core machine their time varied 10x from run to run, and even on an idle
one two OpenBLAS threads made SOAP 1.3x and Shampoo 2x slower than one. Like ``train.py``, this
starts with ``OPENBLAS_NUM_THREADS=1`` unless the variable is set (``train.LAUNCH_ENV``; the
header prints it).

``--stack on|off`` forces Newton–Schulz to stack same-shaped matrices or not (default: stack
on accelerators only; see ``optimizers/_newton_schulz.py``).
"""

import argparse
import ast
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import train  # noqa: E402

train.reexec_with_launch_env()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import optax  # noqa: E402

import models  # noqa: E402
import optimizers  # noqa: E402
from optimizers import _newton_schulz  # noqa: E402

# Learning rates for methods whose defaults are "learning-rate free" (scale 1).
_LEARNING_RATE = {"prodigy": 1.0, "dog": 1.0}
MATRIX_METHODS = ("muon", "scion", "uscion", "normuon", "swan", "soap", "shampoo")


def gpt_params(width: int = 256):
  cfg = ml_collections.ConfigDict(dict(
      name="gpt", vocab_size=256, max_len=256, width=width, depth=4, num_heads=4, mlp_ratio=4))
  model = models.build(cfg)
  tokens = jnp.zeros((1, 256), jnp.int32)
  return model.init(jax.random.PRNGKey(0), tokens)["params"]


def build(spec: str):
  """The optimizer ``name`` or ``name:key=value`` (one method argument changed, e.g.
  ``shampoo:precondition_frequency=100``), as ``optimizers.build`` makes it from a config."""
  name, _, change = spec.partition(":")
  key, _, value = change.partition("=")
  kwargs = {key: ast.literal_eval(value)} if change else {}
  cfg = ml_collections.ConfigDict(dict(
      name=name, learning_rate=_LEARNING_RATE.get(name, 1e-3), kwargs=kwargs, weight_decay=0.0,
      decay_roles=("hidden", "head", "embedding", "conv"), grad_clip_norm=0.0,
      schedule=dict(name="constant", warmup_steps=0, end_factor=0.0, decay_fraction=0.2)))
  return optimizers.build(cfg, total_steps=1000, param_labels=models.param_roles)


class Stepper:
  """Jitted ``update`` + ``apply_updates`` of ``tx`` on its own copy of the parameters."""

  def __init__(self, tx, params, block: int):
    objective = lambda p: sum(jnp.sum(x * x) for x in jax.tree.leaves(p))
    tx = optax.with_extra_args_support(tx)

    def step(params, state, grads):
      updates, state = tx.update(grads, state, params, value=jnp.float32(1.0),
                                 obj_fn=objective)
      return optax.apply_updates(params, updates), state

    self._step = jax.jit(step, donate_argnums=(0, 1))
    self._grads = jax.tree.map(lambda x: 1e-3 * jnp.cos(jnp.arange(x.size, dtype=x.dtype))
                               .reshape(x.shape), params)
    self._params = jax.tree.map(jnp.copy, params)
    # some states alias the params (DoG, Prodigy)
    self._state = jax.tree.map(jnp.copy, tx.init(self._params))
    self.state_bytes = sum(x.nbytes for x in jax.tree.leaves(self._state)
                           if hasattr(x, "nbytes"))
    self.block = block
    for _ in range(2):  # compile; SOAP's first call (initialisation) is not counted
      self._params, self._state = self._step(self._params, self._state, self._grads)
    jax.block_until_ready(self._params)

  def jaxpr(self):
    """The jaxpr of one update (``benchmarks/matmul_floor.py`` counts its contractions)."""
    return jax.make_jaxpr(self._step)(self._params, self._state, self._grads).jaxpr

  def seconds(self) -> float:
    """Mean seconds per update over one block of consecutive updates."""
    start = time.perf_counter()
    for _ in range(self.block):
      self._params, self._state = self._step(self._params, self._state, self._grads)
    jax.block_until_ready(self._params)
    return (time.perf_counter() - start) / self.block


def paired_medians(method: Stepper, adam: Stepper, repeats: int) -> tuple[float, float]:
  """Median block times of ``method`` and of Adam, measured alternately so that the machine's
  drift (clock, other load) falls on both."""
  times = [(method.seconds(), adam.seconds()) for _ in range(repeats)]
  return (statistics.median(t for t, _ in times), statistics.median(t for _, t in times))


def quickstart_step_seconds(steps: int = 10, width: int = 0) -> float:
  """Median seconds of the quickstart's jitted train step on one batch (``benchmarks/step.py``),
  at the model width ``width`` if given (the config's, 256, otherwise)."""
  from benchmarks.step import bare_step_times
  from training import cli, prepare
  config = cli.load_config("configs/quickstart.py")
  if width:
    with config.unlocked():
      config.model.width = width
  with tempfile.TemporaryDirectory() as tmp:
    times, _ = bare_step_times(prepare(config, os.path.join(tmp, "unused")), steps)
  return statistics.median(times)


def method_table(names, params, step_s, args):
  n = sum(x.size for x in jax.tree.leaves(params))
  adam = Stepper(optax.adam(1e-3), params, args.block)
  _, adam_s = paired_medians(adam, adam, args.repeats)
  print(f"parameter tree: quickstart GPT, {n / 1e6:.2f}M parameters, f32; "
        f"optax.adam update {adam_s * 1e3:.2f} ms, {adam.state_bytes / n:.1f} state bytes/param; "
        f"quickstart step {step_s * 1e3:.0f} ms")
  print(f"{'optimizer':<36}{'ms/update':>10}{'x adam':>8}{'% of step':>10}{'state B/param':>15}")
  for name in names:
    try:
      method = Stepper(build(name), params, args.block)
    except Exception as e:  # noqa: BLE001 -- report and go on to the next method
      print(f"{name:<36}  failed: {type(e).__name__}: {str(e).splitlines()[0][:80]}")
      continue
    seconds, adam_s = paired_medians(method, adam, args.repeats)
    print(f"{name:<36}{seconds * 1e3:>10.2f}{seconds / adam_s:>8.2f}"
          f"{100 * seconds / step_s:>9.1f}%{method.state_bytes / n:>15.1f}", flush=True)


def width_table(names, widths, args):
  print(f"\nwidth scaling (GPT depth 4, MLP ratio 4): ms/update, and x the width {widths[0]} "
        "time" + ("; then % of the quickstart step at that width" if args.width_steps else ""))
  trees = {w: gpt_params(w) for w in widths}
  sizes = "".join(f"{f'{w}: {sum(x.size for x in jax.tree.leaves(trees[w])) / 1e6:.1f}M':>24}"
                  for w in widths)
  print(f"{'parameters':<36}{sizes}")
  steps = {w: quickstart_step_seconds(width=w) for w in widths} if args.width_steps else {}
  if steps:
    print(f"{'quickstart step':<36}" + "".join(f"{steps[w] * 1e3:>21.0f} ms" for w in widths))
  for name in names:
    row, first = [], None
    for w in widths:
      stepper = Stepper(build(name), trees[w], args.block)
      seconds = statistics.median(stepper.seconds() for _ in range(max(1, args.repeats // 2)))
      first = first or seconds
      share = f" {100 * seconds / steps[w]:4.0f}%" if steps else ""
      row.append(f"{seconds * 1e3:.1f} ({seconds / first:.1f}x){share}")
      del stepper
    print(f"{name:<36}" + "".join(f"{r:>24}" for r in row), flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=5, help="timed blocks per method")
  parser.add_argument("--block", type=int, default=10, help="consecutive updates per block")
  parser.add_argument("--only", default="", help="comma-separated names (default: all)")
  parser.add_argument("--step-ms", type=float, default=0.0,
                      help="quickstart step time in ms (default: measured here)")
  parser.add_argument("--widths", default="", help="e.g. 128,256,512: the scaling table")
  parser.add_argument("--scaling-only", action="store_true",
                      help="only the width table, for the matrix methods (or --only)")
  parser.add_argument("--width-steps", action="store_true",
                      help="also time the quickstart step at each width (model.width changed)")
  parser.add_argument("--stack", choices=("auto", "on", "off"), default="auto",
                      help="stack same-shaped matrices in Newton-Schulz (auto: off on CPU)")
  args = parser.parse_args()
  if args.stack != "auto":  # a benchmark-only switch of the backend-dependent default
    _newton_schulz._default_batch = lambda: args.stack == "on"
  names = args.only.split(",") if args.only else None
  print(f"jax {jax.__version__} on {jax.default_backend()}, {os.cpu_count()} CPUs; "
        f"Newton-Schulz stacking {args.stack}; "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")
  if not args.scaling_only:
    step_s = args.step_ms / 1e3 if args.step_ms else quickstart_step_seconds()
    method_table(names or optimizers.available(), gpt_params(), step_s, args)
  if args.widths:
    width_table(names or MATRIX_METHODS, [int(w) for w in args.widths.split(",")], args)


if __name__ == "__main__":
  main()
