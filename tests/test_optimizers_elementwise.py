"""NGN family, Adalayer, diffGrad, AdamP and AdaGrad-Norm against independent NumPy
transcriptions of their papers' update rules (float64), and their own options and checks (the
checks every method passes are in ``test_optimizer_battery.py``)."""

import doctest
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import minimize

from optimizers import _adagrad_norm, _adalayer, _adamp, _diffgrad, _ngn
from optimizers._adagrad_norm import adagrad_norm
from optimizers._adalayer import adalayer
from optimizers._adamp import adamp
from optimizers._diffgrad import diffgrad
from optimizers._ngn import ngn, ngn_m, ngn_md, scale_by_ngn


class Method(NamedTuple):
  make: Callable[..., optax.GradientTransformationExtraArgs]
  learning_rate: float
  kwargs: dict[str, Any]


METHODS = {
    "ngn": Method(ngn, 1.0, {}),
    "ngn_m": Method(ngn_m, 0.5, dict(momentum=0.9)),
    "ngn_md": Method(ngn_md, 0.1, dict(momentum=0.9, b2=0.999)),
    "adalayer": Method(adalayer, 2e-2, dict(b1=0.9, b2=0.999)),
    "diffgrad": Method(diffgrad, 2e-2, dict(b1=0.9, b2=0.999)),
    "adamp": Method(adamp, 2e-2, dict(b1=0.9, b2=0.999)),
    "adagrad_norm": Method(adagrad_norm, 1.0, dict(b0=0.1)),
}


def _make(name, **overrides):
  method = METHODS[name]
  kwargs = dict(learning_rate=method.learning_rate, **method.kwargs)
  kwargs.update(overrides)
  return method.make(**kwargs)


# --- Options and argument checks ----------------------------------------------------------


def _small_problem(dtype=jnp.float32, seed=0):
  rng = np.random.default_rng(seed)
  params = {"w": jnp.asarray(rng.normal(size=(4, 3)), dtype),
            "b": jnp.asarray(0.1 * rng.normal(size=3), dtype)}
  x = jnp.asarray(rng.normal(size=(8, 4)), dtype)
  y = jnp.asarray(rng.normal(size=(8, 3)), dtype)

  def loss_fn(p):
    residual = x @ p["w"] + p["b"][None, :] - y
    return 0.5 * jnp.mean(jnp.sum(jnp.square(residual.astype(jnp.float32)), axis=1))

  return params, loss_fn


def _jit_update(opt):
  return jax.jit(lambda grads, state, params, value: opt.update(grads, state, params,
                                                                value=value))


@pytest.mark.parametrize("name,option,field", [
    ("ngn_m", "mu_dtype", "mu"), ("ngn_md", "mu_dtype", "mu"), ("adalayer", "mu_dtype", "mu"),
    ("diffgrad", "mu_dtype", "mu"), ("adamp", "mu_dtype", "mu"),
    ("adagrad_norm", "accumulator_dtype", "sum_sq"),
])
def test_accumulator_dtype_option(name, option, field):
  params, loss_fn = _small_problem(jnp.bfloat16)
  opt = _make(name, **{option: jnp.float32})
  state = opt.init(params)
  loss, grads = jax.value_and_grad(loss_fn)(params)
  updates, state = _jit_update(opt)(grads, state, params, loss)
  assert {leaf.dtype for leaf in jax.tree.leaves(updates)} == {jnp.dtype(jnp.bfloat16)}
  accumulator = optax.tree.get(state, field)
  assert {leaf.dtype for leaf in jax.tree.leaves(accumulator)} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize("make,kwargs,match", [
    (ngn, dict(learning_rate=-0.1), "learning_rate=-0.1"),
    (ngn_m, dict(learning_rate=1.0, momentum=1.0), "momentum=1.0"),
    (ngn_md, dict(learning_rate=1.0, b2=-0.5), "b2=-0.5"),
    (adalayer, dict(learning_rate=-1e-3), "learning_rate=-0.001"),
    (adalayer, dict(learning_rate=1e-3, b1=1.5), "b1=1.5"),
    (diffgrad, dict(learning_rate=1e-3, b2=1.0), "b2=1.0"),
    (adamp, dict(learning_rate=1e-3, weight_decay=-1.0), "weight_decay=-1.0"),
    (adamp, dict(learning_rate=1e-3, b1=-0.1), "b1=-0.1"),
    (adagrad_norm, dict(learning_rate=-1.0), "learning_rate=-1.0"),
    (adagrad_norm, dict(learning_rate=1.0, b0=0.0), "b0=0.0"),
])
def test_bad_hyperparameters_fail_when_built(make, kwargs, match):
  with pytest.raises(ValueError, match=match):
    make(**kwargs)


def test_modules_docstring_examples_run():
  for module in (_ngn, _adalayer, _diffgrad, _adamp, _adagrad_norm):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, module.__name__
    assert result.attempted > 0, module.__name__


# --- NGN special cases ------------------------------------------------------------------------


@pytest.mark.parametrize("make", [ngn, ngn_m, ngn_md])
def test_ngn_family_needs_the_loss(make):
  params, loss_fn = _small_problem()
  opt = make(1.0)
  grads = jax.grad(loss_fn)(params)
  with pytest.raises(ValueError, match="value="):
    opt.update(grads, opt.init(params), params)
  with pytest.raises(ValueError, match="value= must be the scalar loss"):
    opt.update(grads, opt.init(params), params, value=jnp.ones(3))


def test_ngn_m_with_zero_momentum_is_ngn():
  params, loss_fn = _small_problem()
  with_momentum, _ = minimize(ngn_m(2.0, momentum=0.0), loss_fn, params, 20)
  plain, _ = minimize(ngn(2.0), loss_fn, params, 20)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), with_momentum, plain)
  assert not np.allclose(plain["w"], params["w"])


def test_ngn_step_size_stays_finite_as_the_loss_vanishes():
  opt = scale_by_ngn(10.0)
  grads = {"w": jnp.full((4, 3), 0.5), "b": jnp.ones(3)}  # ||g||^2 = 6
  state = opt.init(grads)
  gammas = []
  for loss in (1.0, 1e-3, 1e-20, 1e-30, 0.0, -1.0):  # down to 0 and below f_min = 0
    updates, new_state = opt.update(grads, state, value=jnp.float32(loss))
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))
    gammas.append(float(new_state.gamma))
    want = 10.0 / (1 + 10.0 * 6.0 / (2 * loss)) if loss > 0 else 0.0
    np.testing.assert_allclose(gammas[-1], want, rtol=1e-5, atol=0)
  assert gammas[0] > gammas[1] > gammas[2] > gammas[4] == 0.0
  # Loss and gradient both zero: the step is zero and gamma is its f > 0 limit, c.
  zero = jax.tree.map(jnp.zeros_like, grads)
  updates, new_state = opt.update(zero, state, value=jnp.float32(0.0))
  assert float(new_state.gamma) == 10.0
  jax.tree.map(lambda u: np.testing.assert_array_equal(u, 0.0), updates)


def test_ngn_step_size_is_bounded_by_c_and_logged():
  params, loss_fn = _small_problem()
  opt = ngn_m(3.0, momentum=0.9)
  state = opt.init(params)
  loss, grads = jax.value_and_grad(loss_fn)(params)
  _, state = opt.update(grads, state, params, value=loss)
  gamma = float(optax.tree.get(state, "gamma"))
  sq_norm = sum(float(jnp.sum(g**2)) for g in jax.tree.leaves(grads))
  np.testing.assert_allclose(gamma, 3.0 / (1 + 3.0 * sq_norm / (2 * float(loss))), rtol=1e-6)
  assert 0 < gamma < 3.0


# --- Adalayer, AdamP options ------------------------------------------------------------------


def test_adalayer_blocks_are_leaves_or_output_units():
  params, loss_fn = _small_problem()
  grads = jax.grad(loss_fn)(params)
  per_leaf = adalayer(0.1)
  per_unit = adalayer(0.1, per_output=lambda p: {"w": True, "b": False})
  nu_leaf = per_leaf.update(grads, per_leaf.init(params))[1][0].nu
  nu_unit = per_unit.update(grads, per_unit.init(params))[1][0].nu
  assert nu_leaf["w"].shape == (1, 1) and nu_unit["w"].shape == (1, 3)
  np.testing.assert_allclose(nu_leaf["w"][0, 0], 1e-3 * np.mean(grads["w"] ** 2), rtol=1e-6)
  np.testing.assert_allclose(nu_unit["w"][0], 1e-3 * np.mean(grads["w"] ** 2, axis=0),
                             rtol=1e-6)
  # One block per coordinate would be Adam: a single-entry leaf must match it exactly.
  x = {"a": jnp.array(2.0), "c": jnp.array(-3.0)}
  g = {"a": jnp.array(0.3), "c": jnp.array(-1.5)}
  got, _ = adalayer(0.1).update(g, adalayer(0.1).init(x))
  want, _ = optax.adam(0.1).update(g, optax.adam(0.1).init(x))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), got, want)


def test_adamp_needs_params_and_masks_weight_decay():
  params, loss_fn = _small_problem()
  grads = jax.tree.map(jnp.zeros_like, params)  # zero gradient: the update is the decay
  opt = adamp(0.1, weight_decay=0.5, mask={"w": False, "b": True})
  with pytest.raises(ValueError, match="params"):
    opt.update(grads, opt.init(params))
  updates, _ = opt.update(grads, opt.init(params), params)
  np.testing.assert_array_equal(updates["w"], 0.0)
  np.testing.assert_allclose(updates["b"], -0.1 * 0.5 * params["b"], rtol=1e-6)


# --- Numerical check against NumPy transcriptions of the papers -------------------------------
# A least-squares loss on a 4x3 matrix and a bias, 25 steps. The references run in float64 on
# their own iterates (analytic gradients); the optimizers run in float32 under jit.

STEPS = 25


def _lsq_data(seed=0, outputs=3):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(8, 4)).astype(np.float32)
  y = rng.normal(size=(8, outputs)).astype(np.float32)
  params = {"w": rng.normal(size=(4, outputs)).astype(np.float32),
            "b": (0.5 * rng.normal(size=outputs)).astype(np.float32)}
  return x, y, params


def _lsq_loss_jax(x, y):
  def loss_fn(p):
    residual = x @ p["w"] + p["b"][None, :] - y
    return 0.5 * jnp.sum(residual**2) / x.shape[0]
  return loss_fn


def _lsq_loss_grad_np(x, y):
  x, y = x.astype(np.float64), y.astype(np.float64)

  def loss_grad(p):
    residual = x @ p["w"] + p["b"] - y
    n = x.shape[0]
    return 0.5 * np.sum(residual**2) / n, {"w": x.T @ residual / n, "b": residual.sum(0) / n}
  return loss_grad


def _trajectory(opt, loss_fn, params, steps=STEPS):
  @jax.jit
  def step(params, state):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, state = opt.update(grads, state, params, value=loss)
    return optax.apply_updates(params, updates), state

  params = jax.tree.map(jnp.asarray, params)
  state, out = opt.init(params), []
  for _ in range(steps):
    params, state = step(params, state)
    out.append(jax.tree.map(np.asarray, params))
  return out


def _assert_trajectories_match(got, want, start):
  assert len(got) == len(want) == STEPS
  for got_k, want_k in zip(got, want, strict=True):
    for key in want_k:
      np.testing.assert_allclose(got_k[key], want_k[key], rtol=1e-5, atol=1e-6, err_msg=key)
  # The check has teeth: the parameters moved far beyond the tolerance.
  assert max(np.max(np.abs(want[-1][k] - start[k])) for k in start) > 0.1


def _float64(params):
  return {k: np.asarray(v, np.float64) for k, v in params.items()}


def ngn_m_reference(params, loss_grad, c, beta, steps=STEPS):
  """Islamov et al. 2025, Algorithm 1 (NGN-M); beta = 0 is NGN (Orvieto & Xiao 2024):
  gamma_k = c / (1 + c/(2 f(x_k)) ||grad f(x_k)||^2),
  x_{k+1} = x_k - (1 - beta) gamma_k grad f(x_k) + beta (x_k - x_{k-1}),  x_{-1} = x_0."""
  x = _float64(params)
  x_prev, out = dict(x), []
  for _ in range(steps):
    f, g = loss_grad(x)
    gamma = c / (1 + c / (2 * f) * sum(np.sum(gi**2) for gi in g.values()))
    x, x_prev = {k: x[k] - (1 - beta) * gamma * g[k] + beta * (x[k] - x_prev[k]) for k in x}, x
    out.append(x)
  return out


def ngn_md_reference(params, loss_grad, c, beta, b2, eps, steps=STEPS):
  """NGN-MD: the NGN step in the metric Sigma_k = diag(sqrt(v_k / (1 - b2^k)) + eps), v the
  RMSprop average of g^2, with heavy-ball momentum:
  gamma_k = c / (1 + c/(2 f) g^T Sigma^-1 g), x_{k+1} = x_k - (1-beta) gamma_k Sigma^-1 g
  + beta (x_k - x_{k-1})."""
  x = _float64(params)
  x_prev, out = dict(x), []
  v = {k: np.zeros_like(a) for k, a in x.items()}
  for k_step in range(1, steps + 1):
    f, g = loss_grad(x)
    v = {k: b2 * v[k] + (1 - b2) * g[k] ** 2 for k in x}
    sigma = {k: np.sqrt(v[k] / (1 - b2**k_step)) + eps for k in x}
    gamma = c / (1 + c / (2 * f) * sum(np.sum(g[k] ** 2 / sigma[k]) for k in x))
    x, x_prev = {k: x[k] - (1 - beta) * gamma * g[k] / sigma[k] + beta * (x[k] - x_prev[k])
                 for k in x}, x
    out.append(x)
  return out


def adalayer_reference(params, loss_grad, lr, b1, b2, eps, per_output=(), split_last=None,
                       steps=STEPS):
  """Adalayer (Zhao et al. 2024): Adam's first moment per coordinate; one second moment per
  block, the mean of g^2 over the block; a block is a leaf, one output unit (column of a
  Flax kernel) for the leaves in ``per_output``, or one of ``split_last[k]`` equal groups of
  consecutive columns (q, k, v of a fused kernel)."""
  x = _float64(params)
  m = {k: np.zeros_like(a) for k, a in x.items()}
  split_last = split_last or {}

  def leaf_blocks(k, a):
    if k in per_output:
      return [(slice(None), j) for j in range(a.shape[1])]
    if k in split_last:
      width = a.shape[-1] // split_last[k]
      return [(..., slice(j * width, (j + 1) * width)) for j in range(split_last[k])]
    return [...]

  blocks = {k: leaf_blocks(k, a) for k, a in x.items()}
  v = {k: [0.0] * len(blocks[k]) for k in x}
  out = []
  for t in range(1, steps + 1):
    _, g = loss_grad(x)
    new_x = {}
    for k in x:
      m[k] = b1 * m[k] + (1 - b1) * g[k]
      new_x[k] = x[k].copy()
      for i, block in enumerate(blocks[k]):
        v[k][i] = b2 * v[k][i] + (1 - b2) * np.mean(g[k][block] ** 2)
        m_hat, v_hat = m[k][block] / (1 - b1**t), v[k][i] / (1 - b2**t)
        new_x[k][block] = x[k][block] - lr * m_hat / (np.sqrt(v_hat) + eps)
    x = new_x
    out.append(x)
  return out


def diffgrad_reference(params, loss_grad, lr, b1, b2, eps, steps=STEPS):
  """diffGrad (Dubey et al. 2019): xi_t = AbsSig(g_{t-1} - g_t) = 1/(1 + exp(-|g_{t-1} - g_t|)),
  theta_{t+1} = theta_t - lr xi_t m_hat_t / (sqrt(v_hat_t) + eps), g_0 = 0."""
  x = _float64(params)
  m = {k: np.zeros_like(a) for k, a in x.items()}
  v = {k: np.zeros_like(a) for k, a in x.items()}
  g_prev = {k: np.zeros_like(a) for k, a in x.items()}
  out = []
  for t in range(1, steps + 1):
    _, g = loss_grad(x)
    for k in x:
      m[k] = b1 * m[k] + (1 - b1) * g[k]
      v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
      xi = 1 / (1 + np.exp(-np.abs(g_prev[k] - g[k])))
      m_hat, v_hat = m[k] / (1 - b1**t), v[k] / (1 - b2**t)
      x = {**x, k: x[k] - lr * xi * m_hat / (np.sqrt(v_hat) + eps)}
    g_prev = g
    out.append(x)
  return out


def adagrad_norm_reference(params, loss_grad, eta, b0, steps=STEPS):
  """AdaGrad-Norm (Ward, Wu & Bottou, Algorithm 1): b_j^2 = b_{j-1}^2 + ||G_{j-1}||^2,
  x_j = x_{j-1} - eta G_{j-1} / b_j."""
  x, b_sq, out = _float64(params), b0**2, []
  for _ in range(steps):
    _, g = loss_grad(x)
    b_sq += sum(np.sum(gi**2) for gi in g.values())
    x = {k: x[k] - eta * g[k] / np.sqrt(b_sq) for k in x}
    out.append(x)
  return out


@pytest.mark.parametrize("beta", [0.0, 0.9])
def test_ngn_and_ngn_m_match_the_paper(beta):
  x, y, params = _lsq_data()
  opt = ngn(2.0) if beta == 0 else ngn_m(2.0, momentum=beta)
  got = _trajectory(opt, _lsq_loss_jax(x, y), params)
  want = ngn_m_reference(params, _lsq_loss_grad_np(x, y), c=2.0, beta=beta)
  _assert_trajectories_match(got, want, params)


def test_ngn_md_matches_the_reference():
  x, y, params = _lsq_data()
  got = _trajectory(ngn_md(0.3, momentum=0.8, b2=0.99, eps=1e-8), _lsq_loss_jax(x, y), params)
  want = ngn_md_reference(params, _lsq_loss_grad_np(x, y), c=0.3, beta=0.8, b2=0.99, eps=1e-8)
  _assert_trajectories_match(got, want, params)


@pytest.mark.parametrize("per_output,split_last", [((), None), (("w",), None),
                                                    ((), {"w": 3, "b": 2})])
def test_adalayer_matches_the_reference(per_output, split_last):
  x, y, params = _lsq_data(outputs=6)
  flags = {"w": "w" in per_output, "b": False}
  opt = adalayer(0.03, b1=0.9, b2=0.99, eps=1e-8, per_output=flags, split_last=split_last)
  got = _trajectory(opt, _lsq_loss_jax(x, y), params)
  want = adalayer_reference(params, _lsq_loss_grad_np(x, y), 0.03, 0.9, 0.99, 1e-8, per_output,
                            split_last)
  _assert_trajectories_match(got, want, params)


def test_adalayer_split_must_divide_the_last_axis():
  with pytest.raises(ValueError, match="split_last=4 must divide the last axis"):
    adalayer(0.1, split_last={"w": 4, "b": 1}).init({"w": jnp.zeros((2, 6)), "b": jnp.zeros(6)})


def test_diffgrad_matches_the_paper():
  x, y, params = _lsq_data()
  got = _trajectory(diffgrad(0.05, b1=0.9, b2=0.99), _lsq_loss_jax(x, y), params)
  want = diffgrad_reference(params, _lsq_loss_grad_np(x, y), 0.05, 0.9, 0.99, 1e-8)
  _assert_trajectories_match(got, want, params)


def test_adagrad_norm_matches_the_paper():
  x, y, params = _lsq_data()
  got = _trajectory(adagrad_norm(0.5, b0=0.1), _lsq_loss_jax(x, y), params)
  want = adagrad_norm_reference(params, _lsq_loss_grad_np(x, y), 0.5, 0.1)
  _assert_trajectories_match(got, want, params)


# AdamP needs scale-invariant weights to project: "w" is used column-normalised (each output
# channel of the Flax kernel), so its gradient is orthogonal to each column; "v" is a plain
# matrix (not projected) and "b" a bias (never projected).


def _adamp_data(seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(8, 4)).astype(np.float32)
  y = rng.normal(size=(8, 2)).astype(np.float32)
  params = {"w": rng.normal(size=(4, 3)).astype(np.float32),
            "v": rng.normal(size=(3, 2)).astype(np.float32),
            "b": (0.5 * rng.normal(size=2)).astype(np.float32)}
  return x, y, params


def _adamp_loss_jax(x, y):
  def loss_fn(p):
    unit = p["w"] / jnp.linalg.norm(p["w"], axis=0, keepdims=True)
    residual = x @ unit @ p["v"] + p["b"][None, :] - y
    return 0.5 * jnp.sum(residual**2) / x.shape[0]
  return loss_fn


def _adamp_loss_grad_np(x, y):
  x, y = x.astype(np.float64), y.astype(np.float64)

  def loss_grad(p):
    norms = np.linalg.norm(p["w"], axis=0)
    unit = p["w"] / norms
    hidden = x @ unit
    residual = hidden @ p["v"] + p["b"] - y
    d_out = residual / x.shape[0]
    d_unit = x.T @ (d_out @ p["v"].T)
    d_w = (d_unit - unit * np.sum(unit * d_unit, axis=0)) / norms
    return 0.5 * np.sum(residual**2) / x.shape[0], {"w": d_w, "v": hidden.T @ d_out,
                                                    "b": d_out.sum(0)}
  return loss_grad


def adamp_reference(params, loss_grad, lr, b1, b2, eps, delta, weight_decay, wd_ratio,
                    nesterov, decayed, steps=STEPS):
  """AdamP (Heo et al. 2021), Algorithm 2 with the reference code's views and weight decay:
  p_t = m_hat / (sqrt(v_hat) + eps); if |cos(w_t, g_t)| < delta / sqrt(dim w) per output
  channel (each column, dim = its length), else for the whole matrix, then
  q_t = Pi_w(p_t) = p_t - (w_hat . p_t) w_hat (w_hat = w / ||w||) in that view and the weight
  decay is scaled by wd_ratio; w_{t+1} = w_t - lr (q_t + weight_decay ratio w_t).
  Returns the trajectory, the views used and the smallest |cos - threshold| met."""
  x = _float64(params)
  m = {k: np.zeros_like(a) for k, a in x.items()}
  v = {k: np.zeros_like(a) for k, a in x.items()}
  out, views, margin = [], [], np.inf

  def cos(a, b):
    return abs(np.sum(a * b)) / (np.linalg.norm(a) * np.linalg.norm(b))

  def project(p, w):
    w_hat = w / np.linalg.norm(w)
    return p - np.sum(w_hat * p) * w_hat

  for t in range(1, steps + 1):
    _, g = loss_grad(x)
    new_x, used = {}, {}
    for k in x:
      m[k] = b1 * m[k] + (1 - b1) * g[k]
      v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
      m_num = b1 * m[k] + (1 - b1) * g[k] if nesterov else m[k]
      p = (m_num / (1 - b1**t)) / (np.sqrt(v[k] / (1 - b2**t)) + eps)
      ratio, used[k] = 1.0, "none"
      if x[k].ndim > 1:
        w, columns = x[k], range(x[k].shape[1])
        channel_cos = max(cos(g[k][:, j], w[:, j]) for j in columns)
        layer_cos = cos(g[k], w)
        channel_threshold = delta / np.sqrt(w.shape[0])
        layer_threshold = delta / np.sqrt(w.size)
        margin = min(margin, abs(channel_cos - channel_threshold))
        if channel_cos < channel_threshold:
          p = np.stack([project(p[:, j], w[:, j]) for j in columns], axis=1)
          ratio, used[k] = wd_ratio, "channel"
        else:
          margin = min(margin, abs(layer_cos - layer_threshold))
          if layer_cos < layer_threshold:
            p, ratio, used[k] = project(p, w), wd_ratio, "layer"
      decay = weight_decay * ratio if k in decayed else 0.0
      new_x[k] = x[k] - lr * decay * x[k] - lr * p
    x = new_x
    out.append(x)
    views.append(used)
  return out, views, margin


@pytest.mark.parametrize("weight_decay,nesterov", [(0.0, False), (0.05, True)])
def test_adamp_matches_the_paper(weight_decay, nesterov):
  x, y, params = _adamp_data()
  opt = adamp(0.05, b1=0.9, b2=0.99, eps=1e-8, weight_decay=weight_decay, delta=0.1,
              wd_ratio=0.1, nesterov=nesterov, mask={"w": True, "v": True, "b": False})
  got = _trajectory(opt, _adamp_loss_jax(x, y), params)
  want, views, margin = adamp_reference(
      params, _adamp_loss_grad_np(x, y), 0.05, 0.9, 0.99, 1e-8, delta=0.1,
      weight_decay=weight_decay, wd_ratio=0.1, nesterov=nesterov, decayed=("w", "v"))
  # All three branches are exercised ("v" nears orthogonality to its gradient for a few
  # steps), and never so close to a threshold that float32 could take the other one.
  assert all(view["w"] == "channel" and view["b"] == "none" for view in views)
  assert {view["v"] for view in views} == {"none", "layer"}
  assert margin > 1e-3
  _assert_trajectories_match(got, want, params)
