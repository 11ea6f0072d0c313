"""What a run leaves in its workdir: metrics.jsonl, summary.json, TensorBoard events, plots."""

import json
import math
import os


def _plain(value):
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
    with open(self.path) as f:
      kept = [line for line in f if line.strip() and json.loads(line)["step"] <= step]
    with open(self.path, "w") as f:
      f.writelines(kept)

  def write(self, record: dict) -> None:
    if not self.enabled:
      return
    record = {k: _plain(v) for k, v in record.items()}
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    if self._tb is not None:
      for key, value in record.items():
        if key != "step" and isinstance(value, int | float):
          self._tb.add_scalar(key, value, record["step"])

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def read_metrics(workdir: str) -> list[dict]:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def write_json(path: str, obj: dict) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True, default=_plain)
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
