"""The matmul floor of a train step: its contractions alone, each at XLA's (and torch's) own speed.

    python benchmarks/matmul_floor.py [--config configs/quickstart.py] [--reps 15] [--no-torch]
                                      [--optimizers muon,scion,normuon,swan,soap,shampoo]

Every ``dot_general`` the train step asks for (read from its jaxpr: forward, backward and
optimizer alike, before XLA rewrites anything) is timed alone, as a jitted ``lax.dot_general``
on operands of its shapes, and the same contraction in PyTorch (``torch.einsum``, where torch is
installed: the ``bench`` extra). Identical contractions are timed once and counted as often as
the step has them. The sum is the time each library's matmul kernels need for this step's
arithmetic, one product after another; beside it, the measured step, so that what is left over
(elementwise work, transposes, the optimizer, dispatch) is plain. (Small products that a
compiled program overlaps can take less inside it than alone.)

The table groups the contractions by kind: ``NN`` is ``x @ w`` (the forward of a dense layer),
``NT`` contracts both operands' last axes (``dy @ w.T``: the input gradient), ``TN`` their
first (``x.T @ dy``: the weight gradient), ``batched`` has batch axes (attention's per-head
products). Torch's timings run after all of XLA's, in the same process, on torch's default
threads (one per core).

``--optimizers`` adds a table of optimizer updates on the quickstart GPT's parameters: each
update's every-step contraction FLOPs, the time they take at XLA's square-matmul peak (the least
they can take), and the measured update, as shares of the measured train step.
"""

import argparse
import collections
import functools
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import train  # noqa: E402

if __name__ == "__main__":
  train.reexec_with_launch_env()

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

import training  # noqa: E402
from benchmarks.step import bare_step_times, matmul_peak  # noqa: E402
from training import cli  # noqa: E402
from training.step import train_step  # noqa: E402

Contraction = collections.namedtuple("Contraction", "lhs rhs dims")


def _subjaxprs(eqn):
  for value in eqn.params.values():
    for v in value if isinstance(value, list | tuple) else [value]:
      if isinstance(v, jax.extend.core.ClosedJaxpr):
        yield v.jaxpr
      elif isinstance(v, jax.extend.core.Jaxpr):
        yield v


def contractions(jaxpr) -> collections.Counter:
  """``Counter`` of the ``dot_general`` equations of ``jaxpr`` and all of its sub-jaxprs, each
  as ``Contraction(lhs shape, rhs shape, dimension numbers)``. A ``scan`` body counts once; of a
  ``cond``'s branches the one with the fewest FLOPs counts (periodic work such as a
  preconditioner refresh is left out: this is the every-step floor)."""
  found = collections.Counter()
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
      dims = ((tuple(lc), tuple(rc)), (tuple(lb), tuple(rb)))
      found[Contraction(tuple(eqn.invars[0].aval.shape), tuple(eqn.invars[1].aval.shape),
                        dims)] += 1
    elif eqn.primitive.name == "cond":
      branches = [contractions(b.jaxpr) for b in eqn.params["branches"]]
      found.update(min(branches, key=lambda c: sum(n * flops(k) for k, n in c.items())))
    else:
      for sub in _subjaxprs(eqn):
        found.update(contractions(sub))
  return found


def flops(c: Contraction) -> int:
  """2 x (every lhs element) x (the rhs's free size): one multiply-add per output and
  contracted index."""
  (_, rc), (_, rb) = c.dims
  rhs_free = [d for i, d in enumerate(c.rhs) if i not in rc and i not in rb]
  return 2 * int(np.prod(c.lhs)) * int(np.prod(rhs_free))


def kind(c: Contraction) -> str:
  (lc, rc), (lb, _) = c.dims
  if lb:
    return "batched"
  if len(c.lhs) == 2 and len(c.rhs) == 2:
    return {((1,), (0,)): "NN", ((1,), (1,)): "NT", ((0,), (0,)): "TN",
            ((0,), (1,)): "TT"}.get((tuple(lc), tuple(rc)), "other")
  return "other"


def einsum_spec(c: Contraction) -> str:
  """The ``einsum`` string of ``lax.dot_general``'s output order: batch, lhs free, rhs free."""
  (lc, rc), (lb, rb) = c.dims
  letters = iter("abcdefghijklmnopqrstuvwxyz")
  lhs = [None] * len(c.lhs)
  rhs = [None] * len(c.rhs)
  for i, j in zip(lb, rb, strict=True):
    lhs[i] = rhs[j] = next(letters)
  for i, j in zip(lc, rc, strict=True):
    lhs[i] = rhs[j] = next(letters)
  for side in (lhs, rhs):
    for i, s in enumerate(side):
      side[i] = s or next(letters)
  out = ([lhs[i] for i in lb] + [lhs[i] for i in range(len(lhs)) if i not in lb + lc]
         + [rhs[i] for i in range(len(rhs)) if i not in rb + rc])
  return f"{''.join(lhs)},{''.join(rhs)}->{''.join(out)}"


def _median_seconds(call, reps: int) -> float:
  for _ in range(3):
    call()
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    call()
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def xla_seconds(c: Contraction, reps: int) -> float:
  dot = jax.jit(functools.partial(lax.dot_general, dimension_numbers=c.dims))
  lhs = jax.random.normal(jax.random.PRNGKey(0), c.lhs)
  rhs = jax.random.normal(jax.random.PRNGKey(1), c.rhs)
  return _median_seconds(lambda: dot(lhs, rhs).block_until_ready(), reps)


def torch_seconds(c: Contraction, reps: int) -> float:
  import torch
  lhs, rhs = torch.randn(c.lhs), torch.randn(c.rhs)
  spec = einsum_spec(c)
  with torch.no_grad():
    return _median_seconds(lambda: torch.einsum(spec, lhs, rhs), reps)


def step_contractions(config):
  with tempfile.TemporaryDirectory() as tmp:  # prepare checks a workdir; nothing is written
    setup = training.prepare(config, os.path.join(tmp, "unused"))
  compiled = training.compile_steps(setup)
  state, _ = training.fresh_state(setup, compiled)
  cfg = setup.config
  batch = training.train_batch(setup.source, 0, cfg.train.global_batch,
                               cfg.train.num_microbatches, compiled.batch_sharding)
  fn = functools.partial(train_step, model=setup.model, tx=setup.tx, loss_fn=setup.loss_fn)
  found = contractions(jax.make_jaxpr(fn)(state, batch).jaxpr)
  return setup, compiled, found


def update_contractions(spec: str, params):
  """The contractions of one update of the optimizer ``spec`` (``benchmarks/optimizers.py``'s
  ``name[:key=value]``) on ``params``, and its ``Stepper`` (the measured update)."""
  from benchmarks import optimizers as bench_optimizers
  stepper = bench_optimizers.Stepper(bench_optimizers.build(spec), params, block=10)
  return contractions(stepper.jaxpr()), stepper


def optimizer_table(specs, step_s: float, peak: float) -> None:
  """Each optimizer's every-step contraction FLOPs, the least time they take at XLA's
  square-matmul peak, and the measured update (``benchmarks/optimizers.py``'s ``Stepper``,
  median of three blocks of 10), as shares of the train step."""
  from benchmarks import optimizers as bench_optimizers
  params = bench_optimizers.gpt_params()
  print()
  print("| optimizer | contractions | GFLOP | ms at peak | % of step at peak | measured ms "
        "| measured % of step | measured GFLOP/s |")
  print("|---|---|---|---|---|---|---|---|")
  for spec in specs:
    found, stepper = update_contractions(spec, params)
    measured = statistics.median(stepper.seconds() for _ in range(3))
    gflop = sum(n * flops(c) for c, n in found.items()) / 1e9
    at_peak = gflop * 1e9 / peak
    print(f"| {spec} | {sum(found.values())} | {gflop:.2f} | {at_peak * 1e3:.1f} | "
          f"{100 * at_peak / step_s:.1f} | {measured * 1e3:.1f} | {100 * measured / step_s:.1f} "
          f"| {gflop / measured:.0f} |")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/quickstart.py")
  parser.add_argument("--reps", type=int, default=15, help="timed calls of each contraction")
  parser.add_argument("--steps", type=int, default=10, help="timed calls of the whole step")
  parser.add_argument("--no-torch", action="store_true", help="XLA only")
  parser.add_argument("--optimizers", default="",
                      help="also these optimizers' updates on the quickstart GPT's parameters, "
                           "e.g. muon,scion,normuon,swan,soap,shampoo")
  args = parser.parse_args()

  config = cli.load_config(args.config)
  with config.unlocked():
    config.train.eval_every = 0
  setup, compiled, found = step_contractions(config)
  step_s = statistics.median(bare_step_times(setup, args.steps, compiled)[0])
  peak = matmul_peak()
  xla = {c: xla_seconds(c, args.reps) for c in found}
  have_torch = not args.no_torch
  if have_torch:
    try:
      import torch
      torch.manual_seed(0)
    except ImportError:
      have_torch = False
  timed = {c: torch_seconds(c, args.reps) for c in found} if have_torch else {}

  rows = collections.defaultdict(lambda: [0, 0, 0.0, 0.0])
  for c, n in found.items():
    row = rows[kind(c)]
    row[0] += n
    row[1] += n * flops(c)
    row[2] += n * xla[c]
    row[3] += n * timed.get(c, 0.0)
  total = [sum(r[i] for r in rows.values()) for i in range(4)]
  print(f"config {args.config}: {len(found)} distinct contractions, {total[0]} in a step, "
        f"{total[1] / 1e9:.2f} GFLOP; XLA's square-matmul peak {peak / 1e9:.0f} GFLOP/s; "
        f"threads: XLA default" + (f", torch {torch.get_num_threads()}" if have_torch else ""))
  print()
  head = "| kind | count | GFLOP | XLA ms | XLA GFLOP/s |"
  print(head + (" torch ms | torch GFLOP/s |" if have_torch else ""))
  print("|" + "---|" * (head.count("|") - 1 + (2 if have_torch else 0)))
  for name, (n, f, x, t) in sorted(rows.items()) + [("all", total)]:
    line = f"| {name} | {n} | {f / 1e9:.2f} | {x * 1e3:.1f} | {f / x / 1e9:.0f} |"
    if have_torch:
      line += f" {t * 1e3:.1f} | {f / t / 1e9:.0f} |"
    print(line)
  print()
  print(f"optlab's train step {step_s * 1e3:.1f} ms (median of {args.steps}); its contractions "
        f"alone {total[2] * 1e3:.1f} ms ({100 * total[2] / step_s:.0f}% of it); the rest "
        f"{(step_s - total[2]) * 1e3:.1f} ms")
  print(f"MFU if the step were its contractions alone: {total[1] / total[2] / peak:.2f} "
        f"(measured step: {total[1] / step_s / peak:.2f}, contraction FLOPs only)")
  if have_torch:
    print(f"the same contractions in torch: {total[3] * 1e3:.1f} ms, "
          f"{total[2] / total[3]:.2f}x XLA's time")
  if args.optimizers:
    optimizer_table(args.optimizers.split(","), step_s, peak)


if __name__ == "__main__":
  main()
