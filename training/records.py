"""What a run leaves in its workdir and shows while it trains.

``metrics.jsonl`` (one object per logged step), ``summary.json`` (``summarize``), TensorBoard
events, ``report/loss.png``; and the progress: a bar on a terminal, one line per logged step
(at most every few seconds) when the output goes to a file.
"""

import json
import math
import os
import sys
import time

import numpy as np


def plain(value):
  """A JSON-ready scalar: arrays' items, and non-finite floats as text ("nan", "inf")."""
  if hasattr(value, "item"):
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


class MetricWriter:
  """Appends one JSON object per logged step to ``DIR/metrics.jsonl`` (and TensorBoard)."""

  def __init__(self, workdir: str, *, tensorboard: bool, enabled: bool = True):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.enabled = enabled
    self._tb = None
    if enabled and tensorboard:
      from tensorboardX import SummaryWriter
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def truncate_after(self, step: int) -> None:
    """Drops records past ``step``: after a resume they are written again."""
    if not self.enabled or not os.path.exists(self.path):
      return
    kept = [json.dumps(r) + "\n" for r in read_metrics(os.path.dirname(self.path))
            if r["step"] <= step]
    with open(self.path, "w") as f:
      f.writelines(kept)

  def write(self, record: dict) -> None:
    if not self.enabled:
      return
    record = {k: plain(v) for k, v in record.items()}
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    if self._tb is not None:
      for key, value in record.items():
        if key != "step" and isinstance(value, int | float):
          self._tb.add_scalar(key, value, record["step"])

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
      self._tb = None


def step_record(step: int, metrics: dict, *, examples_seen: int, time_s: float,
                tokens_seen: int | None) -> dict:
  """A logged step's record (one line of ``metrics.jsonl``): its metrics and the run's progress.

  ``metrics`` may still be on the device: the loop fetches records one step late.
  """
  record = {"step": step, **metrics, "examples_seen": examples_seen, "time_s": time_s}
  if tokens_seen is not None:
    record["tokens_seen"] = tokens_seen
  return record


def read_metrics(workdir: str) -> list[dict]:
  """The records of ``DIR/metrics.jsonl``; a last line cut short by a killed run is skipped."""
  return read_jsonl(os.path.join(workdir, "metrics.jsonl"))


def read_jsonl(path: str) -> list[dict]:
  """One dict per line of ``path`` (none if it is missing), up to a line cut short by a kill."""
  if not os.path.exists(path):
    return []
  records = []
  with open(path) as f:
    for line in f:
      if not line.strip():
        continue
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        break  # written up to a kill: this step and any after it are written again
  return records


def write_json(path: str, obj: dict) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True, default=plain)
  os.replace(tmp, path)


def plot_loss(workdir: str, records: list[dict], title: str) -> str:
  """Writes ``DIR/report/loss.png``: training loss and eval loss against the step."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  os.makedirs(os.path.join(workdir, "report"), exist_ok=True)
  path = os.path.join(workdir, "report", "loss.png")
  train = [(r["step"], r["loss"]) for r in records if isinstance(r.get("loss"), float)]
  evals = [(r["step"], r["eval_loss"]) for r in records if isinstance(r.get("eval_loss"), float)]
  fig, ax = plt.subplots(figsize=(6, 4))
  if train:
    ax.plot(*zip(*train, strict=True), label="train", lw=1)
  if evals:
    ax.plot(*zip(*evals, strict=True), "o-", label="eval", ms=3)
  ax.set_xlabel("step")
  ax.set_ylabel("loss")
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def tail_mean(history: list[dict], key: str, fraction: float = 0.1) -> float | None:
  """Mean of ``key`` over the last ``fraction`` of the logged steps (at least one)."""
  values = [r[key] for r in history if isinstance(r.get(key), float)]
  if not values:
    return None
  tail = values[-max(1, int(round(fraction * len(values)))):]
  return float(np.mean(tail))


def summarize(*, status: str, steps: int, examples_seen: int, history: list[dict],
              last_record: dict, step_time_s: float | None, wall_time_s: float,
              global_batch: int, tokens_per_example: int, num_params: int,
              flops_per_example: float, data_info: dict, devices: int, processes: int,
              jax_version: str, tokens_seen: int | None = None) -> dict:
  """The contents of ``summary.json``: status, final and best losses, throughput, identity.

  ``tokens_seen``: counted by a ramp (sequence lengths vary); else examples x tokens each. For
  a ramp, ``global_batch`` and ``tokens_per_example`` are the run's means (throughput).

  ``final_loss`` is the mean training loss over the last 10% of logged steps (less noisy than
  the last one, ``last_loss``); ``history`` is the run's ``metrics.jsonl``.
  """
  evals = [r["eval_loss"] for r in history if "eval_loss" in r]
  finite_evals = [e for e in evals if isinstance(e, float)]  # a diverged run's last is "nan"
  per_s = lambda amount: amount / step_time_s if step_time_s else None
  return {
      "status": status,
      "steps": steps,
      "final_loss": tail_mean(history, "loss") if history else last_record.get("loss"),
      "last_loss": last_record.get("loss"),
      "final_eval_loss": evals[-1] if evals else None,
      "best_eval_loss": min(finite_evals) if finite_evals else None,
      "final_eval_accuracy": next((r["eval_accuracy"] for r in reversed(history)
                                   if "eval_accuracy" in r), None),
      "examples_seen": examples_seen,
      "tokens_seen": tokens_seen if tokens_seen is not None else (
          examples_seen * tokens_per_example if tokens_per_example else None),
      "num_params": num_params,
      "flops_per_example": flops_per_example,
      "step_time_s": step_time_s,
      "examples_per_s": per_s(global_batch),
      "tokens_per_s": per_s(global_batch * tokens_per_example) if tokens_per_example else None,
      "model_flops_per_s": per_s(global_batch * flops_per_example),
      "wall_time_s": wall_time_s,
      "data": data_info,
      "devices": devices,
      "processes": processes,
      "jax_version": jax_version,
  }


class Progress:
  """Shows a run's progress: a tqdm bar when stderr is a terminal; a plain line per logged step
  (every ``every_s`` seconds at most, and the last step) on stdout when it is a file or a pipe,
  so that a log file shows the run too. ``enabled=False`` (all processes but the first) shows
  nothing.
  """

  def __init__(self, total: int, initial: int, *, enabled: bool = True, every_s: float = 10.0,
               lines=None, bar=None):
    self.total = total
    lines = sys.stdout if lines is None else lines
    bar = sys.stderr if bar is None else bar
    self._lines = lines if enabled and not lines.isatty() else None
    self._every_s, self._last_line = every_s, -math.inf
    self._bar = None
    if enabled and bar.isatty():
      from tqdm import tqdm
      self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=bar)

  def __enter__(self):
    return self

  def update(self, steps: int = 1) -> None:
    if self._bar is not None:
      self._bar.update(steps)

  def record(self, record: dict) -> None:
    """Shows a logged record: as the bar's postfix, or as a line if enough time has passed."""
    loss = float(record["loss"])
    if self._bar is not None:
      self._bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
    if self._lines is None:
      return
    if time.monotonic() - self._last_line < self._every_s and record["step"] < self.total:
      return
    self._last_line = time.monotonic()
    evals = "".join(f"  {k} {record[k]:.4f}" for k in ("eval_loss", "eval_accuracy")
                    if isinstance(record.get(k), float))
    print(f"step {record['step']}/{self.total} ({100 * record['step'] / self.total:.0f}%)  "
          f"loss {loss:.4f}{evals}  {record.get('time_s', 0.0):.1f} s",
          file=self._lines, flush=True)

  def __exit__(self, *exc):
    if self._bar is not None:
      self._bar.close()
