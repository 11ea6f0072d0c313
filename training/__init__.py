"""Training: the state, the one train step, the loop in parts, shardings, checkpoints, records.

``prepare`` (``training.setup``) checks and builds a run without compiling; ``compile_steps``,
``resume``/``fresh_state``, ``train_loop`` and ``summarize`` (``training.loop``) are the parts
that ``execute`` runs in a workdir; ``train_batch``/``eval_batches`` (``training.batches``) make
global batches from a data source.
"""

from training.batches import eval_batches, train_batch
from training.checkpointing import Checkpointer, CheckpointError
from training.loop import (
  LoopResult,
  Position,
  Preemption,
  Steps,
  compile_steps,
  evaluate,
  execute,
  fresh_state,
  resume,
  run,
  summarize,
  train_loop,
)
from training.setup import Setup, check_config, init_state, prepare
from training.state import TrainState
from training.step import LOSSES, cross_entropy, eval_params, eval_step, train_step
from training.sweep import read_results, run_sweep
from training.workdir import Lock, WorkdirBusy

__all__ = [
    "LOSSES", "CheckpointError", "Checkpointer", "Lock", "LoopResult", "Position", "Preemption",
    "Setup", "Steps", "TrainState", "WorkdirBusy", "check_config", "compile_steps",
    "cross_entropy", "eval_batches", "eval_params", "eval_step", "evaluate", "execute",
    "fresh_state", "init_state", "prepare", "read_results", "resume", "run", "run_sweep",
    "summarize", "train_batch", "train_loop", "train_step",
]
