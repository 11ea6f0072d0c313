"""Training: the state, the one train step, the loop, shardings, checkpoints, records."""

from training.loop import execute, prepare, run
from training.state import TrainState
from training.step import LOSSES, cross_entropy, eval_step, train_step

__all__ = ["LOSSES", "TrainState", "cross_entropy", "eval_step", "execute", "prepare", "run",
           "train_step"]
