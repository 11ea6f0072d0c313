"""Many independent paths of an optimizer, or of its SDE, in one jitted program.

Both simulators run ``num_paths`` paths with ``jax.vmap`` and the steps with ``lax.scan``, and
record the loss at SDE times $t = k\\eta$, $k = 0, r, 2r, \\ldots$ (``record_every`` = r).
Path ``p`` uses the key ``split(key(seed), num_paths)[p]`` and, at optimizer step ``k``, the key
``fold_in(path_key, k)``: a run is fixed by its seed, and an optimizer under Gaussian noise and
its SDE run with one seed see the same normal draws (common random numbers).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from theory import _noise, _validation
from theory._problems import Problem
from theory._sdes import SDE


class Trajectory(NamedTuple):
  """Losses of many paths along SDE time.

  Attributes:
    name: a label for plots.
    times: (R,) SDE times $t = k\\eta$ of the records (the first is 0).
    losses: (R, P) the loss of each of the P paths at each record.
    final_params: (P, d) the parameters of each path after the last step.
  """

  name: str
  times: np.ndarray
  losses: np.ndarray
  final_params: np.ndarray

  def mean(self) -> np.ndarray:
    return self.losses.mean(axis=1)

  def quantiles(self, levels=(0.1, 0.5, 0.9)) -> np.ndarray:
    """(len(levels), R) quantiles of the loss over paths at each record."""
    return np.quantile(self.losses, levels, axis=1)


def _check_run(problem: Problem, x0, num_steps, num_paths, record_every):
  x0 = _validation.check_vector("x0", x0, problem.dim)
  num_steps = _validation.check_positive_int("num_steps", num_steps)
  num_paths = _validation.check_positive_int("num_paths", num_paths)
  record_every = _validation.check_positive_int("record_every", record_every)
  if num_steps % record_every:
    raise ValueError(f"num_steps={num_steps} must be a multiple of record_every={record_every}")
  return jnp.asarray(x0, jnp.float32), num_steps, num_paths, record_every


def _scan_records(one_step, loss, carry0, x_of, num_steps, record_every):
  """Runs ``one_step(carry, k)`` for k < num_steps; returns the losses at each record."""
  def one_record(carry, first_step):
    carry, _ = jax.lax.scan(lambda c, k: (one_step(c, k), None), carry,
                            first_step + jnp.arange(record_every))
    return carry, loss(x_of(carry))
  carry, losses = jax.lax.scan(one_record, carry0, jnp.arange(0, num_steps, record_every))
  return jnp.concatenate([loss(x_of(carry0))[None], losses]), x_of(carry)


def _run(one_path, seed, num_paths, num_steps, record_every, learning_rate, name):
  keys = jax.random.split(jax.random.key(int(seed)), num_paths)
  losses, final = jax.jit(jax.vmap(one_path))(keys)
  times = learning_rate * np.arange(0, num_steps + 1, record_every)
  return Trajectory(name, times, np.asarray(losses).T, np.asarray(final))


def simulate_optimizer(optimizer: optax.GradientTransformation, problem: Problem, noise, x0, *,
                       learning_rate: float, num_steps: int, num_paths: int, seed: int,
                       record_every: int = 1, name: str = "optimizer") -> Trajectory:
  """Runs an optax optimizer on ``problem`` with gradients ``grad f(x) + Z``, over many paths.

  Args:
    optimizer: any optax transformation (``optax.sgd``, ``optax.sign_sgd``, ``optax.adam``, ...).
    problem: the testbed (``theory.quadratic``, ``theory.mlp_classification``).
    noise: the gradient noise (``theory.gaussian_noise``, ``theory.student_t_noise``).
    x0: (d,) initial parameters, the same on every path.
    learning_rate: the optimizer's $\\eta$, which sets the time axis $t = k\\eta$ only.
    num_steps: optimizer steps per path.
    num_paths: independent paths.
    seed: fixes every noise draw.
    record_every: record the loss every this many steps.
    name: label for plots.

  Returns:
    A ``Trajectory``.
  """
  _noise.check_noise(noise, problem.dim)
  learning_rate = _validation.check_learning_rate(learning_rate)
  x0, num_steps, num_paths, record_every = _check_run(problem, x0, num_steps, num_paths,
                                                      record_every)

  def one_path(key):
    def one_step(carry, k):
      x, opt_state = carry
      g = problem.grad(x) + noise.sample(jax.random.fold_in(key, k))
      updates, opt_state = optimizer.update(g, opt_state, x)
      return optax.apply_updates(x, updates), opt_state
    return _scan_records(one_step, problem.loss, (x0, optimizer.init(x0)), lambda c: c[0],
                         num_steps, record_every)

  return _run(one_path, seed, num_paths, num_steps, record_every, learning_rate, name)


def simulate_sde(sde: SDE, x0, *, num_steps: int, num_paths: int, seed: int,
                 record_every: int = 1, substeps: int = 1, name: str | None = None) -> Trajectory:
  """Euler–Maruyama paths of ``sde`` over the time of ``num_steps`` optimizer steps.

  One optimizer step is ``substeps`` Euler–Maruyama steps of $dt = \\eta/\\text{substeps}$
  (default one, $dt = \\eta$; more approach the exact SDE). Step ``k`` of path ``p`` draws
  its Brownian increment over $[k\\eta, (k+1)\\eta]$ from the key an optimizer's step ``k``
  uses for its noise (``simulate_optimizer``); substeps split that increment into independent
  pieces that add up to it (a Brownian bridge), so the coupling holds at any ``substeps``.

  Returns:
    A ``Trajectory`` with records at $t = k\\eta$, as ``simulate_optimizer``'s.
  """
  if not isinstance(sde, SDE):
    raise ValueError(f"sde must be a theory.SDE, got {type(sde).__name__}")
  x0, num_steps, num_paths, record_every = _check_run(sde.problem, x0, num_steps, num_paths,
                                                      record_every)
  substeps = _validation.check_positive_int("substeps", substeps)
  eta, dim = sde.learning_rate, sde.problem.dim
  dt = jnp.float32(eta / substeps)

  def one_path(key):
    def one_step(state, k):
      step_key = jax.random.fold_in(key, k)
      xi = jax.random.normal(step_key, (dim,))
      if substeps == 1:
        return sde.step(state, k * dt, dt, xi)
      # Substep draws xi_j = (z_j - mean z) + xi / sqrt(n): i.i.d. N(0, I), and their Brownian
      # increments sum to the step's own draw, so the coupling with the optimizer survives.
      z_SxD = jax.random.normal(jax.random.fold_in(step_key, 1), (substeps, dim))
      xi_SxD = z_SxD - z_SxD.mean(axis=0, keepdims=True) + xi[None, :] / jnp.sqrt(substeps)
      def one_substep(state, j_and_xi):
        j, xi_j = j_and_xi
        return sde.step(state, (k * substeps + j) * dt, dt, xi_j), None
      return jax.lax.scan(one_substep, state, (jnp.arange(substeps), xi_SxD))[0]
    return _scan_records(one_step, sde.problem.loss, sde.init(x0), sde.position,
                         num_steps, record_every)

  return _run(one_path, seed, num_paths, num_steps, record_every, eta, name or sde.name)
