"""Notebooks run top to bottom, offline."""

import json

import nbformat
import pytest
from conftest import ROOT
from nbclient import NotebookClient


@pytest.mark.slow  # a kernel, JAX and several compiles
@pytest.mark.parametrize("name", ["compose_transforms.ipynb"])
def test_notebook_runs_top_to_bottom(name, tmp_path):
  notebook = nbformat.read(ROOT / "notebooks" / name, as_version=4)
  NotebookClient(notebook, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
  errors = [o for cell in notebook.cells if cell.cell_type == "code"
            for o in cell.get("outputs", []) if o.get("output_type") == "error"]
  assert not errors
  images = [o for cell in notebook.cells if cell.cell_type == "code"
            for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
  assert images, "the notebook should draw its figure"


# Seed-0 best-rate losses of the synthetic gap sweep: (pair, optimizer) -> loss per batch size.
# The language pair's gap changes sign between B=8 and B=16; the vision pair's stays negative.
_GAP_BATCHES = (8, 16, 32)
_GAP_RATES = {"adam": (1e-3, 3e-3, 1e-2), "sgd": (3e-2, 0.1, 0.3)}  # the best is the middle one
_GAP_LOSSES = {("language-gpt-beta0.9", "adam"): (2.50, 2.30, 2.20),
               ("language-gpt-beta0.9", "sgd"): (2.40, 2.36, 2.45),
               ("vision-vit-beta0.9", "adam"): (0.60, 0.55, 0.50),
               ("vision-vit-beta0.9", "sgd"): (0.70, 0.75, 0.80)}
_GAP_SEED_OFFSETS = {"adam": (0.0, 0.013, -0.021), "sgd": (0.0, -0.017, 0.029)}  # seeds 0, 1, 2


def _gap_row(pair, optimizer, batch, lr, seed, loss, status="ok"):
  """A row as ``training.sweep._row`` writes it for a cell of ``configs/gap.py``."""
  steps = 1280 // batch
  tokens_per_example = 32 if pair.startswith("language") else 1
  return {"run_id": f"{pair}-{optimizer}-{batch}-{lr:g}-{seed}", "cell": f"{pair}-{optimizer}",
          "values": {"train.global_batch": batch, "seed": seed, "optimizer.learning_rate": lr},
          "status": status, "final_loss": loss if status == "ok" else "nan",
          "best_loss": loss if status == "ok" else 5.0,
          "final_min_loss": loss if status == "ok" else "nan",
          "final_eval_loss": loss + 0.1 if status == "ok" else "nan",
          "final_eval_accuracy": 0.5, "steps": steps, "examples_seen": steps * batch,
          "tokens_seen": steps * batch * tokens_per_example, "wall_time_s": 1.0}


def _gap_rows() -> list[dict]:
  rows = []
  for (pair, optimizer), losses in _GAP_LOSSES.items():
    low, best_lr, high = _GAP_RATES[optimizer]
    for batch, loss in zip(_GAP_BATCHES, losses, strict=True):
      rows.append(_gap_row(pair, optimizer, batch, low, 0, loss + 0.4))
      for seed, offset in enumerate(_GAP_SEED_OFFSETS[optimizer]):
        rows.append(_gap_row(pair, optimizer, batch, best_lr, seed, round(loss + offset, 6)))
      diverges = (pair, optimizer, batch) == ("vision-vit-beta0.9", "sgd", 32)
      rows.append(_gap_row(pair, optimizer, batch, high, 0, loss + 0.3,
                           status="diverged" if diverges else "ok"))
  return rows


def test_gap_notebook_rebuilds_the_study_from_a_results_file(tmp_path, monkeypatch):
  with open(tmp_path / "results.jsonl", "w") as f:
    f.writelines(json.dumps(row) + "\n" for row in _gap_rows())
  monkeypatch.setenv("OPTLAB_GAP_RESULTS", str(tmp_path))  # the kernel inherits it
  notebook = nbformat.read(ROOT / "notebooks" / "adam_sgd_gap.ipynb", as_version=4)
  NotebookClient(notebook, timeout=120, kernel_name="python3",
                 resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
  outputs = [o for cell in notebook.cells if cell.cell_type == "code"
             for o in cell.get("outputs", [])]
  assert not [o for o in outputs if o.get("output_type") == "error"]
  images = [o for o in outputs if "image/png" in o.get("data", {})]
  assert len(images) == 2, "gap vs batch size, and final loss vs learning rate"
  text = "\n".join([o.get("text", "") for o in outputs]
                   + [o["data"]["text/markdown"] for o in outputs
                      if "text/markdown" in o.get("data", {})])
  assert f"{len(_gap_rows())} runs from {tmp_path}: 1 diverged" in text

  # The language pair at B=16, from the synthetic losses at each optimizer's best rate.
  adam = [_GAP_LOSSES["language-gpt-beta0.9", "adam"][1] + x for x in _GAP_SEED_OFFSETS["adam"]]
  sgd = [_GAP_LOSSES["language-gpt-beta0.9", "sgd"][1] + x for x in _GAP_SEED_OFFSETS["sgd"]]
  want = sum(adam) / 3 - sum(sgd) / 3
  (line,) = [ln for ln in text.splitlines() if ln.startswith("| language-gpt-beta0.9 | 16 |")]
  assert f"| {want:.4f} [" in line and "(3)" in line
  assert "language-gpt-beta0.9: B* = " in text  # the gap changes sign between B=8 and B=16
  assert "vision-vit-beta0.9: no crossover in range" in text


def test_batch_size_notebook_rebuilds_the_figures_from_a_results_file(tmp_path, monkeypatch):
  # Two tasks whose steps to target follow S = a + b/B exactly at five batch sizes.
  rows = []
  for cell, (a, b) in {"linear": (10.0, 800.0), "gpt": (40.0, 1600.0)}.items():
    for batch in (8, 16, 32, 64, 128):
      steps = int(round(a + b / batch))
      curve = [[s, 1.0 if s >= steps else 2.0] for s in range(1, steps + 5)]
      rows.append({"run_id": f"{cell}-{batch}", "cell": cell, "status": "ok",
                   "values": {"train.global_batch": batch, "optimizer.learning_rate": 0.1,
                              "seed": 0}, "eval_curve": curve})
  with open(tmp_path / "results.jsonl", "w") as f:
    f.writelines(json.dumps(row) + "\n" for row in rows)
  with open(tmp_path / "protocol.json", "w") as f:
    json.dump({"name": "cbs", "report": {"targets": {"linear": 1.5, "gpt": 1.5}}}, f)
  monkeypatch.setenv("OPTLAB_CBS_RESULTS", str(tmp_path))
  notebook = nbformat.read(ROOT / "notebooks" / "batch_size.ipynb", as_version=4)
  NotebookClient(notebook, timeout=120, kernel_name="python3",
                 resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
  outputs = [o for cell in notebook.cells if cell.cell_type == "code"
             for o in cell.get("outputs", [])]
  assert not [o for o in outputs if o.get("output_type") == "error"]
  assert len([o for o in outputs if "image/png" in o.get("data", {})]) == 2
  text = "\n".join([o.get("text", "") for o in outputs]
                   + [o["data"]["text/markdown"] for o in outputs
                      if "text/markdown" in o.get("data", {})])
  assert "10 runs from" in text and "| 4x | 645 | 672 |" in text
  assert "| gpt | 8 | 240 | 0.1 |" in text and "| linear | 128 | 16 | 0.1 |" in text
