"""Orbax checkpoints of the train state and the data position, with the faults a long run meets.

- A damaged newest checkpoint is reported in one line, moved to ``DIR/checkpoints_damaged/``
  (kept, never deleted) and the previous one is used.
- If every checkpoint is damaged the run refuses to start (``CheckpointError``) rather than
  silently begin again at step 0 in a workdir that holds a longer run.
- A save that fails (the disk full, above all) raises ``CheckpointError`` with one line naming
  the workdir and the space needed; orbax writes into a temporary folder and renames it when
  complete, so the previous checkpoint is intact, and the partial folder is removed.
- A run killed while writing leaves such a temporary folder: it is never read, and is cleared
  when the next run on the workdir starts.
- While a run lasts, ``quiet_writer_failures`` keeps the writer threads of orbax and tensorstore
  from printing their own reports of a full disk (hundreds of traceback lines): the one line
  above says it.
"""

import contextlib
import errno
import logging as py_logging
import os
import shutil
import sys
import threading
import warnings

import jax
import orbax.checkpoint as ocp
from absl import logging


class CheckpointError(RuntimeError):
  """A checkpoint could not be written or none could be read; the message is one line."""


@contextlib.contextmanager
def _quiet():
  """Silences orbax's own log lines while probing checkpoints: a damaged one gets one line."""
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.FATAL)
  try:
    yield
  finally:
    logging.set_verbosity(verbosity)


def _causes(e: BaseException):
  """``e`` and every exception it was raised from, in exception groups too."""
  seen, todo = set(), [e]
  while todo:
    e = todo.pop()
    if e is None or id(e) in seen:
      continue
    seen.add(id(e))
    yield e
    todo.extend([e.__cause__, e.__context__, *getattr(e, "exceptions", ())])


def is_disk_full(e: BaseException) -> bool:
  for cause in _causes(e):
    if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
      return True
    text = str(cause)
    if "No space left on device" in text or "ENOSPC" in text or "Disk quota exceeded" in text:
      return True
  return False


def _writer_noise(e: BaseException | None) -> bool:
  """A writer thread's report of a full disk, or what its closed event loop raises after it."""
  if e is None:
    return False
  closed_loop = isinstance(e, RuntimeError) and "Event loop is closed" in str(e)
  return closed_loop or is_disk_full(e)


class _WriterNoise(py_logging.Filter):
  """Drops the reports of a failed write; remembers that it saw one."""

  def __init__(self):
    super().__init__()
    self.seen = False

  def drop(self, e: BaseException | None) -> bool:
    self.seen = self.seen or _writer_noise(e)
    return _writer_noise(e)

  def filter(self, record: py_logging.LogRecord) -> bool:
    text = record.getMessage()
    if ("No space left on device" in text or "RESOURCE_EXHAUSTED" in text
        or (record.exc_info and _writer_noise(record.exc_info[1]))):
      self.seen = True
      return False
    return True


@contextlib.contextmanager
def quiet_writer_failures():
  """Drops the writer threads' reports of a full disk: orbax's and asyncio's log lines, thread
  tracebacks and the exceptions tensorstore's callbacks raise on the closed event loop.

  ``Checkpointer`` turns the failure into one ``CheckpointError`` line; every other exception
  and log line is printed as before. Once a failed write was seen the filters stay for the rest
  of the process: its abandoned writer tasks report again when they are collected at exit.
  """
  hooks = sys.excepthook, threading.excepthook, sys.unraisablehook
  noise = _WriterNoise()

  def excepthook(kind, value, traceback):
    if not noise.drop(value):
      hooks[0](kind, value, traceback)

  def thread_excepthook(args):
    if not noise.drop(args.exc_value):
      hooks[1](args)

  def unraisablehook(args):
    if not noise.drop(args.exc_value):
      hooks[2](args)

  loggers = [py_logging.getLogger(name) for name in ("absl", "asyncio")]
  sys.excepthook, threading.excepthook, sys.unraisablehook = (excepthook, thread_excepthook,
                                                              unraisablehook)
  for logger in loggers:
    logger.addFilter(noise)
  try:
    yield
  finally:
    if noise.seen:
      warnings.filterwarnings("ignore", message="coroutine .* was never awaited")
    else:
      sys.excepthook, threading.excepthook, sys.unraisablehook = hooks
      for logger in loggers:
        logger.removeFilter(noise)


def _one_line(e: BaseException) -> str:
  text = str(e).strip()
  return f"{type(e).__name__}: {text.splitlines()[0][:200]}" if text else type(e).__name__


def _free_destination(folder: str, name: str) -> str:
  """``folder/name``, or ``folder/name.1``, ``.2``... if taken: a second move never nests."""
  path, n = os.path.join(folder, name), 0
  while os.path.exists(path):
    n += 1
    path = os.path.join(folder, f"{name}.{n}")
  return path


class Checkpointer:
  """Saves ``{state, meta}`` under ``DIR/checkpoints``; restores the newest readable one.

  ``state_bytes`` (the train state's size) sizes the message when the disk fills up.
  """

  def __init__(self, workdir: str, *, max_to_keep: int, state_bytes: int = 0):
    self.workdir = workdir
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.damaged_dir = os.path.abspath(os.path.join(workdir, "checkpoints_damaged"))
    self._state_bytes = state_bytes
    self._pending_step = None
    with _quiet():
      self._manager = ocp.CheckpointManager(
          self.directory,
          options=ocp.CheckpointManagerOptions(
              max_to_keep=max_to_keep, create=True,
              # Folders left by a run killed mid-write; the workdir lock says no one writes now.
              cleanup_tmp_directories=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def _remove_partial(self) -> None:
    if jax.process_index() != 0 or not os.path.isdir(self.directory):
      return
    for name in os.listdir(self.directory):
      if ".orbax-checkpoint-tmp" in name:
        shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

  def _intact(self, step: int | None = None) -> str:
    with contextlib.suppress(Exception), _quiet():
      self._manager.reload()
    previous = [s for s in self._manager.all_steps() if s != step]
    return (f"the checkpoint at step {max(previous)} is intact" if previous
            else "no checkpoint was saved before it")

  def _needed_bytes(self) -> int:
    # Checkpoints of trained float arrays barely compress (zstd on random mantissas), so the
    # state's size is what a new one takes; 1 MiB more covers orbax's metadata files.
    return self._state_bytes + 2**20

  def disk_full_error(self, what: str, step: int | None = None) -> CheckpointError:
    """The one-line report of a full disk while writing ``what`` (checkpoint ``step``)."""
    free = shutil.disk_usage(self.workdir).free if os.path.isdir(self.workdir) else 0
    return CheckpointError(
        f"no space left on the device of {self.workdir} for {what} (a "
        f"checkpoint needs about {self._needed_bytes() / 2**20:.1f} MiB, "
        f"{free / 2**20:.1f} MiB are free); {self._intact(step)}: free some space and run the "
        f"same command to resume")

  def _failed(self, step: int, e: BaseException) -> CheckpointError:
    self._remove_partial()
    if is_disk_full(e):
      return self.disk_full_error(f"the checkpoint at step {step}", step)
    intact = self._intact(step)
    return CheckpointError(f"the checkpoint at step {step} could not be saved in "
                           f"{self.directory} ({_one_line(e)}); {intact}: fix the cause and run "
                           f"the same command to resume")

  def save(self, step: int, state, meta: dict) -> None:
    """Starts writing checkpoint ``step`` (asynchronously); reports the previous one's failure."""
    self.wait()
    if step in self._manager.all_steps():
      return
    # Refused before writing, when it cannot fit: a half-written checkpoint costs the time of
    # writing it, and orbax's writer threads report a full disk in many lines.
    if shutil.disk_usage(self.directory).free < self._needed_bytes():
      raise self.disk_full_error(f"the checkpoint at step {step}", step)
    try:
      self._manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
    except Exception as e:  # noqa: BLE001 -- any failure to write is reported the same way
      raise self._failed(step, e) from None
    self._pending_step = step

  def wait(self) -> None:
    """Blocks until the checkpoint being written is complete; raises ``CheckpointError``."""
    if self._pending_step is None:
      return
    step, self._pending_step = self._pending_step, None
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # noqa: BLE001
      raise self._failed(step, e) from None

  def restore(self, abstract_state):
    """``(state, meta)`` from the newest readable checkpoint, or ``None`` if there is none.

    ``abstract_state`` carries the target shapes, dtypes and shardings. Damaged checkpoints
    newer than the one used are moved aside; if none is readable, ``CheckpointError``.
    """
    with _quiet():
      self._manager.reload()
    steps = sorted(self._manager.all_steps(), reverse=True)
    damaged = []
    for step in steps:
      try:
        with _quiet():
          restored = self._manager.restore(step, args=ocp.args.Composite(
              state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
      except Exception as e:  # noqa: BLE001 -- any failure to read means this one is damaged
        damaged.append((step, e))
        continue
      for bad, e in damaged:
        self._move_aside(bad, e)
      if damaged:
        with _quiet():
          self._manager.reload()
      return restored["state"], restored["meta"]
    if damaged:
      listed = ", ".join(str(s) for s, _ in damaged)
      raise CheckpointError(
          f"every checkpoint in {self.directory} is damaged (steps {listed}; newest: "
          f"{_one_line(damaged[0][1])}): nothing to resume from. To start this run over from "
          f"step 0, delete {self.directory}; or use a new --workdir")
    return None

  def _move_aside(self, step: int, e: BaseException) -> None:
    print(f"optlab: checkpoint at step {step} is damaged ({_one_line(e)}); moved to "
          f"{self.damaged_dir}, using the previous one", file=sys.stderr)
    if jax.process_index() == 0:
      os.makedirs(self.damaged_dir, exist_ok=True)
      shutil.move(os.path.join(self.directory, str(step)),
                  _free_destination(self.damaged_dir, str(step)))
    ocp.multihost.sync_global_processes(f"optlab_damaged_{step}")

  def close(self) -> None:
    try:
      self.wait()
    finally:
      with contextlib.suppress(Exception):
        self._manager.close()
