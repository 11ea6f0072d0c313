"""Learning-rate schedules, composed from optax's schedule functions."""

import optax

SCHEDULES = ("constant", "warmup_constant", "warmup_cosine", "wsd")


def build_schedule(cfg, peak_value: float, total_steps: int) -> optax.Schedule:
  """Schedule ``cfg.name`` peaking at ``peak_value`` over a run of ``total_steps`` updates.

  ``constant``: ``peak_value`` throughout. ``warmup_constant``: linear warmup from 0 over
  ``cfg.warmup_steps``, then constant. ``warmup_cosine``: linear warmup, then cosine decay to
  ``cfg.end_factor * peak_value`` at ``total_steps``. ``wsd`` (warmup-stable-decay): linear
  warmup, constant, then a linear decay to ``cfg.end_factor * peak_value`` over the last
  ``cfg.decay_fraction`` of the run.
  """
  name, warmup = cfg.name, int(cfg.warmup_steps)
  if name not in SCHEDULES:
    raise ValueError(f"unknown schedule {name!r}: valid names are {', '.join(SCHEDULES)}")
  if warmup < 0 or warmup > total_steps:
    raise ValueError(f"optimizer.schedule.warmup_steps={warmup} must lie in [0, {total_steps}]")
  end_value = peak_value * float(cfg.end_factor)
  if name == "constant":
    return optax.constant_schedule(peak_value)
  if name == "warmup_constant":
    return optax.warmup_constant_schedule(0.0, peak_value, max(warmup, 1))
  if name == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(
        0.0, peak_value, warmup, max(total_steps, warmup + 1), end_value)
  if not 0.0 <= cfg.decay_fraction <= 1.0:
    raise ValueError(f"optimizer.schedule.decay_fraction={cfg.decay_fraction} must lie in [0, 1]")
  decay = int(round(cfg.decay_fraction * total_steps))
  stable_end = max(total_steps - decay, warmup)
  return optax.join_schedules(
      [optax.linear_schedule(0.0, peak_value, max(warmup, 1)),
       optax.constant_schedule(peak_value),
       optax.linear_schedule(peak_value, end_value, max(decay, 1))],
      boundaries=[warmup, stable_end])
