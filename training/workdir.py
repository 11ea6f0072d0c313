"""The run directory: checks before anything is written, and a lock held while a run trains.

A workdir holds one run. ``check`` refuses, before anything is compiled or written, a path that
cannot become a folder, one this process cannot write, and one that holds a run of another
config. ``Lock`` keeps a second process off a workdir while the first lives: it is an advisory
``flock`` on ``DIR/lock``, which the kernel drops when its holder exits, however it exits, so a
killed run leaves nothing stuck.
"""

import errno
import fcntl
import json
import os


class WorkdirBusy(ValueError):
  """Another live process is training in this workdir."""


def _flatten(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def is_local(workdir: str) -> bool:
  """False for a bucket (``gs://...``), which orbax writes through its own file system layer."""
  return "://" not in workdir


def check_path(workdir: str) -> None:
  """Refuses a workdir that is a file, lies below a file, or lies where this process can't write."""
  if not is_local(workdir):
    return
  path = os.path.abspath(workdir)
  if os.path.exists(path):
    if not os.path.isdir(path):
      raise ValueError(f"--workdir={workdir} is a file, not a folder: give a folder path")
    if not os.access(path, os.W_OK | os.X_OK):
      raise ValueError(f"--workdir={workdir} is not writable by this user: give another folder")
    return
  parent = os.path.dirname(path)
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise ValueError(f"--workdir={workdir} lies below {parent}, which is a file, not a folder: "
                     f"give a path under a folder")
  if not os.access(parent, os.W_OK | os.X_OK):
    raise ValueError(f"--workdir={workdir} cannot be created: {parent} is not writable by this "
                     f"user; give another folder")


# Keys that watch a run without changing it: a resumed run may set them differently.
OBSERVING = frozenset({"profile_steps"})
# Keys added to the config after runs were written, with the value that behaves as before: a
# config.json without one of them reads as having that value.
ADDED = {"dtype": "float32", "param_dtype": "float32", "model.remat": False,
         "profile_steps": ""}


def check_config(config, workdir: str, allow_config_change: bool) -> None:
  """Refuses a workdir whose ``config.json`` differs from ``config``, naming what changed
  (``OBSERVING`` keys aside; a key of ``ADDED`` missing there reads as its old behaviour)."""
  path = os.path.join(workdir, "config.json")
  if allow_config_change or not os.path.exists(path):
    return
  try:
    with open(path) as f:
      old = _flatten(json.load(f))
  except (OSError, ValueError) as e:
    raise ValueError(f"{path} cannot be read ({type(e).__name__}); use a new --workdir or pass "
                     f"--allow_config_change to continue the run with this config") from None
  new = _flatten(json.loads(config.to_json_best_effort()))
  old = {**{k: v for k, v in ADDED.items() if k in new}, **old}
  changed = sorted(k for k in old.keys() | new.keys()
                   if old.get(k) != new.get(k) and k not in OBSERVING)
  if changed:
    shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:4])
    more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
    raise ValueError(f"workdir {workdir} holds a run of a different config ({shown}{more}); "
                     f"use a new --workdir, or pass --allow_config_change to continue it")


class Lock:
  """``with Lock(workdir):`` holds ``DIR/lock`` or raises ``WorkdirBusy`` naming the holder.

  ``name``: another lock file in ``DIR``, for holders that may share it (a sweep's shards).
  Only the first process of a multi-host run takes it (the others share its workdir); a bucket
  workdir has no lock (``flock`` does not reach across hosts).
  """

  def __init__(self, workdir: str, *, name: str = "lock", enabled: bool = True):
    self.path = os.path.join(workdir, name)
    self.enabled = enabled and is_local(workdir)
    self._fd = None

  def __enter__(self):
    if not self.enabled:
      return self
    os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
      os.close(fd)
      if e.errno in (errno.EAGAIN, errno.EACCES):
        raise WorkdirBusy(
            f"workdir {os.path.dirname(self.path)} is in use by a live run ({holder}): wait for "
            f"it to end, stop it, or give another --workdir") from None
      raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}\n".encode(), 0)
    self._fd = fd
    return self

  def __exit__(self, *exc):
    if self._fd is not None:
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None
