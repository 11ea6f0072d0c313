"""Reports rebuilt from sweep rows alone: ``python -m experiments.report DIR``.

The gap report writes ``DIR/report/README.md`` (the gap table per pair and batch size with 95%
intervals over seeds, the crossover batch sizes, the best rates still at a grid edge, the
diverged runs) and two PNGs: ``gap_vs_batch.png`` (the gap per pair, the crossover marked) and
``loss_vs_lr.png`` (final loss against learning rate per pair, optimizer and batch size, diverged
runs marked at the top).

The Seesaw report (``configs/seesaw.py``) writes the final losses of cosine and Seesaw at each
one's best rate over seeds, their difference with its 95% interval, the serial steps each took,
and SGD's exact risk on noisy linear regression under a rate decay, the batch ramp that
replaces it and Seesaw's ramp (``seesaw_vs_cosine.png``, ``linear_regression.png``).

The robustness report (``configs/robustness.py``) writes ``DIR/report/README.md`` (per task and
optimizer: the best rate and loss, the width in decades of the rates whose loss is within 10% of
the best, and the loss at 10x the best rate against the loss at it, over seeds) and one
``loss_vs_lr_<task>.png`` per task. ``DIR/protocol.json``, written by the protocol, names the
report to rebuild (none: the gap report).
"""

import json
import math
import os
import sys
from collections import Counter, defaultdict

import numpy as np

import training
from experiments import batch_size as batch_lib
from experiments import gap as gap_lib
from experiments import robustness as robustness_lib


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
  rows, out = _rows_and_folder(workdir)
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
  fits = {pair: gap_lib.model_fit(rows, pair, points) for pair, points in gaps.items()}
  text += ["", "## The gap model", "",
           "SignSGD with momentum (Adam's proxy) against normalized SGD with momentum (SGD's) on "
           "a noisy quadratic (`theory/gap_model.py`): d is the parameter count, the initial "
           "suboptimality the mean first loss and the budget the examples per run; L_2, L_inf "
           "and the noise scale are **fitted** to the measured gaps (three or more batch sizes "
           "needed; with few points the fit is loose). A crossover exists when "
           "r = L_inf / L_2 < d^(1/3).", ""]
  for pair, points in gaps.items():
    fit = fits[pair]
    if fit is None:
      text.append(f"- {pair}: no fit (fewer than three finite gaps, or the fit did not "
                  f"converge)")
      continue
    batches = [p.batch for p in points]
    from theory import gap_model  # noqa: PLC0415
    at = gap_model.predicted_crossover(fit, (min(batches) / 4, max(batches) * 4))
    where = f"predicted crossover B* = {at:.1f}" if at else "no predicted crossover near the range"
    text.append(f"- {pair} ({fit.source}): r = {fit.ratio:.3g} vs d^(1/3) = "
                f"{fit.dim ** (1 / 3):.3g}; {where}")
  edges = [f"{pair} {optimizer} B={batch}: best rate {b.learning_rate:g} at the {b.at_edge} "
           f"edge of {', '.join(f'{r:g}' for r in b.rates)}"
           for (pair, optimizer, batch), b in sorted(best.items()) if b.at_edge]
  text += ["", "## Grid edges", ""] + _extended_text(workdir)
  text += ["", "Best rates still at a grid edge:", ""]
  text += [f"- {e}" for e in edges] or ["- none: every best rate has a worse one on each side"]
  diverged = Counter(gap_lib.pair_and_optimizer(r) for r in rows if r["status"] == "diverged")
  text += ["", "## Diverged runs", ""]
  text += ([f"- {pair} {optimizer}: {n}" for (pair, optimizer), n in sorted(diverged.items())]
           or ["- none"])
  text += ["", "![gap](gap_vs_batch.png)", "", "![loss](loss_vs_lr.png)", ""]
  _plot_gaps(gaps, os.path.join(out, "gap_vs_batch.png"), fits)
  _plot_losses(rows, os.path.join(out, "loss_vs_lr.png"))
  return _write_readme(out, text)


def _rows_and_folder(workdir: str) -> tuple[list[dict], str]:
  """A study's rows (``DIR/results*.jsonl``) and its ``DIR/report/``, made."""
  out = os.path.join(workdir, "report")
  os.makedirs(out, exist_ok=True)
  return training.read_results(workdir), out


def _write_readme(out: str, text: list[str]) -> str:
  """Writes a report's ``README.md`` in ``out``; returns its path."""
  path = os.path.join(out, "README.md")
  with open(path, "w") as f:
    f.write("\n".join(text))
  return path


def _save(plt, fig, path: str) -> None:
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _plt():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def _plot_gaps(gaps: dict, path: str, fits: dict | None = None) -> None:
  """The measured gaps with their intervals, the crossovers, and the model's curve (dashed)."""
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
    fit = (fits or {}).get(pair)
    if fit is not None:
      from theory import gap_model  # noqa: PLC0415
      grid = np.geomspace(min(b) / 2, max(b) * 2, 64)
      ax.plot(grid, gap_model.predicted_gap(grid, fit), ls="--", lw=1,
              color=line[0].get_color(), label=f"{pair}: model ({fit.source})")
  ax.axhline(0.0, color="k", lw=0.8)
  ax.set_xscale("log", base=2)
  ax.set_xlabel("batch size")
  ax.set_ylabel("gap = L*(Adam) - L*(SGD)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  _save(plt, fig, path)


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
  _save(plt, fig, path)


def _marker(workdir: str) -> dict:
  """``DIR/protocol.json`` as ``experiments/protocols.py`` writes it: the protocol's ``name``,
  its ``protocol`` settings, its ``report`` arguments and the rates it ``extended`` the grids
  by; a sweep without one is read as a gap study."""
  path = os.path.join(workdir, "protocol.json")
  if not os.path.exists(path):
    return {"name": "gap"}
  with open(path) as f:
    return json.load(f)


def _extended_text(workdir: str) -> list[str]:
  """The rates a protocol added beyond grid edges, and its limit, from ``DIR/protocol.json``."""
  marker = _marker(workdir)
  limit = marker.get("protocol", {}).get("edge_extensions")
  added = marker.get("extended", [])
  head = (f"{len(added)} rates added beyond a grid edge (at most {limit} per cell and batch):"
          if limit is not None else f"{len(added)} rates added beyond a grid edge:")
  lines = [f"- {cell}: " + ", ".join(f"{k.split('.')[-1]}={v:g}" if isinstance(v, float)
                                      else f"{k.split('.')[-1]}={v}" for k, v in values.items())
           for cell, values in added]
  return [head, ""] + lines if lines else [head.replace(":", ".")]


def _width_text(band) -> str:
  if band is None:
    return "- (all diverged)"
  sign = ">= " if band.open_low or band.open_high else ""
  return f"{sign}{band.decades:.2f} ({band.low:g} .. {band.high:g})"


def _mean_text(m, digits=3) -> str:
  if m.n == 0:
    return "-"
  if m.diverged:
    return f"diverged ({m.diverged} of {m.n} seeds)"
  interval = f" [{_fmt(m.low, digits)}, {_fmt(m.high, digits)}]" if m.n > 1 else ""
  return f"{_fmt(m.mean, digits)}{interval}"


def robustness_table_text(workdir: str, *, factor: float = 10.0, within: float = 0.10) -> str:
  """The robustness table as plain text lines (what the protocol prints at its end)."""
  rows = training.read_results(workdir)
  lines = [f"task | optimizer | best rate | best loss | width (decades, {within:.0%}) | "
           f"rate x{factor:g} | loss ratio at x{factor:g} [95% CI] (seeds)"]
  for s in robustness_lib.summarize(rows, factor=factor, within=within):
    o = s.overshoot
    over = (f"{o.rate:g} | {_mean_text(o.ratio)} ({o.ratio.n})" if o else "- | -")
    lines.append(f"{s.task} | {s.optimizer} | {s.best.learning_rate:g} | {_fmt(s.best.loss)} | "
                 f"{_width_text(s.band)} | {over}")
  lines.append(f"report: {os.path.join(workdir, 'report', 'README.md')}")
  return "\n".join(lines)


def robustness_report(workdir: str, *, factor: float = 10.0, within: float = 0.10) -> str:
  """Writes the learning-rate robustness report in ``DIR/report/`` (``configs/robustness.py``);
  returns the README's path."""
  rows, out = _rows_and_folder(workdir)
  summaries = robustness_lib.summarize(rows, factor=factor, within=within)
  text = ["# Learning-rate robustness", "",
          f"{len(rows)} runs from `{workdir}`. A run's loss is the least training loss over its "
          "last 1% of steps; a diverged run counts as worse than any other. The best rate is "
          "the one with the least loss over seed 0's runs. The width is the span, in decades, "
          f"of the contiguous rates around the best whose seed-0 loss is within {within:.0%} "
          "of the best (diverged runs lie outside); `>=` marks a band that reaches an end of "
          "the rates tried. The last columns compare, over seeds other than 0 (seed 0 chose the "
          "rate), the loss at "
          f"{factor:g}x the best rate with the loss at the best rate: the mean with its 95% t "
          "interval, and the ratio taken per seed (the two runs of a seed share its "
          "initialisation and data order; 1 = no loss of quality).", "",
          f"| task | optimizer | best rate | best loss (seed 0) | width, decades (rates) | "
          f"loss at best (seeds) | rate x{factor:g} | loss at x{factor:g} | "
          f"ratio x{factor:g} / best [95% CI] |",
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for s in summaries:
    o = s.overshoot
    cells = ((f"{_mean_text(o.best)} ({o.best.n})", f"{o.rate:g}", _mean_text(o.over),
              _mean_text(o.ratio)) if o else ("-", "-", "-", "-"))
    text.append(f"| {s.task} | {s.optimizer} | {s.best.learning_rate:g} | {_fmt(s.best.loss)} | "
                f"{_width_text(s.band)} | " + " | ".join(cells) + " |")
  edges = [f"{s.task} {s.optimizer}: best rate {s.best.learning_rate:g} at the {s.best.at_edge} "
           f"edge of {', '.join(f'{r:g}' for r in s.best.rates)}" for s in summaries
           if s.best.at_edge]
  text += ["", "## Grid edges", ""] + _extended_text(workdir)
  text += ["", "Best rates still at an edge of the rates tried:", ""]
  text += [f"- {e}" for e in edges] or ["- none: every best rate has a worse one on each side"]
  diverged = defaultdict(list)
  for row in rows:
    if row["status"] == "diverged":
      diverged[gap_lib.pair_and_optimizer(row)].append(float(row["values"][gap_lib.LR]))
  text += ["", "## Diverged runs (rates)", ""]
  text += ([f"- {task} {optimizer}: {', '.join(f'{r:g}' for r in sorted(set(rates)))}"
            for (task, optimizer), rates in sorted(diverged.items())] or ["- none"])
  tasks = sorted({s.task for s in summaries})
  text += [""] + [f"![{task}](loss_vs_lr_{task}.png)" for task in tasks] + [""]
  seed0 = robustness_lib.curves(rows)
  for task in tasks:
    _plot_robustness(task, {s.optimizer: (seed0[task, s.optimizer], s) for s in summaries
                            if s.task == task}, os.path.join(out, f"loss_vs_lr_{task}.png"))
  return _write_readme(out, text)


def _plot_robustness(task: str, curves: dict, path: str) -> None:
  """Seed 0's loss against rate for every optimizer of ``task``: the best starred, diverged
  runs as crosses at the top."""
  plt = _plt()
  fig, ax = plt.subplots(figsize=(6, 4))
  finite = [v for curve, _ in curves.values() for v in curve.values() if math.isfinite(v)]
  top = max(finite) * 1.05 if finite else 1.0
  for optimizer, (curve, summary) in sorted(curves.items()):
    rates = sorted(curve)
    line, = ax.plot(rates, [min(curve[r], top) for r in rates], marker="o", ms=3,
                    label=optimizer)
    color = line.get_color()
    ax.plot([summary.best.learning_rate], [summary.best.loss], "*", ms=12, color=color)
    bad = [r for r in rates if not math.isfinite(curve[r])]
    ax.plot(bad, [top] * len(bad), "x", ms=8, mew=2, color=color)
  ax.set_xscale("log")
  ax.set_title(f"{task}: final loss against learning rate (seed 0)", fontsize=9)
  ax.set_xlabel("peak learning rate")
  ax.set_ylabel("final loss (*: best, x: diverged)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  _save(plt, fig, path)


def _seesaw_cells(rows: list[dict]) -> dict:
  """Per schedule (cell): per rate, the seeds' rows; and the best rate by mean eval loss."""
  by_rate = defaultdict(lambda: defaultdict(list))
  for row in rows:
    by_rate[row["cell"]][float(row["values"][gap_lib.LR])].append(row)
  eval_loss = lambda r: (float(r["final_eval_loss"]) if r["status"] == "ok"
                         and r.get("final_eval_loss") is not None else math.inf)
  out = {}
  for cell, rates in sorted(by_rate.items()):
    means = {lr: float(np.mean([eval_loss(r) for r in rs])) for lr, rs in rates.items()}
    best = min(means, key=lambda lr: (means[lr], lr))
    out[cell] = dict(rates=rates, means=means, best=best,
                     losses=[eval_loss(r) for r in rates[best]],
                     train=[gap_lib.loss_of(r) for r in rates[best]],
                     steps=sorted({r["steps"] for r in rates[best]}),
                     examples=sorted({r["examples_seen"] for r in rates[best]}))
  return out


def seesaw_report(workdir: str) -> str:
  """Writes the Seesaw report in ``DIR/report/``; returns the README's path."""
  rows, out = _rows_and_folder(workdir)
  cells = _seesaw_cells(rows)
  text = ["# Seesaw against cosine at equal examples", "",
          f"{len(rows)} runs from `{workdir}`. Each schedule's best peak rate is the one with "
          "the least eval loss averaged over seeds; the difference is Seesaw's mean minus "
          "cosine's with Welch's 95% interval; steps are optimizer updates (serial steps).", "",
          "| schedule | best rate | eval loss [95% CI] (seeds) | train loss, last 1% | steps | "
          "examples |", "| --- | --- | --- | --- | --- | --- |"]
  for cell, c in cells.items():
    m = robustness_lib.mean_interval(c["losses"])
    text.append(f"| {cell} | {c['best']:g} | {_mean_text(m, 4)} ({len(c['losses'])}) | "
                f"{_fmt(float(np.mean(c['train'])))} | {', '.join(map(str, c['steps']))} | "
                f"{', '.join(map(str, c['examples']))} |")
  if {"cosine", "seesaw"} <= cells.keys():
    d = gap_lib.gap_at(cells["seesaw"]["losses"], cells["cosine"]["losses"], 0)
    fewer = 1 - cells["seesaw"]["steps"][0] / cells["cosine"]["steps"][0]
    text += ["", f"Seesaw minus cosine, eval loss: {_fmt(d.gap)} [{_fmt(d.low)}, {_fmt(d.high)}]"
             f"; Seesaw took {fewer:.1%} fewer serial steps for the same examples."]
  text += ["", "## SGD on noisy linear regression, exactly", "",
           "The expected risk of SGD (`theory/batch_size.py`, no sampling) on the embedded "
           "power-law task (d = 64) over five stages of 2,048 examples: the rate halved at each "
           "stage (`decay`), the batch doubled instead (`ramp`: SGD's equivalent, decay x growth "
           "= 2 in both) and Seesaw's (rate / sqrt 2, batch x 2). Excess risk at each stage's "
           "end:", "", "| schedule | steps | " + " | ".join(f"stage {k + 1}" for k in range(5))
           + " |", "| --- | --- |" + " --- |" * 5]
  problem = batch_lib.linear_regression(dim=64)
  curves = batch_lib.seesaw_equivalence(problem, learning_rate=0.5, batch=8, alpha=2.0,
                                        cuts=4, examples_per_stage=8 * 256)
  bayes = 0.5 * problem[2] ** 2
  for name, (examples, risk) in curves.items():
    ends = [int(np.searchsorted(examples, 2048 * (k + 1))) for k in range(5)]
    text.append(f"| {name} | {len(risk)} | " + " | ".join(f"{risk[i] - bayes:.5f}" for i in ends)
                + " |")
  text += ["", "![seesaw](seesaw_vs_cosine.png)", "", "![linear](linear_regression.png)", ""]
  plt = _plt()
  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  for cell, c in cells.items():
    rates = sorted(c["rates"])
    ax.plot(rates, [c["means"][r] for r in rates], "o-", label=f"{cell} (mean over seeds)")
  ax.set_xscale("log")
  ax.set(xlabel="peak learning rate", ylabel="final eval loss")
  ax.legend()
  _save(plt, fig, os.path.join(out, "seesaw_vs_cosine.png"))
  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  for name, (examples, risk) in curves.items():
    ax.plot(examples, risk - bayes, label=name)
  ax.set_yscale("log")
  ax.set(xlabel="examples", ylabel="excess risk (exact)")
  ax.legend()
  _save(plt, fig, os.path.join(out, "linear_regression.png"))
  return _write_readme(out, text)


def _cbs(rows, targets: dict, overhead: float) -> dict:
  """Per cell: S(B) with its rates, the fit (or ``None``), and for linear regression the exact
  S(B) of SGD at the same rates and target."""
  out = {}
  for cell, target in targets.items():
    found = batch_lib.steps_by_batch(rows, cell, float(target))
    reached = {b: s for b, (s, _, _) in found.items() if s is not None}
    fit = (batch_lib.fit_critical_batch(list(reached), list(reached.values()),
                                        overhead=overhead) if len(reached) >= 2 else None)
    exact = None
    if cell == "linear":
      rates = sorted({float(r["values"]["optimizer.learning_rate"]) for r in rows
                      if r["cell"] == cell})
      budget = max(r["examples_seen"] for r in rows if r["cell"] == cell)
      exact = {b: batch_lib.steps_to_risk(batch_lib.linear_regression(dim=32), [b], rates,
                                          float(target), max(1, budget // b))[b]
               for b in found}
    out[cell] = dict(target=float(target), found=found, fit=fit, exact=exact)
  return out


def cbs_report(workdir: str, *, targets: dict, overhead: float = 0.2) -> str:
  """Writes the critical-batch-size report in ``DIR/report/``; returns the README's path."""
  rows, out = _rows_and_folder(workdir)
  cells = _cbs(rows, targets, overhead)
  text = ["# Critical batch size", "",
          f"{len(rows)} runs from `{workdir}`. S(B) is the fewest steps to an eval loss at or "
          "below the task's target, least over the constant rates tried (the rate in brackets; "
          "the count of rates that reached it after the slash); S = a + b/B is fitted in log S "
          f"over the batch sizes that reached it; B* = {overhead:g} b / a is where S is "
          f"{overhead:.0%} above linear scaling b/B.", ""]
  for cell, c in cells.items():
    text += [f"## {cell} (target {c['target']:g})", "",
             "| batch | S(B) (rate / rates reaching) | fit a + b/B |"
             + (" exact S(B), SGD's expected risk (rate) |" if c["exact"] else ""),
             "| --- | --- | --- |" + (" --- |" if c["exact"] else "")]
    for b, (steps, rate, reached) in c["found"].items():
      fitted = f"{float(c['fit'].steps(b)):.1f}" if c["fit"] else "-"
      row = (f"| {b} | {steps if steps is not None else 'not reached'}"
             + (f" ({rate:g} / {reached})" if steps is not None else "") + f" | {fitted} |")
      if c["exact"]:
        e_steps, e_rate = c["exact"][b]
        row += f" {e_steps if e_steps is not None else 'not reached'}" + (
            f" ({e_rate:g}) |" if e_steps is not None else " |")
      text.append(row)
    fit = c["fit"]
    text += ["", (f"Fit: a = {fit.a:.2f} steps, b = {fit.b:.1f} steps x examples; "
                  f"**B\\* = {fit.batch:.1f}**" if fit else
                  "Fewer than two batch sizes reached the target: no fit.")]
    if c["exact"]:
      exact = {b: s for b, (s, _) in c["exact"].items() if s is not None}
      if len(exact) >= 2:
        efit = batch_lib.fit_critical_batch(list(exact), list(exact.values()),
                                            overhead=overhead)
        text.append(f"Exact (expected risk, same rates and target): a = {efit.a:.2f}, "
                    f"b = {efit.b:.1f}; B\\* = {efit.batch:.1f}.")
    text += ["", f"![{cell}](steps_vs_batch_{cell}.png)", ""]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    reached = {b: s for b, (s, _, _) in c["found"].items() if s is not None}
    if reached:
      ax.plot(list(reached), list(reached.values()), "o", label="measured S(B)")
    if c["exact"]:
      exact = {b: s for b, (s, _) in c["exact"].items() if s is not None}
      ax.plot(list(exact), list(exact.values()), "s", mfc="none", label="exact (SGD theory)")
    if fit:
      grid = np.geomspace(min(c["found"]), max(c["found"]), 100)
      ax.plot(grid, fit.steps(grid), "-", label="a + b/B")
      ax.plot(grid, fit.b / grid, ":", label="linear scaling b/B")
      ax.axvline(fit.batch, color="grey", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set(xlabel="batch size", ylabel=f"steps to eval loss {c['target']:g}", title=cell)
    ax.legend(fontsize=8)
    _save(plt, fig, os.path.join(out, f"steps_vs_batch_{cell}.png"))
  return _write_readme(out, text)


def _adaptive_rows(rows: list[dict]) -> dict:
  by_cell = defaultdict(list)
  for row in rows:
    by_cell[row["cell"]].append(row)
  return dict(sorted(by_cell.items()))


def _eta(row: dict) -> str:
  eta = row["values"].get("train.ramp.test_eta")
  return "-" if eta is None else f"{eta:g}"


def _batch_text(curve) -> str:
  return " -> ".join(f"{b} (step {s})" for s, b in curve or [])


def adaptive_report(workdir: str) -> str:
  """Writes the adaptive-batch report in ``DIR/report/``; returns the README's path."""
  rows, out = _rows_and_folder(workdir)
  cells = _adaptive_rows(rows)
  text = ["# Adaptive batch sizes", "",
          f"{len(rows)} runs from `{workdir}`. Each run starts at its config's batch; every "
          "few steps the test reads the per-example gradients of the step's first microbatch "
          "and, where it fails, the next batch grows to what it asks for (capped). The batch "
          "column lists where it changed (the step it was first used at). The final loss is "
          "the least training loss over the last 1% of steps.", "",
          "| cell | eta | seed | final loss | eval accuracy | examples | steps | batch over "
          "training |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
  for cell, cell_rows in cells.items():
    for r in cell_rows:
      text.append(f"| {cell} | {_eta(r)} | {r['values'].get('seed', 0)} | "
                  f"{_fmt(gap_lib.loss_of(r))} | "
                  f"{_fmt(r['final_eval_accuracy'], 3)} | {r['examples_seen']} | {r['steps']} "
                  f"| {_batch_text(r.get('batch_curve'))} |")
  text += ["", "![batch](batch_vs_step.png)", ""]
  plt = _plt()
  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  labelled = set()
  for i, (cell, cell_rows) in enumerate(cells.items()):
    for r in cell_rows:
      curve, label = r.get("batch_curve") or [], f"{cell}, eta {_eta(r)}"
      if curve and r["values"].get("seed", 0) == 0:  # one seed's curve per (cell, eta)
        ax.step([s for s, _ in curve], [b for _, b in curve], where="post", color=f"C{i}",
                alpha=0.8, label=None if label in labelled else label)
        labelled.add(label)
  ax.set_yscale("log", base=2)
  ax.set(xlabel="step", ylabel="batch size")
  ax.legend(fontsize=8)
  _save(plt, fig, os.path.join(out, "batch_vs_step.png"))
  return _write_readme(out, text)


def _bst(rows: list[dict]) -> dict:
  """Per budget (cell): per batch size, the best eval loss over the stepsizes and its stepsize;
  the budget's examples; the best batch."""
  out, grown = {}, [r for r in rows if "train.ramp.stages" in r["values"]]
  rows = [r for r in rows if "train.ramp.stages" not in r["values"]]
  for cell in sorted({r["cell"] for r in rows}):
    curve = {}
    for r in rows:
      if r["cell"] != cell:
        continue
      batch, lr = int(r["values"][gap_lib.BATCH]), float(r["values"][gap_lib.LR])
      loss = (float(r["final_eval_loss"]) if r["status"] == "ok"
              and r.get("final_eval_loss") is not None else math.inf)
      if batch not in curve or loss < curve[batch][0]:
        curve[batch] = (loss, lr)
    curve = dict(sorted(curve.items()))
    best = min(curve, key=lambda b: curve[b][0])
    examples = max(r["examples_seen"] for r in rows if r["cell"] == cell)
    out[cell] = dict(curve=curve, best=best, examples=examples,
                     grown=[r for r in grown if r["cell"] == cell])
  return out


def _bst_transfer(cells: dict) -> dict | None:
  """The rule from the smaller budget's best (batch, stepsize) to the larger budget."""
  if len(cells) != 2:
    return None
  (small, a), (large, b) = sorted(cells.items(), key=lambda kv: kv[1]["examples"])
  from theory import batch_size as theory_batch  # noqa: PLC0415 -- numpy only
  rule = theory_batch.bst_transfer(a["best"], 1, a["curve"][a["best"]][1], a["examples"],
                                   b["examples"])
  exact = rule["exact_batch"]
  nearest = min(b["curve"], key=lambda x: abs(math.log(x / exact)))
  return dict(small=small, large=large, batch=exact, stepsize=rule["stepsize"], nearest=nearest,
              measured=b["best"], measured_stepsize=b["curve"][b["best"]][1],
              loss_at_nearest=b["curve"][nearest][0], best_loss=b["curve"][b["best"]][0])


def _bst_stages_text(r: dict) -> str:
  """A grown run's stages in words: batch x length (stepsize) from each stage's start."""
  v = r["values"]
  unit = v.get("train.ramp.unit", "steps")
  seq = v.get("train.ramp.seq_len", 0)
  lr0 = float(v[gap_lib.LR])
  parts = [f"{v[gap_lib.BATCH]}" + (f" x {seq} tokens" if seq else "") + f" at {lr0:.3g}"]
  for start, batch, length, *factor in v["train.ramp.stages"]:
    parts.append(f"from {start} {unit}: {batch}" + (f" x {length} tokens" if length else "")
                 + f" at {lr0 * (factor[0] if factor else 1.0):.3g}")
  return "; ".join(parts) + f" ({r['steps']} steps)"


def _bst_constants_text(workdir: str, cells: dict) -> dict:
  """The measured constants (``DIR/bst_constants.json``) and where they put each budget's
  regimes, beside the measured best batch; ``optima``: cell -> the constants' B*."""
  path = os.path.join(workdir, "bst_constants.json")
  if not os.path.exists(path):
    return dict(text=[], optima={})
  with open(path) as f:
    m = json.load(f)
  from theory import batch_size as theory_batch  # noqa: PLC0415 -- numpy only
  seq = m["seq_len"]
  text = ["", f"## The constants, measured along {m['cell']}'s best run", "",
          f"B = {m['batch']}, stepsize {m['learning_rate']:g}, {m['steps']} steps, "
          f"{len(m['points'])} points (`bst_constants.json`), in Scion's norm and its dual: "
          f"L = {m['smoothness']:.4g} (largest one-step ratio), mu = {m['mu']:.4g} (least KL "
          f"ratio, f* = {m['f_star']:.4g}: the best eval loss of the grid), "
          f"rho sigma* = {m['rho_sigma']:.4g} (median; the dual-norm noise of one token), "
          f"rho = {m['rho']:.4g} (its dual over Euclidean norm), sigma* = {m['sigma']:.4g}.",
          "", "| budget | tokens | noise-dominated below B | B* (the rule's optimum) | "
          "stepsize at B* | measured best B (stepsize) |", "| --- | --- | --- | --- | --- | --- |"]
  optima = {}
  for cell, c in cells.items():
    tokens = c["examples"] * seq
    r = theory_batch.bst_regimes(tokens, mu=m["mu"], rho_sigma=m["rho_sigma"],
                                 smoothness=m["smoothness"])
    optima[cell] = r["optimum"] / seq
    text.append(f"| {cell} | {tokens} | {r['low'] / seq:.3g} | {r['optimum'] / seq:.3g} | "
                f"{r['stepsize']:.3g} | {c['best']} ({c['curve'][c['best']][1]:g}) |")
  text += ["", "The bound's unknown factors are taken as 1: the table tests whether the "
           "measured constants put the optimum at the right magnitude."]
  return dict(text=text, optima=optima)


def bst_report(workdir: str) -> str:
  """Writes the BST report in ``DIR/report/``; returns the README's path."""
  rows, out = _rows_and_folder(workdir)
  cells = _bst(rows)
  text = ["# The BST rule on our task", "",
          f"{len(rows)} runs from `{workdir}`. Per budget, the final eval loss at each batch "
          "size, best over the stepsizes tried (in brackets); steps = budget / batch.", "",
          "| budget | examples | " + " | ".join(f"B = {b}" for b in
                                                 next(iter(cells.values()))["curve"]) + " |",
          "| --- | --- |" + " --- |" * len(next(iter(cells.values()))["curve"])]
  for cell, c in cells.items():
    text.append(f"| {cell} | {c['examples']} | " + " | ".join(
        f"{_fmt(loss, 3)} ({lr:g})" for loss, lr in c["curve"].values()) + " |")
  t = _bst_transfer(cells)
  if t:
    ratio = cells[t["large"]]["examples"] / cells[t["small"]]["examples"]
    text += ["", f"The rule from {t['small']}'s best (B = {cells[t['small']]['best']}) to "
             f"{ratio:g}x the budget: B = {t['batch']:.1f} (the grid's nearest: {t['nearest']}), "
             f"stepsize {t['stepsize']:.3g}. Measured at {t['large']}: best B = {t['measured']} "
             f"(stepsize {t['measured_stepsize']:g}), eval loss {_fmt(t['best_loss'], 3)}; at "
             f"the rule's batch, {_fmt(t['loss_at_nearest'], 3)}."]
  for cell, c in cells.items():
    for r in c["grown"]:
      text += ["", f"A growing schedule at {cell}: {_bst_stages_text(r)}: eval loss "
               f"{_fmt(float(r['final_eval_loss']), 3) if r['status'] == 'ok' else r['status']}"
               f", against {_fmt(c['curve'][c['best']][0], 3)} for the best fixed batch "
               f"({c['best']})."]
  constants = _bst_constants_text(workdir, cells)
  text += constants["text"]
  text += ["", "![bst](loss_vs_batch.png)", ""]
  plt = _plt()
  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  for cell, c in cells.items():
    ax.plot(list(c["curve"]), [loss for loss, _ in c["curve"].values()], "o-",
            label=f"{cell} ({c['examples']} examples)")
  if t:
    ax.axvline(t["batch"], color="grey", ls=":", label=f"rule's B for {t['large']}")
  for (cell, batch), color in zip(constants["optima"].items(), ("C0", "C1", "C2"), strict=False):
    ax.axvline(batch, color=color, ls="--", label=f"measured constants' B* ({cell})")
  ax.set_xscale("log", base=2)
  ax.set(xlabel="batch size", ylabel="final eval loss (best stepsize)")
  ax.legend(fontsize=8)
  _save(plt, fig, os.path.join(out, "loss_vs_batch.png"))
  return _write_readme(out, text)


REPORTS = {"gap": gap_report, "robustness": robustness_report, "seesaw": seesaw_report,
           "cbs": cbs_report, "adaptive": adaptive_report, "bst": bst_report}


def main(argv: list[str]) -> int:
  if len(argv) != 2 or not os.path.isdir(argv[1]):
    print("usage: python -m experiments.report DIR (a sweep's workdir)", file=sys.stderr)
    return 2
  if not training.read_results(argv[1]):
    print(f"optlab: error: no results*.jsonl rows in {argv[1]}", file=sys.stderr)
    return 2
  marker = _marker(argv[1])
  name = marker["name"]
  reports = REPORTS
  if name not in reports:
    print(f"optlab: error: {argv[1]}/protocol.json names {name!r}, not one of "
          f"{', '.join(reports)}", file=sys.stderr)
    return 2
  print(reports[name](argv[1], **marker.get("report", {})))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
