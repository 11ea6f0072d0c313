"""The train state: one pytree holding everything a step reads and writes."""

from typing import Any

import flax.struct
import jax


@flax.struct.dataclass
class TrainState:
  """``step`` is the one counter: schedules, data position and rng all derive from it.

  ``model_state`` holds non-trained model variables (e.g. BatchNorm's ``batch_stats``).
  """

  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array
  model_state: Any
