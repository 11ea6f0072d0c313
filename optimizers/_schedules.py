"""Learning-rate schedules, composed from optax's schedule functions."""

import optax

from plain_numbers import is_int, is_number

__all__ = ["SCHEDULES", "build_schedule"]

SCHEDULES = ("constant", "warmup_constant", "warmup_cosine", "wsd")


def build_schedule(cfg, peak_value: float, total_steps: int) -> optax.Schedule:
  """Schedule ``cfg.name`` peaking at ``peak_value`` over a run of ``total_steps`` updates.

  ``constant``: ``peak_value`` throughout. ``warmup_constant``: linear warmup from 0 over
  ``cfg.warmup_steps``, then constant. ``warmup_cosine``: linear warmup, then cosine decay to
  ``cfg.end_factor * peak_value`` at ``total_steps``. ``wsd`` (warmup-stable-decay): linear
  warmup, constant, then a linear decay to ``cfg.end_factor * peak_value`` over the last
  ``cfg.decay_fraction`` of the run.
  """
  name, warmup = cfg.name, cfg.warmup_steps
  if name not in SCHEDULES:
    raise ValueError(f"optimizer.schedule.name: unknown schedule {name!r}: valid names are "
                     f"{', '.join(SCHEDULES)}")
  if not is_int(warmup) or not 0 <= warmup <= total_steps:
    raise ValueError(f"optimizer.schedule.warmup_steps={warmup!r} must be an integer in "
                     f"[0, {total_steps}] (the run's steps)")
  # Checked whichever schedule uses them, so that switching the schedule cannot expose them.
  end_factor, decay_fraction = cfg.end_factor, cfg.decay_fraction
  if not is_number(end_factor) or not 0.0 <= end_factor <= 1.0:
    raise ValueError(f"optimizer.schedule.end_factor={end_factor!r} must lie in [0, 1] (the "
                     "final learning rate over the peak)")
  if not is_number(decay_fraction) or not 0.0 < decay_fraction <= 1.0:
    raise ValueError(f"optimizer.schedule.decay_fraction={decay_fraction!r} must lie in (0, 1] "
                     "(the fraction of the run that wsd spends decaying)")
  end_value = peak_value * float(end_factor)
  if name == "constant":
    return optax.constant_schedule(peak_value)
  if name == "warmup_constant":
    return optax.warmup_constant_schedule(0.0, peak_value, max(warmup, 1))
  if name == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(
        0.0, peak_value, warmup, max(total_steps, warmup + 1), end_value)
  decay = int(round(decay_fraction * total_steps))
  stable_end = max(total_steps - decay, warmup)
  return optax.join_schedules(
      [optax.linear_schedule(0.0, peak_value, max(warmup, 1)),
       optax.constant_schedule(peak_value),
       optax.linear_schedule(peak_value, end_value, max(decay, 1))],
      boundaries=[warmup, stable_end])
