"""Bad input: one line on stderr, exit code 2, no traceback, nothing trained or saved."""

import pytest
from conftest import run_train

SMOKE = "configs/quickstart.py:smoke"


def _fails_cleanly(proc, *fragments):
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr
  assert "Traceback" not in proc.stderr
  for fragment in fragments:
    assert fragment in lines[0], lines[0]
  return lines[0]


@pytest.mark.parametrize("overrides,devices,fragments", [
    (("--config.train.step=5",), 1,
     ("unknown config key 'train.step'", "did you mean train.steps")),
    (("--config.optimiser.name=sgd",), 1, ("'optimiser.name'", "did you mean optimizer.name")),
    (("--config.train.steps=abc",), 1, ("abc",)),
    (("--config.optimizer.name=adamm",), 1, ("unknown optimizer 'adamm'", "adamw", "sgd")),
    (("--config.model.name=transformer",), 1,
     ("unknown model 'transformer'", "gpt", "resnet", "mlp")),
    (("--config.train.global_batch=12",), 8, ("global batch 12", "8 data-parallel devices")),
    (("--config.optimizer.learning_rate=-1.0",), 1, ("learning_rate=-1.0",)),
    (("--config.data.seq_len=64",), 1, ("sequence length 64", "max_len=32")),
])
def test_bad_override_is_one_clear_line(tmp_path, overrides, devices, fragments):
  proc = run_train(SMOKE, tmp_path / "run", *overrides, devices=devices, check=False)
  _fails_cleanly(proc, *fragments)
  assert not (tmp_path / "run" / "checkpoints").exists()


def test_missing_tfds_dataset_names_dataset_folder_and_fix(tmp_path):
  empty = tmp_path / "tfds"
  empty.mkdir()
  proc = run_train("configs/digits_mlp.py:mnist,smoke", tmp_path / "run",
                   f"--config.data.data_dir={empty}", check=False)
  _fails_cleanly(proc, "'mnist'", str(empty / "mnist"), "tfds build mnist")


def test_workdir_of_another_config_is_refused_unless_asked(tmp_path):
  run_train(SMOKE, tmp_path, "--config.train.steps=4")
  proc = run_train(SMOKE, tmp_path, "--config.train.steps=4",
                   "--config.optimizer.learning_rate=0.5", check=False)
  _fails_cleanly(proc, "different config", "optimizer.learning_rate: 0.003 -> 0.5",
                 "--allow_config_change")
  proc = run_train(SMOKE, tmp_path, "--config.train.steps=6",
                   "--config.optimizer.learning_rate=0.5", "--allow_config_change")
  assert proc.returncode == 0


def test_missing_config_file_and_unknown_variant(tmp_path):
  proc = run_train("configs/nope.py", tmp_path, check=False)
  _fails_cleanly(proc, "configs/nope.py not found")
  proc = run_train("configs/quickstart.py:smok", tmp_path, check=False)
  _fails_cleanly(proc, "unknown config variant smok", "valid are smoke")
