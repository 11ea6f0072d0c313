"""The protocols' configs and their refusals: what ``configs/gap.py`` declares for each variant,
and the checks ``experiments/protocols.py`` makes before anything compiles."""

import json
import math
import os

import pytest
import tensorflow_datasets as tfds
from conftest import ROOT

import training
from configs import gap as gap_config
from configs import robustness as robustness_config
from experiments import protocols
from training import cli, sweep


def _flat(config) -> dict:
  out = {}

  def walk(prefix, node):
    for key, value in node.items():
      if isinstance(value, dict):
        walk(f"{prefix}{key}.", value)
      else:
        out[prefix + key] = value

  walk("", config.to_dict())
  return out


def _cells(config) -> dict:
  return {name: cell for name, cell, _ in config.sweep.cells}


def test_claims_change_one_knob_of_the_reference_pair_each():
  cells = _cells(gap_config.get_config("claims"))
  for optimizer in ("adam", "sgd"):
    reference = _flat(cells[f"language-gpt.zipf-beta0.9-{optimizer}"])
    assert reference["data.name"] == "token_streams" and reference["data.zipf_exponent"] == 1.0
    assert reference["model.activation"] == "gelu" and reference["model.attention"] == "softmax"
    for knob, changed in (("uniform", {"data.zipf_exponent": 0.0}),
                          ("relu", {"model.activation": "relu"}),
                          ("linear", {"model.attention": "linear"})):
      flat = _flat(cells[f"language-gpt.{knob}-beta0.9-{optimizer}"])
      assert {k: v for k, v in flat.items() if reference.get(k) != v} == changed


def test_full_is_every_pair_on_its_tfds_set_with_the_study_s_betas():
  config = gap_config.get_config("full")
  cells = _cells(config)
  assert len(cells) == len(gap_config.FULL_PAIRS) * 4 * 2
  for (modality, arch) in gap_config.FULL_PAIRS:
    for beta in (0.9, 0.95, 0.99, 0.999):
      adam, sgd = (cells[f"{modality}-{arch}-beta{beta:g}-{o}"] for o in ("adam", "sgd"))
      assert adam.optimizer.kwargs.to_dict() == {"b1": beta, "b2": beta, "eps": 1e-8}
      assert sgd.optimizer.kwargs.to_dict() == {"momentum": beta, "nesterov": False}
      dataset = gap_config.FULL_DATA[modality]
      assert adam.data.name.startswith("tfds") and dataset in adam.data.dataset, adam.data
  assert dict(config.sweep.grid)["train.global_batch"] == (16, 32, 64, 128, 256, 512)


def test_full_smoke_prepares_every_pair_under_mock_tfds_data(tmp_path):
  config = gap_config.get_config("full,smoke")
  runs = sweep.expand(config)
  first = {}
  for run in runs:
    first.setdefault(run.cell.rsplit("-", 2)[0], run)
  assert len(first) == len(gap_config.FULL_PAIRS)
  with tfds.testing.mock_data(num_examples=64):
    for pair, run in first.items():
      setup = training.prepare(sweep.run_config(config, run), str(tmp_path / pair))
      assert setup.num_params > 0 and not os.path.exists(tmp_path / pair / "config.json")


def _refused(config, workdir, fragments) -> None:
  with pytest.raises(ValueError) as e:
    protocols.gap(config, str(workdir)) if config.protocol.name == "gap" else (
        protocols.robustness(config, str(workdir)))
  message = str(e.value)
  assert "\n" not in message
  for fragment in fragments:
    assert fragment in message, message
  assert not os.path.exists(workdir) or not os.listdir(workdir)


@pytest.mark.parametrize("key,value,fragments", [
    ("seeds", 0, ["protocol.seeds=0", "an integer >= 1"]),
    ("edge_extensions", -1, ["protocol.edge_extensions=-1", ">= 0"]),
    ("grid_factor", 0.5, ["protocol.grid_factor=0.5", "> 1"]),
])
def test_bad_protocol_settings_are_refused_in_one_line(tmp_path, key, value, fragments):
  config = gap_config.get_config("smoke")
  with config.unlocked():
    config.protocol[key] = value
  _refused(config, tmp_path / "gap", fragments)


@pytest.mark.parametrize("key,value,fragments", [
    ("overshoot", 1.0, ["protocol.overshoot=1.0", "> 1"]),
    ("within", 0.0, ["protocol.within=0.0", "> 0"]),
])
def test_bad_robustness_settings_are_refused_in_one_line(tmp_path, key, value, fragments):
  config = robustness_config.get_config("smoke")
  with config.unlocked():
    config.protocol[key] = value
  _refused(config, tmp_path / "robust", fragments)


def test_an_axis_the_analysis_would_merge_is_refused(tmp_path):
  config = gap_config.get_config("smoke")
  with config.unlocked():
    config.sweep.grid = config.sweep.grid + (("model.activation", ("relu", "gelu")),)
  _refused(config, tmp_path / "gap", ["does not tell runs apart by model.activation",
                                      "sweep.grid", "a cell of its own"])


def test_train_py_refuses_bad_protocol_settings_before_compiling(tmp_path, capsys):
  workdir = tmp_path / "gap"
  code = cli.main(["train.py", f"--config={ROOT / 'configs/gap.py'}:smoke",
                   f"--workdir={workdir}", "--config.protocol.grid_factor=0.5"],
                  protocols={"gap": "experiments.protocols:gap"})
  lines = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(lines) == 1 and "protocol.grid_factor=0.5" in lines[0], lines
  assert not os.path.exists(workdir) or not os.listdir(workdir)


def test_a_study_with_other_protocol_settings_is_refused_unless_allowed(tmp_path):
  config = gap_config.get_config("smoke")
  workdir = str(tmp_path / "gap")
  protocols._begin("gap", config, workdir, False)
  changed = gap_config.get_config("smoke")
  with changed.unlocked():
    changed.protocol.grid_factor = 2.0
  with pytest.raises(ValueError, match="other protocol settings \\(protocol.grid_factor\\)"):
    protocols._begin("gap", changed, workdir, False)
  marker = protocols._begin("gap", changed, workdir, True)
  assert json.load(open(os.path.join(workdir, "protocol.json"))) == marker
  assert marker["protocol"]["grid_factor"] == 2.0


def _run_protocol(tmp_path, capsys, name: str, config: str):
  """``train.py --config=configs/<config>.py:smoke`` through the protocol ``name``; its DIR."""
  workdir = tmp_path / name
  code = cli.main(["train.py", f"--config={ROOT / 'configs' / config}.py:smoke",
                   f"--workdir={workdir}"], protocols={name: f"experiments.protocols:{name}"})
  out = capsys.readouterr().out
  assert code == 0 and f"{name} protocol done" in out, out[-2000:]
  return workdir


def _rebuilds_the_same_report(workdir) -> None:
  """``python -m experiments.report DIR`` writes the README the protocol wrote, from rows alone."""
  from experiments import report
  readme = (workdir / "report" / "README.md").read_text()
  os.remove(workdir / "report" / "README.md")
  assert report.main(["report", str(workdir)]) == 0
  assert (workdir / "report" / "README.md").read_text() == readme


@pytest.mark.slow  # eight short GPT runs
def test_the_seesaw_protocol_compares_both_schedules_and_reports(tmp_path, capsys):
  workdir = _run_protocol(tmp_path, capsys, "seesaw", "seesaw")
  rows = training.read_results(str(workdir))
  steps = {r["cell"]: r["steps"] for r in rows}
  examples = {r["cell"]: r["examples_seen"] for r in rows}
  assert steps["cosine"] == 40 and steps["seesaw"] < 40  # fewer serial steps
  assert examples["cosine"] == 320 <= examples["seesaw"] < 320 + 64  # within a last batch
  readme = (workdir / "report" / "README.md").read_text()
  assert "| cosine | 0.003 |" in readme and "| seesaw | 0.003 |" in readme
  assert "fewer serial steps" in readme and "| ramp |" in readme
  for name in ("seesaw_vs_cosine.png", "linear_regression.png"):
    assert (workdir / "report" / name).stat().st_size > 0
  _rebuilds_the_same_report(workdir)


def test_cbs_needs_a_target_per_cell(tmp_path):
  from configs import cbs as cbs_config
  config = cbs_config.get_config("smoke")
  with config.unlocked():
    del config.protocol.targets["gpt"]
  with pytest.raises(ValueError, match="protocol.targets has no target loss for gpt"):
    protocols.cbs(config, str(tmp_path / "cbs"))
  assert not (tmp_path / "cbs").exists()


def test_steps_by_batch_takes_the_least_over_rates_from_the_eval_curves():
  from experiments import batch_size as cbs
  row = lambda batch, lr, curve: {"cell": "t", "values": {"train.global_batch": batch,
                                                          "optimizer.learning_rate": lr},
                                  "eval_curve": curve}
  rows = [row(8, 0.1, [[2, 3.0], [4, 2.4], [6, 1.9]]), row(8, 0.2, [[2, 2.5], [4, 1.8]]),
          row(16, 0.1, [[2, 2.9], [4, 2.5]]), row(16, 0.2, [[2, 2.2], [4, 2.05]]),
          {**row(8, 0.4, None), "cell": "other"}]
  assert cbs.steps_by_batch(rows, "t", 2.0) == {8: (4, 0.2, 2), 16: (None, None, 0)}


@pytest.mark.slow  # twelve short runs
def test_the_cbs_protocol_reports_steps_to_target_and_the_exact_linear_steps(tmp_path, capsys):
  workdir = _run_protocol(tmp_path, capsys, "cbs", "cbs")
  rows = training.read_results(str(workdir))
  assert all(len(r["eval_curve"]) == r["steps"] // (1 if r["cell"] == "linear" else 2)
             for r in rows)  # every step (linear), every 2 (GPT)
  readme = (workdir / "report" / "README.md").read_text()
  assert "## linear (target 0.16)" in readme and "exact S(B)" in readme
  for name in ("steps_vs_batch_linear.png", "steps_vs_batch_gpt.png"):
    assert (workdir / "report" / name).stat().st_size > 0
  _rebuilds_the_same_report(workdir)


@pytest.mark.slow  # eight short MLP runs with per-example gradients
def test_the_adaptive_protocol_reports_each_run_s_batch_over_training(tmp_path, capsys):
  workdir = _run_protocol(tmp_path, capsys, "adaptive", "adaptive_batch")
  rows = training.read_results(str(workdir))
  assert len(rows) == 8
  for r in rows:
    curve = r["batch_curve"]
    batches = [b for _, b in curve]
    assert curve[0] == [1, 8] and curve[-1][0] == 20 and batches == sorted(batches)
    assert all(b % 8 == 0 and b <= 512 for b in batches)
    # Examples drawn are the batches summed over the steps (a step uses the last change's).
    batch_at = lambda step, curve=curve: [b for t, b in curve if t <= step][-1]
    assert r["examples_seen"] == sum(batch_at(step) for step in range(1, 21))
  readme = (workdir / "report" / "README.md").read_text()
  assert "| adam-norm | 0.1 | 0 |" in readme and "| adagrad_norm-augmented | 1 | 0 |" in readme
  _rebuilds_the_same_report(workdir)


def test_the_bst_report_transfers_the_small_budget_s_best_by_the_rule():
  from experiments import report
  row = lambda cell, batch, lr, loss, examples: {
      "cell": cell, "status": "ok", "final_eval_loss": loss, "examples_seen": examples,
      "values": {"train.global_batch": batch, "optimizer.learning_rate": lr}}
  rows = [row("T0", 8, 1e-3, 3.0, 256), row("T0", 8, 3e-4, 3.1, 256),
          row("T0", 32, 1e-3, 3.4, 256), row("T1", 8, 1e-3, 2.9, 1024),
          row("T1", 16, 3e-4, 2.7, 1024), row("T1", 32, 1e-3, 2.8, 1024),
          {**row("T1", 64, 1e-3, None, 1024), "status": "diverged"}]
  grown = row("T1", 8, 1e-3, 2.75, 1024)
  grown["values"]["train.ramp.stages"] = [[256, 16, 0, 0.5]]
  cells = report._bst([*rows, grown])
  assert cells["T1"]["grown"] == [grown] and 8 in cells["T1"]["curve"]
  assert cells["T1"]["curve"][8] == (2.9, 1e-3)  # the grown run is not a fixed-batch point
  assert cells["T0"]["best"] == 8 and cells["T1"]["best"] == 16
  assert cells["T1"]["curve"][64][0] == float("inf")
  t = report._bst_transfer(cells)
  # B1 = 8 * 4^(2/3) = 20.16, run as 20; the stepsize 1e-3 * (20 / 8) / 4 follows it.
  assert t["batch"] == pytest.approx(8 * 4 ** (2 / 3))
  assert t["stepsize"] == pytest.approx(1e-3 * 20 / 8 / 4)
  assert t["nearest"] == 16 and t["measured"] == 16 and t["loss_at_nearest"] == 2.7


def test_the_bst_growing_schedules_follow_the_rule_stage_by_stage():
  small = {"best": 8, "curve": {8: (2.5, 1e-3), 16: (2.7, 1e-3)}, "examples": 64}
  large = {"best": 8, "curve": {8: (2.2, 1e-3), 16: (2.3, 1e-3)}, "examples": 256}
  transfer = {"small": "T0", "large": "T1", "batch": 8 * 4 ** (2 / 3)}  # 20.2
  (cell_a, batch_only), (cell_b, both) = protocols._bst_grown(small, large, transfer, 32)
  assert cell_a == cell_b == "T1"
  a, b = dict(batch_only), dict(both)
  # Batch only: B = 8 for T0's 64 examples, then 16 (20.2 down to a multiple of 8) at
  # 1e-3 * (16 / 8) * (64 / 256) = 5e-4, a factor 0.5 on the first stage's rate.
  assert a["train.ramp.stages"] == ((64, 16, 0, 0.5),) and a["train.steps"] == 8 + 12
  # With the length: 8 x 16 tokens until BS is half of T0's optimum by BS ~ t^(2/3), i.e. at
  # T0 / 2^1.5 = 724 tokens, 5 whole steps of 128 (640); the stepsize there is
  # 1e-3 * (1/2) * (2048 / 640) (Eq. 8 at that stage's end), then T0's and the rule's.
  t0, lr_short = 64 * 32, 1e-3 * 0.5 * 2048 / 640
  assert b["train.ramp.seq_len"] == 16 and b["train.ramp.unit"] == "tokens"
  assert b["optimizer.learning_rate"] == pytest.approx(lr_short)
  (start1, b1, s1, f1), (start2, b2, s2, f2) = b["train.ramp.stages"]
  assert (start1, b1, s1, start2, b2, s2) == (640, 8, 32, t0, 16, 32)
  assert f1 * lr_short == pytest.approx(1e-3) and f2 * lr_short == pytest.approx(5e-4)
  # Whole steps per stage: 5 short ones, ceil(1408 / 256) = 6 at T0's batch, then 12.
  assert b["train.steps"] == 5 + 6 + 12


def test_the_bst_constants_measured_on_a_tiny_run_and_their_report(tmp_path):
  from configs import bst as bst_config
  from experiments import bst_constants, report
  cell = next(c for name, c, _ in bst_config.get_config("smoke").sweep.cells if name == "T0")
  cell = cell.unlock()
  cell.train.global_batch, cell.train.steps = 8, 6
  cell.optimizer.learning_rate, cell.optimizer.schedule.warmup_steps = 1e-3, 0
  m = bst_constants.measure(cell, points=2, full_batch=12, probe_batch=4, draws=2, f_star=0.0)
  assert [p["step"] for p in m["points"]] == [0, 4]
  for key in ("mu", "smoothness", "rho_sigma", "rho", "sigma"):
    assert math.isfinite(m[key]) and m[key] > 0, key
  # mu is the least KL ratio ||grad f||_* / (f - f*) over the points, L the largest ratio.
  assert m["mu"] == min(p["grad_dual"] / p["loss"] for p in m["points"])
  assert m["smoothness"] == max(p["smoothness"] for p in m["points"])
  # The dual norm of the noise is radius-weighted (radii of 50 and 3000): far above Euclid's.
  assert m["rho"] > 1 and m["rho_sigma"] == pytest.approx(
      sorted(p["rho_sigma"] for p in m["points"])[0] / 2 + sorted(
          p["rho_sigma"] for p in m["points"])[1] / 2)
  m.update(cell="T0", learning_rate=1e-3)
  with open(tmp_path / "bst_constants.json", "w") as f:
    json.dump(m, f)
  cells = {"T0": {"examples": 64, "best": 8, "curve": {8: (2.5, 1e-3)}}}
  text = report._bst_constants_text(str(tmp_path), cells)
  from theory import batch_size
  r = batch_size.bst_regimes(64 * 32, mu=m["mu"], rho_sigma=m["rho_sigma"],
                             smoothness=m["smoothness"])
  assert text["optima"] == {"T0": pytest.approx(r["optimum"] / 32)}
  assert "## The constants, measured along T0's best run" in text["text"]
  with pytest.raises(ValueError, match="f_star=9.0 is not below any measured loss"):
    bst_constants.measure(cell, points=2, full_batch=12, probe_batch=4, draws=2, f_star=9.0)
