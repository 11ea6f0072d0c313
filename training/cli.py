"""The command line behind ``train.py``: flags -> config -> ``training.run``.

Bad input (a config file that is missing or does not run, an unknown config key, a bad value,
an unknown model or optimizer, a batch the devices cannot split, missing data, a workdir that
cannot be one or holds another run, a workdir in use by a live run) ends with one line on
stderr and exit code 2, before anything is compiled or written. A fault while training (the
disk full at a checkpoint, no readable checkpoint to resume) ends with one line and exit code 3,
the workdir resumable.
"""

import difflib
import importlib.util
import os
import sys
import traceback

from absl import flags, logging
from ml_collections import config_flags

EXIT_DIVERGED = 1
EXIT_USAGE = 2
EXIT_FAULT = 3


class UsageError(ValueError):
  pass


def flat_keys(config, prefix: str = "") -> list[str]:
  """Every key of ``config``, dotted, groups and their keys alike."""
  keys = []
  for key, value in config.items():
    keys.append(prefix + key)
    if hasattr(value, "items"):
      keys.extend(flat_keys(value, f"{prefix}{key}."))
  return keys


def _where_in(path: str, e: BaseException) -> str:
  """``path:line`` of the innermost frame of ``e`` in the config file (or its imports)."""
  if isinstance(e, SyntaxError) and e.lineno:
    return f"{e.filename or path}:{e.lineno}"
  frames = traceback.extract_tb(e.__traceback__)
  inside = [f for f in frames if os.path.abspath(f.filename) == os.path.abspath(path)]
  frame = (inside or frames or [None])[-1]
  return f"{frame.filename}:{frame.lineno}" if frame else path


def load_config(spec: str):
  """Runs ``path.py``'s ``get_config(arg)`` for ``spec = path.py[:arg]``, once.

  A file that is missing, unreadable, or raises (a syntax error, a bad variant) is a
  ``UsageError`` naming the file and line.
  """
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise UsageError(f"config file {path} not found: give --config=configs/<name>.py[:arg]")
  if not os.access(path, os.R_OK):
    raise UsageError(f"config file {path} is not readable by this user")
  module_spec = importlib.util.spec_from_file_location("_optlab_config", path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
      raise UsageError(f"config file {path} defines no get_config(arg)")
    return module.get_config(arg) if arg else module.get_config()
  except UsageError:
    raise
  except ValueError as e:  # the config's own refusal, e.g. an unknown variant
    raise UsageError(f"{spec}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
  except Exception as e:  # noqa: BLE001 -- a config that does not run is bad input
    message = e.msg if isinstance(e, SyntaxError) else (str(e).splitlines() or [""])[0]
    raise UsageError(f"config file {spec} fails at {_where_in(path, e)}: "
                     f"{type(e).__name__}: {message}") from None


def _config_spec(argv: list[str]) -> tuple[str, list[str]]:
  """The ``--config`` value and ``argv`` without it."""
  rest, spec = [], None
  i = 0
  while i < len(argv):
    a = argv[i]
    if a.startswith("--config="):
      spec = a.split("=", 1)[1]
    elif a == "--config" and i + 1 < len(argv):
      spec, i = argv[i + 1], i + 1
    else:
      rest.append(a)
    i += 1
  if not spec:
    raise UsageError("missing --config=configs/<name>.py[:arg]")
  return spec, rest


def check_overrides(config, argv: list[str]) -> None:
  """Refuses ``--config.<key>`` overrides of keys the config does not have, naming them."""
  keys = flat_keys(config)
  for arg in argv:
    if not arg.startswith("--config."):
      continue
    key = arg[len("--config."):].split("=", 1)[0]
    if key not in keys:
      close = difflib.get_close_matches(key, keys, n=3, cutoff=0.6)
      hint = f"; did you mean {' or '.join(close)}?" if close else ""
      parent = key.rpartition(".")[0]
      siblings = [k for k in keys if k.rpartition(".")[0] == parent]
      # A mistyped section has no keys of its own: name the top-level sections instead.
      listed = (f"keys here: {', '.join(siblings)}" if siblings else
                f"top-level keys: {', '.join(sorted({k.partition('.')[0] for k in keys}))}")
      raise UsageError(f"unknown config key {key!r}{hint} ({listed})")


def parse(argv: list[str]):
  """``(config, workdir, allow_config_change)`` from the command line; ``UsageError`` if bad.

  The config file runs once; ``--config.a.b=V`` overrides are applied to its (locked) result.
  The flags live in their own ``FlagValues``, so parsing twice in one process is safe.
  """
  spec, rest = _config_spec(argv)
  config = load_config(spec)
  check_overrides(config, rest)
  fv = flags.FlagValues()
  workdir = flags.DEFINE_string("workdir", None, "run directory (resumed if it holds a run)",
                                flag_values=fv)
  allow_config_change = flags.DEFINE_bool(
      "allow_config_change", False, "continue a run in --workdir although its config differs",
      flag_values=fv)
  holder = config_flags.DEFINE_config_dict("config", config, "experiment config",
                                           flag_values=fv, lock_config=True, sys_argv=rest)
  fv(rest)
  if not workdir.value:
    raise UsageError("missing --workdir=DIR (where metrics, checkpoints and reports go)")
  return holder.value, workdir.value, allow_config_change.value


def _error(e: BaseException, code: int) -> int:
  text = str(e).strip()
  print(f"optlab: error: {text.splitlines()[0] if text else type(e).__name__}", file=sys.stderr)
  return code


def _where_results_are(workdir: str) -> str:
  shown = [name for name in ("summary.json", "metrics.jsonl", os.path.join("report", "loss.png"))
           if os.path.exists(os.path.join(workdir, name))]
  return ", ".join(os.path.join(workdir, name) for name in shown)


def _sweep(training, config, workdir: str, allow_config_change: bool, protocols: dict) -> int:
  """A config that declares a sweep: every run checked, then trained (``training/sweep.py``);
  one that names a protocol (``config.protocol.name``) is run by it, from ``protocols``."""
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  protocol = config.get("protocol", {}).get("name", "")
  try:
    if protocol and protocol not in protocols:
      raise ValueError(f"protocol.name={protocol!r} is not one of {', '.join(protocols)}: "
                       f"run protocols through train.py")
    shard = training.sweep.parse_shard(config.sweep.shard)
    mode, vmap_size = training.sweep.sweep_mode(config)
    prepared = training.sweep.prepare_sweep(config, workdir, shard=shard,
                                            allow_config_change=allow_config_change)
  except ValueError as e:
    return _error(e, EXIT_USAGE)
  finally:
    logging.set_verbosity(verbosity)
  try:
    if protocol:
      module, _, function = protocols[protocol].partition(":")
      run_protocol = getattr(importlib.import_module(module), function)
      report = run_protocol(config, workdir, prepared=prepared, shard=shard,
                            allow_config_change=allow_config_change)
      print(f"optlab: {protocol} protocol {'done; report in ' + report if report else 'stopped'}"
            f"; results in {workdir}", file=sys.stdout)
      return 0
    rows = training.sweep.execute_sweep(prepared, workdir, shard=shard, mode=mode,
                                        vmap_size=vmap_size)
  except ValueError as e:  # a later stage's run that does not build
    return _error(e, EXIT_USAGE)
  except training.WorkdirBusy as e:
    return _error(e, EXIT_USAGE)
  except training.CheckpointError as e:
    return _error(e, EXIT_FAULT)
  import jax
  if jax.process_index() == 0:
    diverged = sum(r["status"] == "diverged" for r in rows)
    left = len(prepared) - len(rows)
    print(f"optlab: sweep of {len(prepared)} runs: {len(rows) - diverged} ok, {diverged} "
          f"diverged{f', {left} not yet run' if left else ''}; results in "
          f"{training.sweep.results_path(workdir, shard)}", file=sys.stdout)
  return 0


def main(argv: list[str], protocols: dict | None = None) -> int:
  """``train.py``'s exit code for ``argv``; ``protocols`` maps a protocol's name to its
  ``"module:function"`` (``train.py`` names ``experiments.protocols``; ``training`` imports no
  experiment)."""
  try:
    config, workdir, allow_config_change = parse(argv)
  except (flags.Error, UsageError) as e:
    return _error(e, EXIT_USAGE)

  import training  # after flag parsing: importing JAX is the slow part

  if training.sweep.declared(config):
    return _sweep(training, config, workdir, allow_config_change, protocols or {})
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)  # one line on bad input, not library warnings
  try:
    setup = training.prepare(config, workdir, allow_config_change=allow_config_change)
  except ValueError as e:
    return _error(e, EXIT_USAGE)
  finally:
    logging.set_verbosity(verbosity)
  try:
    summary = training.execute(setup)
  except training.WorkdirBusy as e:
    return _error(e, EXIT_USAGE)
  except training.CheckpointError as e:
    return _error(e, EXIT_FAULT)
  import jax
  if jax.process_index() == 0:
    print(f"optlab: {summary['status']} at step {summary['steps']}; results in "
          f"{_where_results_are(workdir)}", file=sys.stdout)
  if summary["status"] == "diverged":
    print(f"optlab: run diverged by step {summary['steps']} (loss {summary['last_loss']}); "
          f"see {os.path.join(workdir, 'summary.json')}", file=sys.stderr)
    return EXIT_DIVERGED
  return 0
