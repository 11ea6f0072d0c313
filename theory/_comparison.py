"""Optimizer-vs-SDE comparisons: the gap between mean losses, and the figure."""

from collections.abc import Sequence

import numpy as np

from theory._simulation import Trajectory


def _check_same_times(reference: Trajectory, model: Trajectory) -> None:
  if reference.times.shape != model.times.shape or not np.allclose(reference.times, model.times):
    raise ValueError(f"{model.name!r} and {reference.name!r} are recorded at different times: "
                     "use one learning_rate, num_steps and record_every")


def relative_mean_error(reference: Trajectory, model: Trajectory, *,
                        from_time: float = 0.0) -> float:
  r"""The largest relative gap between mean losses along the trajectory.

  $\max_t |E f_\text{model}(t) - E f_\text{ref}(t)| / E f_\text{ref}(t)$ over the records at
  $t \ge$ ``from_time``. Means are over paths: use ~1000 paths or more, so that the
  Monte-Carlo error stays well below the gap being measured (an optimizer and its SDE run with
  one seed share their normal draws, which shrinks that error).
  """
  _check_same_times(reference, model)
  keep = reference.times >= from_time
  if not np.any(keep):
    raise ValueError(f"from_time={from_time} is after the last record ({reference.times[-1]})")
  ref_mean, model_mean = reference.mean()[keep], model.mean()[keep]
  return float(np.max(np.abs(model_mean - ref_mean) / ref_mean))


def plot_loss_comparison(trajectories: Sequence[Trajectory], path, *, title: str = "",
                         band: tuple[float, float] = (0.1, 0.9), log_scale: bool = True):
  """Mean loss over SDE time for each trajectory, with a band between two quantiles; saves a PNG.

  Drawn with matplotlib's object API on an Agg canvas: no display, and the process's pyplot
  backend is left alone. Returns the matplotlib ``Figure``.
  """
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  if not trajectories:
    raise ValueError("plot_loss_comparison needs at least one trajectory")
  fig = Figure(figsize=(6.4, 4.2))
  FigureCanvasAgg(fig)
  ax = fig.subplots()
  styles = ["-", "--", ":", "-."]
  for i, trajectory in enumerate(trajectories):
    low, high = trajectory.quantiles(band)
    line, = ax.plot(trajectory.times, trajectory.mean(), styles[i % len(styles)], lw=2,
                    label=f"{trajectory.name} (mean)")
    ax.fill_between(trajectory.times, low, high, color=line.get_color(), alpha=0.15, lw=0)
  ax.set_xlabel(r"SDE time $t = k\eta$")
  ax.set_ylabel("loss")
  if log_scale:
    ax.set_yscale("log")
  ax.set_title(title or f"mean loss, band = quantiles {band[0]:g}-{band[1]:g} over paths")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  return fig
