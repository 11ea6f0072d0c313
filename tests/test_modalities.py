"""configs/modalities.py: every modality through train.py, and its bad input."""

import pytest
from conftest import read_metrics, read_summary, run_train

from configs import modalities


@pytest.mark.parametrize("pair", ["language,gated_conv", "vision,cnn", "genomics,cnn",
                                  "graphs,gnn", "theory,linear"])
def test_each_modality_trains_through_the_command_line(pair, tmp_path):
  run_train(f"configs/modalities.py:{pair},smoke", tmp_path)
  losses = [r["loss"] for r in read_metrics(tmp_path)]
  assert read_summary(tmp_path)["status"] == "ok"
  k = max(1, len(losses) // 4)
  assert sum(losses[-k:]) / k < sum(losses[:k]) / k


def test_every_pair_has_a_smoke_and_an_sgd_config():
  for modality in modalities.MODALITIES:
    module = __import__(f"configs._{modality}", fromlist=["ARCHS"])
    for arch in module.ARCHS:
      adam = modalities.get_config(f"{modality},{arch},smoke")
      sgd = modalities.get_config(f"{modality},{arch},smoke,sgd")
      assert adam.optimizer.name == "adam" and sgd.optimizer.name == "sgd"
      assert sgd.optimizer.learning_rate == module.SGD_LEARNING_RATE[arch]
      assert adam.model.name and adam.data.name


@pytest.mark.parametrize("arg,fragments", [
    ("speech,gpt,smoke", ("unknown modality 'speech'", "language, vision, genomics, graphs")),
    ("vision,lstm,smoke", ("unknown architecture 'lstm'", "mlp, cnn, resnet, vit")),
    ("language,gpt,zipf,uniform", ("choose one data set",)),
])
def test_unknown_modality_or_architecture_lists_the_valid_ones(arg, fragments, tmp_path):
  proc = run_train(f"configs/modalities.py:{arg}", tmp_path, check=False)
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "Traceback" not in proc.stderr
  for fragment in fragments:
    assert fragment in lines[0]
