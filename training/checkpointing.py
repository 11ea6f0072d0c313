"""Orbax checkpoints of the train state and the data position, with fallback on damage."""

import contextlib
import os
import shutil
import sys

import jax
import orbax.checkpoint as ocp
from absl import logging


@contextlib.contextmanager
def _quiet():
  """Silences orbax's own log lines while probing checkpoints: a damaged one gets one line."""
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.FATAL)
  try:
    yield
  finally:
    logging.set_verbosity(verbosity)


class Checkpointer:
  """Saves ``{state, meta}`` every so often under ``DIR/checkpoints``; restores the newest
  readable one. A checkpoint that cannot be read is reported in one line, moved to
  ``DIR/checkpoints_damaged/`` (kept, not deleted) and the previous one is tried.
  """

  def __init__(self, workdir: str, *, max_to_keep: int):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self._damaged_dir = os.path.abspath(os.path.join(workdir, "checkpoints_damaged"))
    with _quiet():
      self._manager = ocp.CheckpointManager(
          self.directory,
          options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state, meta: dict) -> None:
    if step in self._manager.all_steps():
      return
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))

  def restore(self, abstract_state):
    """``(state, meta)`` from the newest readable checkpoint, or ``None`` if there is none.

    ``abstract_state`` carries the target shapes, dtypes and shardings.
    """
    with _quiet():
      self._manager.reload()
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        with _quiet():
          restored = self._manager.restore(step, args=ocp.args.Composite(
              state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
        return restored["state"], restored["meta"]
      except Exception as e:  # noqa: BLE001 -- any failure to read means this one is damaged
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        print(f"optlab: checkpoint at step {step} is damaged ({type(e).__name__}: {reason}); "
              f"moved to {self._damaged_dir}, trying the previous one", file=sys.stderr)
        if jax.process_index() == 0:
          os.makedirs(self._damaged_dir, exist_ok=True)
          shutil.move(os.path.join(self.directory, str(step)),
                      os.path.join(self._damaged_dir, str(step)))
        ocp.multihost.sync_global_processes(f"optlab_damaged_{step}")
        with _quiet():
          self._manager.reload()
    return None

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
