"""Stochastic matrix quadratics shared by the NumPy-transcription tests of the matrix methods.

f_k(P) = 0.5 ||A_k P - B_k||^2 per matrix (Flax layout), 0.5 ||P - C_k||^2 otherwise; a fresh
(A_k, B_k) every step, like minibatches.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

STEPS = 25


def problem(shapes, seed=0, first_singular_values=None, start_scale=1.0):
  """Per-step data; optionally the first gradient of ``w`` gets the given singular values."""
  rng = np.random.default_rng(seed)
  start = {k: start_scale * rng.standard_normal(s) for k, s in shapes.items()}
  data = []
  for _ in range(STEPS):
    step = {}
    for k, s in shapes.items():
      if len(s) == 2:
        step[k] = (np.eye(s[0]) + 0.5 * rng.standard_normal((s[0], s[0])),
                   rng.standard_normal(s))
      else:
        step[k] = (None, rng.standard_normal(s))
    data.append(step)
  if first_singular_values is not None:  # a well-separated first Gram matrix for eigh in f32
    n = shapes["w"][0]
    u, _ = np.linalg.qr(rng.standard_normal((n, n)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = data[0]["w"][0]
    g = u @ np.diag(first_singular_values) @ v.T
    data[0]["w"] = (a, a @ start["w"] - np.linalg.solve(a.T, g))
  return start, data


def np_grads(params, step):
  return {k: (a.T @ (a @ params[k] - b) if a is not None else params[k] - b)
          for k, (a, b) in step.items()}


def jax_loss(params, step):
  total = 0.0
  for k, (a, b) in step.items():
    r = params[k] - b if a is None else a @ params[k] - b
    total = total + 0.5 * jnp.sum(jnp.square(r))
  return total


def jax_trajectory(tx, start, data):
  to_jax = lambda t: jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), t)

  @jax.jit
  def step(params, state, step_data):
    updates, state = tx.update(jax.grad(jax_loss)(params, step_data), state, params)
    return optax.apply_updates(params, updates), state

  params = to_jax(start)
  state = tx.init(params)
  trajectory = []
  for step_data in data:
    params, state = step(params, state, to_jax(step_data))
    trajectory.append(jax.tree.map(lambda x: np.asarray(x, np.float64), params))
  return trajectory


def assert_trajectories_match(ours, reference, start, rtol=1e-5):
  """Relative error of the displacement from the start, every step, every parameter."""
  for t, (a, b) in enumerate(zip(ours, reference, strict=True)):
    for k in start:
      moved = np.linalg.norm(b[k] - start[k])
      assert moved > 1e-3, f"step {t}: {k} did not move"
      err = np.linalg.norm(a[k] - b[k]) / moved
      assert err < rtol, f"step {t}: {k} differs by {err:.2e} (relative to its displacement)"
