"""Many independent paths of an optimizer, or of its SDE, in one jitted program.

Both simulators scan over steps (``lax.scan``) and apply each step to all ``num_paths`` paths
with ``jax.vmap``; they record the loss at SDE times $t = k\\eta$, $k = 0, r, 2r, \\ldots$
(``record_every`` = r). Step ``k`` draws the noise of every path at once, row ``p`` of a
``(num_paths, d)`` draw from the key ``fold_in(key(seed), k)``: a run is fixed by its seed, path
``p`` does not depend on how many paths run (JAX's threefry draws are prefix-stable along the
leading axis; a test checks it), and an optimizer under Gaussian noise and its SDE run with one
seed see the same normal draws (common random numbers). One draw per step, rather than one
per path and step, also keeps the compiled program small: compiling dominates small runs.
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
  """Runs ``one_step(carry, k)`` for k < num_steps; returns the (R, P) losses at each record."""
  batched_loss = jax.vmap(loss)

  def one_record(carry, first_step):
    carry, _ = jax.lax.scan(lambda c, k: (one_step(c, k), None), carry,
                            first_step + jnp.arange(record_every))
    return carry, batched_loss(x_of(carry))
  carry, losses = jax.lax.scan(one_record, carry0, jnp.arange(0, num_steps, record_every))
  return jnp.concatenate([batched_loss(x_of(carry0))[None], losses]), x_of(carry)


def _run(run_paths, seed, x0, num_steps, record_every, learning_rate, name):
  losses, final = jax.jit(run_paths)(jax.random.key(int(seed)), x0)
  times = learning_rate * np.arange(0, num_steps + 1, record_every)
  return Trajectory(name, times, np.asarray(losses), np.asarray(final))


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

  def update(x, opt_state, z):
    updates, opt_state = optimizer.update(problem.grad(x) + z, opt_state, x)
    return optax.apply_updates(x, updates), opt_state

  def run_paths(root, x0):
    def one_step(carry, k):
      z_PxD = noise.sample(jax.random.fold_in(root, k), (num_paths,))
      return jax.vmap(update)(*carry, z_PxD)
    x0_PxD = jnp.broadcast_to(x0, (num_paths, problem.dim))
    carry0 = (x0_PxD, jax.vmap(optimizer.init)(x0_PxD))
    return _scan_records(one_step, problem.loss, carry0, lambda c: c[0], num_steps,
                         record_every)

  return _run(run_paths, seed, x0, num_steps, record_every, learning_rate, name)


def simulate_sde(sde: SDE, x0, *, num_steps: int, num_paths: int, seed: int,
                 record_every: int = 1, substeps: int = 1, name: str | None = None) -> Trajectory:
  """Euler–Maruyama paths of ``sde`` over the time of ``num_steps`` optimizer steps.

  One optimizer step is ``substeps`` Euler–Maruyama steps of $dt = \\eta/\\text{substeps}$
  (default one, $dt = \\eta$; more approach the exact SDE). Step ``k`` draws the Brownian
  increments over $[k\\eta, (k+1)\\eta]$ from the key an optimizer's step ``k`` draws its noise
  from (``simulate_optimizer``); substeps split each increment into independent pieces that add
  up to it (a Brownian bridge), so the coupling holds at any ``substeps``.

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

  batched_step = jax.vmap(sde.step, in_axes=(0, None, None, 0))

  def run_paths(root, x0):
    def one_step(state, k):
      step_key = jax.random.fold_in(root, k)
      xi_PxD = jax.random.normal(step_key, (num_paths, dim))
      if substeps == 1:
        return batched_step(state, k * dt, dt, xi_PxD)
      # Substep draws xi_j = (z_j - mean z) + xi / sqrt(n): i.i.d. N(0, I), and their Brownian
      # increments sum to the step's own draw, so the coupling with the optimizer survives.
      z_PxSxD = jax.random.normal(jax.random.fold_in(step_key, 1), (num_paths, substeps, dim))
      xi_SxPxD = jnp.swapaxes(z_PxSxD - z_PxSxD.mean(axis=1, keepdims=True)
                              + xi_PxD[:, None, :] / jnp.sqrt(substeps), 0, 1)
      def one_substep(state, j_and_xi):
        j, xi_j = j_and_xi
        return batched_step(state, (k * substeps + j) * dt, dt, xi_j), None
      return jax.lax.scan(one_substep, state, (jnp.arange(substeps), xi_SxPxD))[0]
    state0 = jax.vmap(sde.init)(jnp.broadcast_to(x0, (num_paths, dim)))
    return _scan_records(one_step, sde.problem.loss, state0, jax.vmap(sde.position),
                         num_steps, record_every)

  return _run(run_paths, seed, x0, num_steps, record_every, eta, name or sde.name)
