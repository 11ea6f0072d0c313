"""Bad input: one line on stderr, exit code 2, no traceback, nothing written to the workdir.

Most classes run ``training.cli.main`` in this process (cheap: no new JAX start); a few go
through ``train.py`` in a fresh process to show the same line and exit code there.
"""

import json
import os
import stat
import subprocess
import sys

import pytest
from conftest import ROOT, run_train

from training import cli

SMOKE = "configs/quickstart.py:smoke"


def _fails_cleanly(proc, *fragments):
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr
  assert "Traceback" not in proc.stderr
  for fragment in fragments:
    assert fragment in lines[0], lines[0]
  return lines[0]


def _main(capsys, config, workdir, *overrides) -> str:
  """``cli.main`` in this process: asserts exit code 2, one stderr line; returns that line."""
  code = cli.main(["train.py", f"--config={config}", f"--workdir={workdir}", *overrides])
  err = capsys.readouterr().err
  assert code == 2, err
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("optlab: error: "), err
  return lines[0]


def _untouched(path) -> None:
  assert not os.path.exists(path) or not os.listdir(path), os.listdir(path)


@pytest.fixture
def smoke():
  return str(ROOT / "configs/quickstart.py") + ":smoke"


@pytest.fixture
def owner_permissions(monkeypatch):
  """``os.access`` answers from the owner's permission bits, as for a user who is not root.

  Root may read and write anything, so under root (as on CI) the refusals of an unreadable
  config or an unwritable workdir could never be seen; elsewhere the kernel's answer stands.
  """
  if os.geteuid() != 0:
    return
  real_access = os.access
  owner_bits = {os.R_OK: stat.S_IRUSR, os.W_OK: stat.S_IWUSR, os.X_OK: stat.S_IXUSR}

  def access(path, mode, **kwargs):
    if not real_access(path, mode, **kwargs):
      return False
    st_mode = os.stat(path).st_mode
    return all(st_mode & bit for flag, bit in owner_bits.items() if mode & flag)

  monkeypatch.setattr(os, "access", access)


@pytest.mark.parametrize("override,fragments", [
    ("--config.train.log_every=0", ("train.log_every=0", ">= 1")),
    ("--config.train.checkpoint_every=0", ("train.checkpoint_every=0", ">= 1")),
    ("--config.train.global_batch=0", ("train.global_batch=0", ">= 1")),
    ("--config.train.steps=0", ("train.steps=0",)),
    ("--config.train.eval_batch=0", ("train.eval_batch=0",)),
    ("--config.train.num_microbatches=0", ("train.num_microbatches=0",)),
    ("--config.train.keep_checkpoints=0", ("train.keep_checkpoints=0",)),
    ("--config.mesh.fsdp=0", ("mesh.fsdp=0",)),
])
def test_zero(capsys, tmp_path, smoke, override, fragments):
  line = _main(capsys, smoke, tmp_path / "run", override)
  assert all(f in line for f in fragments), line
  _untouched(tmp_path / "run")


@pytest.mark.parametrize("override,fragments", [
    ("--config.seed=-1", ("seed=-1",)),
    ("--config.train.steps=-5", ("train.steps=-5",)),
    ("--config.train.eval_every=-1", ("train.eval_every=-1", "0 = never")),
    ("--config.train.divergence_loss=-1.0", ("train.divergence_loss=-1.0", "> 0")),
    ("--config.optimizer.learning_rate=-1.0", ("learning_rate=-1.0",)),
    ("--config.optimizer.weight_decay=-0.1", ("weight_decay=-0.1",)),
])
def test_negative(capsys, tmp_path, smoke, override, fragments):
  line = _main(capsys, smoke, tmp_path / "run", override)
  assert all(f in line for f in fragments), line
  _untouched(tmp_path / "run")


@pytest.mark.parametrize("override,fragments", [
    ("--config.train.steps=abc", ("config.train.steps", "abc")),
    ("--config.train.global_batch=1.5", ("config.train.global_batch", "1.5")),
    ("--config.tensorboard=maybe", ("config.tensorboard",)),
    ("--config.model.remat=sometimes", ("config.model.remat", "sometimes")),
    ("--config.optimizer.learning_rate=fast", ("config.optimizer.learning_rate", "fast")),
])
def test_wrong_type(capsys, tmp_path, smoke, override, fragments):
  line = _main(capsys, smoke, tmp_path / "run", override)
  assert all(f in line for f in fragments), line
  _untouched(tmp_path / "run")


@pytest.mark.parametrize("override,fragments", [
    ("--config.optimizer.kwargs.b1=1.5", ("kwargs.b1=1.5", "[0, 1)")),
    ("--config.distributed.cpu_collectives=nccl", ("cpu_collectives='nccl'", "gloo")),
    ("--config.data.seq_len=64", ("sequence length 64", "max_len=32")),
    ("--config.train.num_microbatches=3", ("global_batch=16", "num_microbatches=3")),
    ("--config.loss=hinge", ("unknown loss 'hinge'", "cross_entropy")),
    ("--config.optimizer.name=adamm", ("unknown optimizer 'adamm'", "adamw", "sgd")),
    ("--config.model.name=transformer", ("unknown model 'transformer'", "gpt", "resnet")),
    ("--config.train.step=5", ("unknown config key 'train.step'", "did you mean train.steps")),
    ("--config.optimiser.name=sgd", ("'optimiser.name'", "did you mean optimizer.name")),
    ("--config.dtype=float16", ("dtype='float16'", "valid are bfloat16, float32")),
    ("--config.param_dtype=bf16", ("param_dtype='bf16'", "valid are bfloat16, float32")),
    ("--config.profile_steps=20,10", ("profile_steps=20,10", "1 <= start < stop")),
    ("--config.profile_steps=10,21", ("profile_steps=10,21", "stop <= 20 (the run's steps)")),
    ("--config.profile_steps=0,5", ("profile_steps=0,5", "1 <= start")),
    ("--config.profile_steps=10-20", ("profile_steps='10-20'", "'start,stop'")),
])
def test_out_of_range_or_unknown(capsys, tmp_path, smoke, override, fragments):
  line = _main(capsys, smoke, tmp_path / "run", override)
  assert all(f in line for f in fragments), line
  _untouched(tmp_path / "run")


def test_missing_or_broken_config_file(capsys, tmp_path):
  assert "nope.py not found" in _main(capsys, tmp_path / "nope.py", tmp_path / "run")
  broken = tmp_path / "broken.py"
  broken.write_text("from configs.base import base_config\n\ndef get_config(arg=''):\n"
                    "  c = base_config(\n  return c\n")
  line = _main(capsys, broken, tmp_path / "run")
  assert f"{broken}:4" in line and "SyntaxError" in line, line
  failing = tmp_path / "failing.py"
  failing.write_text("def get_config(arg=''):\n  return undefined_name\n")
  line = _main(capsys, failing, tmp_path / "run")
  assert f"{failing}:2" in line and "NameError" in line and "undefined_name" in line, line
  empty = tmp_path / "empty.py"
  empty.write_text("x = 1\n")
  assert "defines no get_config" in _main(capsys, empty, tmp_path / "run")
  (tmp_path / "a_folder.py").mkdir()
  assert "a_folder.py not found" in _main(capsys, tmp_path / "a_folder.py", tmp_path / "run")
  assert "unknown config variant smok" in _main(
      capsys, str(ROOT / "configs/quickstart.py") + ":smok", tmp_path / "run")
  _untouched(tmp_path / "run")


def test_unreadable_config_file(capsys, tmp_path, owner_permissions):
  unreadable = tmp_path / "unreadable.py"
  unreadable.write_text("def get_config(arg=''):\n  raise SystemExit('read and run')\n")
  unreadable.chmod(0)
  line = _main(capsys, unreadable, tmp_path / "run")
  assert f"config file {unreadable} is not readable by this user" in line, line
  _untouched(tmp_path / "run")


def test_config_file_runs_once(capsys, tmp_path, monkeypatch):
  counter = tmp_path / "count"
  config = tmp_path / "counted.py"
  config.write_text(
      "import pathlib\nfrom configs.quickstart import get_config as quickstart\n\n"
      f"def get_config(arg=''):\n  p = pathlib.Path({str(counter)!r})\n"
      "  p.write_text(str(int(p.read_text()) + 1 if p.exists() else 1))\n"
      "  return quickstart('smoke')\n")
  monkeypatch.syspath_prepend(str(ROOT))
  parsed, workdir, _ = cli.parse(["train.py", f"--config={config}", f"--workdir={tmp_path}",
                                  "--config.train.steps=7"])
  assert parsed.train.steps == 7 and workdir == str(tmp_path)
  assert counter.read_text() == "1"


def test_unusable_workdir(capsys, tmp_path, smoke, owner_permissions):
  a_file = tmp_path / "a_file"
  a_file.write_text("not a folder")
  assert "is a file, not a folder" in _main(capsys, smoke, a_file)
  assert "lies below" in _main(capsys, smoke, a_file / "run")
  assert a_file.read_text() == "not a folder"
  locked = tmp_path / "locked"
  locked.mkdir()
  locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
  line = _main(capsys, smoke, locked)
  assert f"--workdir={locked} is not writable by this user" in line, line
  line = _main(capsys, smoke, locked / "run")
  assert f"--workdir={locked / 'run'} cannot be created: {locked} is not writable" in line, line
  assert os.listdir(locked) == []
  assert "missing --workdir" in _main(capsys, smoke, "")


@pytest.mark.slow  # one run of train.py
def test_workdir_of_another_config_is_refused_unless_asked(capsys, tmp_path, smoke):
  (tmp_path / "config.json").write_text(
      cli.load_config(smoke).to_json_best_effort().replace('"steps": 20', '"steps": 4'))
  line = _main(capsys, smoke, tmp_path, "--config.train.steps=4",
               "--config.optimizer.learning_rate=0.5")
  assert "different config" in line and "optimizer.learning_rate: 0.003 -> 0.5" in line
  assert "--allow_config_change" in line
  assert os.listdir(tmp_path) == ["config.json"]
  proc = run_train(SMOKE, tmp_path, "--config.train.steps=6",
                   "--config.optimizer.learning_rate=0.5", "--allow_config_change")
  assert proc.returncode == 0
  assert "step 6/6 (100%)" in proc.stdout  # progress lines when the output is not a terminal
  assert f"results in {tmp_path / 'summary.json'}" in proc.stdout


@pytest.mark.slow  # train.py in a fresh process
@pytest.mark.parametrize("overrides,devices,fragments", [
    (("--config.train.global_batch=12",), 8, ("global batch 12", "8 data-parallel devices")),
    (("--config.train.log_every=0",), 1, ("train.log_every=0",)),
])
def test_train_py_gives_the_same_line_and_exit_code(tmp_path, overrides, devices, fragments):
  proc = run_train(SMOKE, tmp_path / "run", *overrides, devices=devices, check=False)
  _fails_cleanly(proc, *fragments)
  _untouched(tmp_path / "run")


def test_missing_tfds_dataset_names_dataset_folder_and_fix(capsys, tmp_path):
  empty = tmp_path / "tfds"
  empty.mkdir()
  line = _main(capsys, str(ROOT / "configs/digits_mlp.py") + ":mnist,smoke", tmp_path / "run",
               f"--config.data.data_dir={empty}")
  assert "'mnist'" in line and str(empty / "mnist") in line and "tfds build mnist" in line
  _untouched(tmp_path / "run")


def test_a_mistyped_section_names_the_top_level_keys():
  from configs import quickstart
  with pytest.raises(cli.UsageError) as e:
    cli.check_overrides(quickstart.get_config("smoke"), ["train.py", "--config.trian.steps=3"])
  message = str(e.value)
  assert "did you mean train.steps" in message and "top-level keys: data," in message, message
  assert "keys here: )" not in message


def test_a_workdir_from_before_the_precision_keys_resumes_and_profiling_may_change(tmp_path):
  from configs import quickstart
  from training import workdir as workdir_lib
  config = quickstart.get_config("smoke")
  old = json.loads(config.to_json_best_effort())
  for key in ("dtype", "param_dtype", "profile_steps"):
    del old[key]  # a config.json written before these keys existed
  del old["model"]["remat"]
  (tmp_path / "config.json").write_text(json.dumps(old))
  workdir_lib.check_config(config, str(tmp_path), False)  # reads as the same run
  with config.unlocked():
    config.profile_steps = "2,3"  # watching the run does not change it
  workdir_lib.check_config(config, str(tmp_path), False)
  with config.unlocked():
    config.dtype = "bfloat16"  # but computing in another precision does
  with pytest.raises(ValueError, match="dtype: 'float32' -> 'bfloat16'"):
    workdir_lib.check_config(config, str(tmp_path), False)


@pytest.mark.parametrize("preset,expected", [({}, "1"), ({"OPENBLAS_NUM_THREADS": "3"}, "3")])
def test_launch_env_fills_in_only_what_the_user_left_unset(tmp_path, preset, expected):
  script = tmp_path / "launch.py"
  script.write_text(
      "import os, sys\n"
      f"sys.path.insert(0, {str(ROOT)!r})\n"
      "import train\n"
      "train.reexec_with_launch_env()\n"
      "print(os.environ['OPENBLAS_NUM_THREADS'], os.environ['GLIBC_TUNABLES'], sys.argv[1:])\n")
  env = {k: v for k, v in os.environ.items()
         if k not in ("OPENBLAS_NUM_THREADS", "GLIBC_TUNABLES", "OPTLAB_NO_REEXEC")}
  out = subprocess.run([sys.executable, str(script), "--a=1"], env={**env, **preset},
                       capture_output=True, text=True, check=True).stdout.split(" ", 1)
  assert out[0] == expected
  assert out[1].startswith("glibc.malloc.arena_max=1") and out[1].rstrip().endswith("['--a=1']")
