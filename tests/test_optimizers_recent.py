"""EXAdam, NorMuon, APOLLO and SWAN against NumPy transcriptions of their papers (float64).

The shared battery (``test_optimizer_battery.py``) runs each of them through convergence,
dtypes, jit/vmap, ``inject_hyperparams`` and ``MultiSteps``; here each update rule is written out
again from the paper (and, where the paper's algorithm was not available, from the authors'
code; see each reference), NorMuon and SWAN in PyTorch's ``(out, in)`` layout so that an axis
slip in the Flax ``(in, out)`` code shows up as a mismatch.
"""

import doctest
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matrix_problems import assert_trajectories_match, jax_trajectory, np_grads, problem

import optimizers
from optimizers import _apollo, _exadam, _normuon, _swan
from optimizers._apollo import apollo, apollo_mini
from optimizers._exadam import exadam
from optimizers._normuon import normuon, scale_by_normuon
from optimizers._swan import grad_norm, grad_whitening, swan

SHAPES = {"a": (6, 4), "w": (4, 6), "b": (4,)}


def _ref_adam_step(p, g, state, t, lr, b1, b2, eps, weight_decay):
  """AdamW on one leaf (Kingma & Ba, Algorithm 1, with decoupled decay)."""
  state["m"] = b1 * state.get("m", 0.0) + (1 - b1) * g
  state["v"] = b2 * state.get("v", 0.0) + (1 - b2) * g * g
  m_hat, v_hat = state["m"] / (1 - b1**t), state["v"] / (1 - b2**t)
  return p - lr * (m_hat / (np.sqrt(v_hat) + eps) + weight_decay * p)


def _trajectory(start, data, matrix_step, *, lr, adam_b1, adam_b2, adam_eps, weight_decay):
  """Runs ``matrix_step(name, p, g, state, t)`` on matrices and AdamW on vectors."""
  params = {k: v.copy() for k, v in start.items()}
  states = {k: {} for k in start}
  out = []
  for t, step in enumerate(data, start=1):
    grads = np_grads(params, step)
    for k in params:
      if params[k].ndim == 2:
        params[k] = matrix_step(k, params[k], grads[k], states[k], t)
      else:
        params[k] = _ref_adam_step(params[k], grads[k], states[k], t, lr, adam_b1, adam_b2,
                                   adam_eps, weight_decay)
    out.append({k: v.copy() for k, v in params.items()})
  return out


# --- EXAdam, from the author's code (AhmedMostafa16/EXAdam exadam.py); the arXiv v2 rule.

def _ref_exadam(start, data, *, lr, b1, b2, eps, weight_decay, dynamic_step):
  params = {k: v.copy() for k, v in start.items()}
  m = {k: np.zeros_like(v) for k, v in start.items()}
  v = {k: np.zeros_like(x) for k, x in start.items()}
  out = []
  for t, step in enumerate(data, start=1):
    grads = np_grads(params, step)
    for k in params:
      g = grads[k]
      params[k] = params[k] * (1 - lr * weight_decay)  # decoupled, before the step
      m[k] = b1 * m[k] + (1 - b1) * g
      v[k] = b2 * v[k] + (1 - b2) * g * g
      bias1, bias2 = 1 - b1**t, 1 - b2**t
      d1 = 1 + (v[k] / (v[k] + eps)) * b2**t
      d2 = 1 + (m[k] * m[k] / (m[k] * m[k] + eps)) * b1**t
      m_tilde, v_tilde, g_tilde = m[k] / bias1 * d1, v[k] / bias2 * d2, g / bias1 * d1
      step_size = lr * math.log(math.sqrt(2) * math.sqrt(t + 1)) if dynamic_step else lr
      params[k] = params[k] - step_size * (m_tilde + g_tilde) / (np.sqrt(v_tilde) + eps)
    out.append({k: x.copy() for k, x in params.items()})
  return out


@pytest.mark.parametrize("weight_decay,dynamic_step", [(0.0, False), (0.1, False), (0.1, True)])
def test_exadam_matches_the_authors_rule(weight_decay, dynamic_step):
  start, data = problem(SHAPES)
  opt = exadam(0.01, b1=0.9, b2=0.99, eps=1e-8, weight_decay=weight_decay,
               dynamic_step=dynamic_step)
  ours = jax_trajectory(opt, start, data)
  reference = _ref_exadam(start, data, lr=0.01, b1=0.9, b2=0.99, eps=1e-8,
                          weight_decay=weight_decay, dynamic_step=dynamic_step)
  assert_trajectories_match(ours, reference, start)


def test_exadam_first_step_is_a_fixed_multiple_of_adams():
  # At t = 1 with g^2 >> eps: m_tilde = g (1 + b2), v_tilde = g^2 (1 + b1) and the accelerator
  # g_tilde = g (1 + b2) / (1 - b1): the step is (1 + b2)(1 + 1/(1 - b1)) / sqrt(1 + b1) sign(g),
  # about 16 times Adam's first step (sign(g)) at the default betas.
  b1, b2 = 0.9, 0.999
  g = jnp.array([3.0, -0.5, 40.0])
  updates, _ = exadam(1.0, b1=b1, b2=b2, eps=1e-12).update(g, exadam(1.0).init(g))
  factor = (1 + b2) * (1 + 1 / (1 - b1)) / math.sqrt(1 + b1)
  np.testing.assert_allclose(updates, -factor * np.sign(g), rtol=1e-5)


# --- NorMuon, the paper's Algorithm 1, PyTorch layout (W is (out, in): rows are neurons).

def _ref_newton_schulz5(g, steps=5):
  a, b, c = 3.4445, -4.7750, 2.0315
  x = g / (np.linalg.norm(g) + 1e-7)
  tall = x.shape[0] > x.shape[1]
  if tall:
    x = x.T
  for _ in range(steps):
    s = x @ x.T
    x = a * x + (b * s + c * s @ s) @ x
  return x.T if tall else x


def _ref_normuon_step(lr, b1, b2, eps, weight_decay, nesterov):
  def step(name, p, g, state, t):
    w, grad = p.T, g.T  # (out, in)
    state["m"] = b1 * state.get("m", 0.0) + (1 - b1) * grad
    direction = b1 * state["m"] + (1 - b1) * grad if nesterov else state["m"]
    o = _ref_newton_schulz5(direction)
    state["v"] = b2 * state.get("v", 0.0) + (1 - b2) * np.mean(o * o, axis=1, keepdims=True)
    o_hat = o / (np.sqrt(state["v"]) + eps)
    m, n = w.shape
    eta_hat = 0.2 * lr * math.sqrt(m * n) / np.linalg.norm(o_hat)
    return (w - lr * weight_decay * w - eta_hat * o_hat).T
  return step


@pytest.mark.parametrize("weight_decay,nesterov", [(0.0, False), (0.1, True)])
def test_normuon_matches_the_paper(weight_decay, nesterov):
  start, data = problem(SHAPES)
  lr = 0.02
  opt = normuon(lr, b1=0.95, b2=0.9, eps=1e-8, weight_decay=weight_decay, nesterov=nesterov,
                adam_b1=0.9, adam_b2=0.99)
  ours = jax_trajectory(opt, start, data)
  reference = _trajectory(start, data, _ref_normuon_step(lr, 0.95, 0.9, 1e-8, weight_decay,
                                                         nesterov),
                          lr=lr, adam_b1=0.9, adam_b2=0.99, adam_eps=1e-8,
                          weight_decay=weight_decay)
  assert_trajectories_match(ours, reference, start)


def test_normuon_update_has_rms_point_two_and_balanced_neurons():
  rng = np.random.default_rng(0)
  # One neuron (output column) with a 100x larger gradient than the others.
  g = jnp.asarray(rng.standard_normal((16, 8)) * np.r_[100.0, np.ones(7)], jnp.float32)
  tx = scale_by_normuon(b1=0.0, b2=0.0)
  updates, state = tx.update({"w": g}, tx.init({"w": g}))
  u = np.asarray(updates["w"])
  np.testing.assert_allclose(np.sqrt(np.mean(u**2)), 0.2, rtol=1e-5)
  # with b2 = 0 every neuron's update is normalised to the same RMS
  neuron_rms = np.sqrt(np.mean(u**2, axis=0))
  np.testing.assert_allclose(neuron_rms, neuron_rms.mean(), rtol=1e-3)
  assert state.nu["w"].shape == (1, 8)


# --- APOLLO, the paper's Algorithm 1 and Eq. 4, with Adam's bias correction (as its code).

def _ref_apollo_step(lr, b1, b2, eps, weight_decay, *, rank, scale_type, alpha, gap, gamma,
                     seed, limited):
  index = {"a": 0, "w": 1}  # the matrices in the order optax flattens them

  def step(name, p, g, state, t):
    # The projection is data, drawn here as APOLLO's docstring states it: Gaussian entries of
    # variance 1/r, shape (r, smaller side), in float32 from the key (seed, (t - 1) // gap, leaf).
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), (t - 1) // gap),
                             index[name])
    rows = min(rank, *g.shape)
    proj = np.asarray(jax.random.normal(key, (rows, min(g.shape)), jnp.float32), np.float64)
    proj = proj / math.sqrt(rows)
    wide = g.shape[0] <= g.shape[1]
    grad = g if wide else g.T  # (m, n) with m <= n: project the m side
    r = proj @ grad
    state["m"] = b1 * state.get("m", 0.0) + (1 - b1) * r
    state["v"] = b2 * state.get("v", 0.0) + (1 - b2) * r * r
    m_hat, v_hat = state["m"] / (1 - b1**t), state["v"] / (1 - b2**t)
    r_tilde = m_hat / (np.sqrt(v_hat) + eps)
    if scale_type == "channel":
      s = np.linalg.norm(r_tilde, axis=0) / np.linalg.norm(r, axis=0)  # one per column j
      scaled = alpha * grad * s[None, :]
    else:
      scaled = alpha * grad * (np.linalg.norm(r_tilde) / np.linalg.norm(r))
    last = state.get("last_norm")
    norm = np.linalg.norm(scaled)
    if last is not None and norm / last > gamma:
      scaled = scaled / norm * gamma * last
      limited.append(t)
    state["last_norm"] = np.linalg.norm(scaled)
    scaled = scaled if wide else scaled.T
    return p - lr * scaled - lr * weight_decay * p

  return step


@pytest.mark.parametrize("scale_type,alpha,weight_decay", [
    ("channel", 1.0, 0.0), ("tensor", math.sqrt(128), 0.1)])
def test_apollo_matches_the_paper(scale_type, alpha, weight_decay):
  start, data = problem(SHAPES, seed=3)
  lr, rank, gap = 0.01, 3, 5
  opt = apollo(lr, rank=rank, b1=0.9, b2=0.99, eps=1e-8, weight_decay=weight_decay,
               scale_type=scale_type, alpha=alpha, update_proj_gap=gap,
               norm_growth_limit=1.01, seed=7)
  ours = jax_trajectory(opt, start, data)
  limited = []
  reference = _trajectory(
      start, data,
      _ref_apollo_step(lr, 0.9, 0.99, 1e-8, weight_decay, rank=rank, scale_type=scale_type,
                       alpha=alpha, gap=gap, gamma=1.01, seed=7, limited=limited),
      lr=lr, adam_b1=0.9, adam_b2=0.99, adam_eps=1e-8, weight_decay=weight_decay)
  assert limited, "the norm-growth limiter never acted: the test would not check it"
  assert_trajectories_match(ours, reference, start)


def test_apollo_redraws_the_projection_every_gap_steps_and_keeps_low_rank_state():
  params = {"w": jnp.ones((8, 32)), "v": jnp.ones((32, 8))}
  tx = apollo(1.0, rank=2, update_proj_gap=3, norm_growth_limit=None)
  state = tx.init(params)
  inner = state[0].inner_states["matrix"].inner_state
  assert inner.mu["w"].shape == (2, 32) and inner.mu["v"].shape == (32, 2)
  grads = jax.tree.map(lambda p: jnp.cos(jnp.arange(p.size, dtype=p.dtype)).reshape(p.shape),
                       params)
  # With b1 = b2 = 0 the moments are the current projected gradient: the step follows P only.
  tx = apollo(1.0, rank=2, b1=0.0, b2=0.0, update_proj_gap=3, norm_growth_limit=None)
  state = tx.init(params)
  steps = []
  for _ in range(6):
    updates, state = tx.update(grads, state, params)
    steps.append(np.asarray(updates["w"]))
  for i, j in [(0, 1), (1, 2), (3, 4), (4, 5)]:
    np.testing.assert_array_equal(steps[i], steps[j])  # same projection within a gap
  assert np.abs(steps[2] - steps[3]).max() > 1e-3  # a new one after it


def test_apollo_gives_no_step_to_a_unit_that_stops_receiving_gradient():
  # A ReLU unit that dies after the first step: its momentum is not zero, its gradient is. At
  # rank 64 the momentum's column norm divided by the smallest float overflows to inf.
  rng = np.random.default_rng(0)
  g = jnp.asarray(rng.standard_normal((64, 80)), jnp.float32)
  dead = g.at[:, 3].set(0.0)
  for scale_type in ("channel", "tensor"):
    tx = apollo(0.1, rank=64, scale_type=scale_type)
    params = {"w": jnp.zeros((64, 80))}
    state = tx.init(params)
    _, state = tx.update({"w": g}, state, params)
    updates, _ = tx.update({"w": dead}, state, params)
    assert np.all(np.isfinite(updates["w"])), scale_type
    np.testing.assert_array_equal(updates["w"][:, 3], 0.0)
  zero = {"w": jnp.zeros((64, 80))}
  tx = apollo(0.1, rank=64)
  updates, _ = tx.update(zero, tx.init(zero), zero)
  np.testing.assert_array_equal(updates["w"], 0.0)


def test_apollo_mini_is_rank_one_tensor_scaling():
  start, data = problem(SHAPES, seed=4)
  mini = jax_trajectory(apollo_mini(0.01, seed=2), start, data)
  explicit = jax_trajectory(apollo(0.01, rank=1, scale_type="tensor", alpha=math.sqrt(128),
                                   seed=2), start, data)
  for a, b in zip(mini, explicit, strict=True):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])


# --- SWAN: GradNorm then GradWhitening (the paper; defined again in arXiv 2502.07752, App. B).

def _ref_swan_step(lr, eps, weight_decay):
  def step(name, p, g, state, t):
    grad = g.T  # (out, in): GradNorm standardises each neuron's row over its inputs
    mean = grad.mean(axis=1, keepdims=True)
    var = ((grad - mean) ** 2).mean(axis=1, keepdims=True)
    normed = (grad - mean) / np.sqrt(var + eps)
    evals, evecs = np.linalg.eigh(normed @ normed.T)  # invertible: out < in here
    whitened = evecs @ np.diag(evals ** -0.5) @ evecs.T @ normed
    m, n = whitened.shape
    delta = math.sqrt(m * n) * whitened / np.linalg.norm(whitened)
    return p - lr * delta.T - lr * weight_decay * p
  return step


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_swan_matches_the_papers_definition(weight_decay):
  # (in, out) kernels with out < in, so that G G^T of the (out, in) gradient is invertible;
  # enough Newton-Schulz steps for the iteration to reach (G G^T)^{-1/2} G.
  # Well-conditioned normalised gradients (sigma_min / sigma_max > 0.1): the polar factor of an
  # ill-conditioned one moves by roundoff / sigma_min, beyond 1e-5 in float32.
  shapes = {"a": (12, 4), "c": (10, 3), "b": (4,)}
  start, data = problem(shapes, seed=1)
  lr = 0.01
  opt = swan(lr, weight_decay=weight_decay, ns_steps=30, eps=1e-8, adam_b1=0.9, adam_b2=0.99)
  ours = jax_trajectory(opt, start, data)
  reference = _trajectory(start, data, _ref_swan_step(lr, 1e-8, weight_decay), lr=lr,
                          adam_b1=0.9, adam_b2=0.99, adam_eps=1e-8, weight_decay=weight_decay)
  assert_trajectories_match(ours, reference, start)


def test_grad_norm_standardises_each_neuron_and_whitening_gives_the_polar_factor():
  rng = np.random.default_rng(6)
  g = rng.standard_normal((10, 4)) * rng.uniform(0.1, 10, size=4) + rng.standard_normal(4)
  normed = np.asarray(grad_norm(jnp.asarray(g, jnp.float32)), np.float64)
  np.testing.assert_allclose(normed.mean(axis=0), 0.0, atol=1e-6)
  np.testing.assert_allclose(normed.std(axis=0), 1.0, rtol=1e-5)
  for shape in [(5, 9), (9, 5)]:
    x = rng.standard_normal(shape)
    u, _, vt = np.linalg.svd(x, full_matrices=False)
    white = np.asarray(grad_whitening(jnp.asarray(x, jnp.float32), steps=30), np.float64)
    np.testing.assert_allclose(white, u @ vt, atol=2e-5)


# --- Bad input, docs -------------------------------------------------------------------------

@pytest.mark.parametrize("build,message", [
    (lambda: exadam(-1.0), "learning_rate=-1.0"),
    (lambda: exadam(1e-3, b2=1.0), "b2=1.0"),
    (lambda: normuon(1e-3, b1=1.5), "b1=1.5"),
    (lambda: apollo(1e-3, rank=0), "rank=0"),
    (lambda: apollo(1e-3, scale_type="row"), "scale_type='row'"),
    (lambda: apollo(1e-3, norm_growth_limit=0.5), "norm_growth_limit=0.5"),
    (lambda: apollo(1e-3, update_proj_gap=0), "update_proj_gap=0"),
    (lambda: swan(1e-3, weight_decay=-0.1), "weight_decay=-0.1"),
])
def test_out_of_range_hyperparameters_fail_at_build_time(build, message):
  with pytest.raises(ValueError, match=message.replace("(", r"\(")):
    build()


def test_matrix_directions_refuse_vectors_with_the_fix_named():
  with pytest.raises(ValueError, match="normuon\\(\\) sends other leaves to Adam"):
    scale_by_normuon().init({"b": jnp.zeros(3)})
  with pytest.raises(ValueError, match="apollo\\(\\) sends other leaves to Adam"):
    _apollo.scale_by_apollo().init({"b": jnp.zeros(3)})
  with pytest.raises(ValueError, match="swan\\(\\) sends other leaves to Adam"):
    _swan.scale_by_swan().init({"b": jnp.zeros(3)})


def test_build_names_each_method():
  for name in ("exadam", "normuon", "apollo", "apollo_mini", "swan"):
    assert name in optimizers.available()


def test_docstring_examples_run():
  for module in (_exadam, _normuon, _apollo, _swan):
    failures, _ = doctest.testmod(module)
    assert failures == 0, module.__name__
