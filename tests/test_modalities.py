"""configs/modalities.py: every modality through train.py, and its bad input."""

import pytest
from conftest import ROOT, read_metrics, read_summary, run_train

from configs import modalities
from training import cli


@pytest.mark.slow  # train.py in a fresh process per modality
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
def test_unknown_modality_or_architecture_lists_the_valid_ones(arg, fragments, tmp_path,
                                                             capsys):
  code = cli.main(["train.py", f"--config={ROOT / 'configs/modalities.py'}:{arg}",
                   f"--workdir={tmp_path / 'run'}"])
  lines = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(lines) == 1
  for fragment in fragments:
    assert fragment in lines[0]
  assert not (tmp_path / "run").exists()


def _settings(tree):
  """Lines of every ``c.<key> = <value>`` and of every argument of set_optimizer / set_budget."""
  import ast
  for node in ast.walk(tree):
    if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Attribute):
      root = node.targets[0]
      while isinstance(root, ast.Attribute):
        root = root.value
      section = isinstance(node.value, ast.Call) and ast.unparse(node.value.func).endswith(
          "ConfigDict")  # a new section of keys, not a value
      if isinstance(root, ast.Name) and root.id == "c" and not section:
        yield node.end_lineno
    elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
          and node.func.id in ("set_optimizer", "set_budget", "set_adam", "set_protocol_run")):
      yield from (k.value.end_lineno for k in node.keywords)
      yield from (a.end_lineno for a in node.args[1:])  # the method's name


def test_every_hyperparameter_in_every_config_file_has_a_comment(root):
  import ast
  for path in sorted((root / "configs").glob("*.py")):
    lines = path.read_text().splitlines()
    numbers = set(_settings(ast.parse("\n".join(lines))))
    bare = [f"{path.name}:{n}: {lines[n - 1].strip()}" for n in sorted(numbers)
            if "  # " not in lines[n - 1]]
    assert not bare, "\n".join(bare)
    if path.name not in ("__init__.py", "modalities.py"):
      assert numbers, path.name  # the walk found the settings
