"""Reports rebuilt from sweep rows alone: ``python -m experiments.report DIR``.

The gap report writes ``DIR/report/README.md`` (the gap table per pair and batch size with 95%
intervals over seeds, the crossover batch sizes, the best rates still at a grid edge, the
diverged runs) and two PNGs: ``gap_vs_batch.png`` (the gap per pair, the crossover marked) and
``loss_vs_lr.png`` (final loss against learning rate per pair, optimizer and batch size, diverged
runs marked at the top).
"""

import math
import os
import sys
from collections import Counter, defaultdict

import training
from experiments import gap as gap_lib


def _fmt(x, digits=4) -> str:
  return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def _crossover_text(found: gap_lib.Crossover) -> str:
  if found.batch is None:
    return f"no crossover in range ({found.fraction:.0%} of resamples cross)"
  interval = (f" [{found.low:.1f}, {found.high:.1f}]" if found.low is not None
              else " (interval: too few resamples cross)")
  return f"B* = {found.batch:.1f}{interval}, {found.fraction:.0%} of resamples cross"


def gap_table_text(workdir: str) -> str:
  """The gap table as plain text lines (what the protocol prints at its end)."""
  rows = training.read_results(workdir)
  lines = ["pair | batch | Adam L* (seeds) | SGD L* (seeds) | gap = Adam - SGD [95% CI]"]
  for pair, points in gap_lib.gaps(rows).items():
    for p in points:
      lines.append(f"{pair} | {p.batch} | {_fmt(p.adam)} ({p.seeds[0]}) | {_fmt(p.sgd)} "
                   f"({p.seeds[1]}) | {_fmt(p.gap)} [{_fmt(p.low)}, {_fmt(p.high)}]")
    lines.append(f"{pair}: {_crossover_text(gap_lib.crossover(points))}")
  lines.append(f"report: {os.path.join(workdir, 'report', 'README.md')}")
  return "\n".join(lines)


def gap_report(workdir: str) -> str:
  """Writes ``DIR/report/`` from ``DIR/results*.jsonl``; returns the README's path."""
  rows = training.read_results(workdir)
  out = os.path.join(workdir, "report")
  os.makedirs(out, exist_ok=True)
  gaps = gap_lib.gaps(rows)
  best = gap_lib.best_over_grid(rows)
  text = ["# The Adam-SGD gap", "",
          f"{len(rows)} runs from `{workdir}`. A run's loss is the least training loss over its "
          "last 1% of steps; L* is the mean over seeds at the best learning rate of the grid "
          "(seed 0); the gap is Adam's L* minus SGD's (negative: Adam wins), with Welch's 95% "
          "interval. The crossover is where the gap changes sign, interpolated in log B; its "
          "interval comes from gaps resampled within their standard errors.", "",
          "| pair | batch | Adam L* | SGD L* | gap [95% CI] | seeds (Adam, SGD) | best rates |",
          "| --- | --- | --- | --- | --- | --- | --- |"]
  for pair, points in gaps.items():
    for p in points:
      rates = (f"{best[pair, 'adam', p.batch].learning_rate:g}, "
               f"{best[pair, 'sgd', p.batch].learning_rate:g}")
      text.append(f"| {pair} | {p.batch} | {_fmt(p.adam)} | {_fmt(p.sgd)} | {_fmt(p.gap)} "
                  f"[{_fmt(p.low)}, {_fmt(p.high)}] | {p.seeds[0]}, {p.seeds[1]} | {rates} |")
  text += ["", "## Crossover batch sizes", ""]
  text += [f"- {pair}: {_crossover_text(gap_lib.crossover(points))}"
           for pair, points in gaps.items()]
  edges = [f"{pair} {optimizer} B={batch}: best rate {b.learning_rate:g} at the {b.at_edge} "
           f"edge of {', '.join(f'{r:g}' for r in b.rates)}"
           for (pair, optimizer, batch), b in sorted(best.items()) if b.at_edge]
  text += ["", "## Best rates still at a grid edge", ""]
  text += [f"- {e}" for e in edges] or ["- none: every best rate has a worse one on each side"]
  diverged = Counter(gap_lib.pair_and_optimizer(r) for r in rows if r["status"] == "diverged")
  text += ["", "## Diverged runs", ""]
  text += ([f"- {pair} {optimizer}: {n}" for (pair, optimizer), n in sorted(diverged.items())]
           or ["- none"])
  text += ["", "![gap](gap_vs_batch.png)", "", "![loss](loss_vs_lr.png)", ""]
  _plot_gaps(gaps, os.path.join(out, "gap_vs_batch.png"))
  _plot_losses(rows, os.path.join(out, "loss_vs_lr.png"))
  path = os.path.join(out, "README.md")
  with open(path, "w") as f:
    f.write("\n".join(text))
  return path


def _plt():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def _plot_gaps(gaps: dict, path: str) -> None:
  plt = _plt()
  fig, ax = plt.subplots(figsize=(6, 4))
  for pair, points in gaps.items():
    b = [p.batch for p in points]
    g = [p.gap for p in points]
    err = [[p.gap - p.low if math.isfinite(p.low) else 0 for p in points],
           [p.high - p.gap if math.isfinite(p.high) else 0 for p in points]]
    line = ax.errorbar(b, g, yerr=err, marker="o", capsize=3, label=pair)
    found = gap_lib.crossover(points)
    if found.batch is not None:
      ax.axvline(found.batch, ls=":", color=line[0].get_color())
  ax.axhline(0.0, color="k", lw=0.8)
  ax.set_xscale("log", base=2)
  ax.set_xlabel("batch size")
  ax.set_ylabel("gap = L*(Adam) - L*(SGD)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _plot_losses(rows: list[dict], path: str) -> None:
  plt = _plt()
  curves = defaultdict(dict)
  for row in rows:
    if row["values"].get(gap_lib.SEED, 0) != 0:
      continue
    pair, optimizer = gap_lib.pair_and_optimizer(row)
    key = (pair, optimizer, row["values"].get(gap_lib.BATCH))
    curves[key][float(row["values"][gap_lib.LR])] = gap_lib.loss_of(row)
  pairs = sorted({k[0] for k in curves})
  fig, axes = plt.subplots(1, max(len(pairs), 1), figsize=(4 * max(len(pairs), 1), 3.5),
                           squeeze=False)
  for ax, pair in zip(axes[0], pairs, strict=False):
    finite = [v for (p, _, _), c in curves.items() if p == pair for v in c.values()
              if math.isfinite(v)]
    top = max(finite) * 1.05 if finite else 1.0
    for (p, optimizer, batch), curve in sorted(curves.items(), key=str):
      if p != pair:
        continue
      rates = sorted(curve)
      ax.plot(rates, [min(curve[r], top) for r in rates], marker="o", ms=3,
              ls="-" if optimizer == "adam" else "--", label=f"{optimizer} B={batch}")
      bad = [r for r in rates if not math.isfinite(curve[r])]
      ax.plot(bad, [top] * len(bad), "kx", ms=6)
    ax.set_xscale("log")
    ax.set_title(pair, fontsize=8)
    ax.set_xlabel("learning rate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
  axes[0][0].set_ylabel("final loss (x: diverged)")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv: list[str]) -> int:
  if len(argv) != 2 or not os.path.isdir(argv[1]):
    print("usage: python -m experiments.report DIR (a sweep's workdir)", file=sys.stderr)
    return 2
  if not training.read_results(argv[1]):
    print(f"optlab: error: no results*.jsonl rows in {argv[1]}", file=sys.stderr)
    return 2
  print(gap_report(argv[1]))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
