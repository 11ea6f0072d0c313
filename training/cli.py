"""The command line behind ``train.py``: flags -> config -> ``training.run``.

Bad input (an unknown config key, a bad value, an unknown model or optimizer, a batch the
devices cannot split, missing data, a workdir of another run) ends with one line on stderr and
exit code 2, before anything is compiled.
"""

import difflib
import importlib.util
import os
import sys

from absl import flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "experiment config: path/to/file.py[:arg]", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory (resumed if it holds a run)")
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False, "continue a run in --workdir although its config differs")

EXIT_USAGE = 2
EXIT_DIVERGED = 1


class UsageError(ValueError):
  pass


def _flat_keys(config, prefix: str = "") -> list[str]:
  keys = []
  for key, value in config.items():
    keys.append(prefix + key)
    if hasattr(value, "items"):
      keys.extend(_flat_keys(value, f"{prefix}{key}."))
  return keys


def _load_config(spec: str):
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise UsageError(f"config file {path} not found: give --config=configs/<name>.py[:arg]")
  module_spec = importlib.util.spec_from_file_location("_optlab_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  try:
    return module.get_config(arg) if arg else module.get_config()
  except ValueError as e:
    raise UsageError(f"{spec}: {e}") from None


def check_overrides(argv: list[str]) -> None:
  """Refuses ``--config.<key>`` overrides of keys the config does not have, naming them."""
  spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  if spec is None:
    for i, a in enumerate(argv[:-1]):
      if a == "--config":
        spec = argv[i + 1]
  if spec is None:
    raise UsageError("missing --config=configs/<name>.py[:arg]")
  keys = _flat_keys(_load_config(spec))
  for arg in argv:
    if not arg.startswith("--config."):
      continue
    key = arg[len("--config."):].split("=", 1)[0]
    if key not in keys:
      close = difflib.get_close_matches(key, keys, n=3, cutoff=0.6)
      hint = f"; did you mean {' or '.join(close)}?" if close else ""
      parent = key.rpartition(".")[0]
      siblings = [k for k in keys if k.rpartition(".")[0] == parent]
      raise UsageError(f"unknown config key {key!r}{hint} (keys here: {', '.join(siblings)})")


def main(argv: list[str]) -> int:
  try:
    check_overrides(argv)
    flags.FLAGS(argv)
    if not _WORKDIR.value:
      raise UsageError("missing --workdir=DIR (where metrics, checkpoints and reports go)")
  except (flags.Error, UsageError) as e:
    print(f"optlab: error: {str(e).splitlines()[0]}", file=sys.stderr)
    return EXIT_USAGE

  import training  # after flag parsing: importing JAX is the slow part

  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)  # one line on bad input, not library warnings
  try:
    setup = training.prepare(_CONFIG.value, _WORKDIR.value,
                             allow_config_change=_ALLOW_CONFIG_CHANGE.value)
  except ValueError as e:
    print(f"optlab: error: {str(e).splitlines()[0]}", file=sys.stderr)
    return EXIT_USAGE
  finally:
    logging.set_verbosity(verbosity)
  summary = training.execute(setup)
  if summary["status"] == "diverged":
    print(f"optlab: run diverged by step {summary['steps']} (loss {summary['last_loss']}); "
          f"see {os.path.join(_WORKDIR.value, 'summary.json')}", file=sys.stderr)
    return EXIT_DIVERGED
  return 0
