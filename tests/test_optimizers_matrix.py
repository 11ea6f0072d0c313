"""Scion/uScion and their LMOs, SOAP and Shampoo against NumPy transcriptions of their rules.

The checks every method passes are in ``test_optimizer_battery.py``.

The references below are written from the papers and the authors' PyTorch code (LIONS-EPFL/scion
``scion.py``, nikhilvyas/SOAP ``soap.py``, Shampoo's Algorithms 1-2), in float64 and, for Scion,
in PyTorch's (out, in) layout, so that a layout slip in the Flax code shows up as a mismatch.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import minimize
from matrix_problems import assert_trajectories_match, jax_trajectory, np_grads, problem

from optimizers._scion import (
  DEFAULT_RADII,
  bias_rms,
  column_norm,
  newton_schulz,
  row_norm,
  scale_by_scion,
  scion,
  sign,
  spectral,
  spectral_conv,
  uscion,
)
from optimizers._shampoo import shampoo
from optimizers._soap import soap

# ---------------------------------------------------------------------------------------------
# Small problems for the options only these methods have.

N = 8
_RNG = np.random.default_rng(1)
_A = jnp.asarray(np.eye(N) + 0.3 * _RNG.standard_normal((N, N)), jnp.float32)
_B = jnp.asarray(_RNG.standard_normal((N, N)), jnp.float32)
_C = jnp.asarray(_RNG.standard_normal(N), jnp.float32)
QUAD_ROLES = {"w": "hidden", "b": "bias"}


def quadratic(params):
  """0.5 ||A W - B||^2 / n + 0.5 ||b - c||^2: a square matrix and a vector parameter."""
  return (0.5 * jnp.sum(jnp.square(_A @ params["w"] - _B)) / N
          + 0.5 * jnp.sum(jnp.square(params["b"] - _C)))


def rosenbrock(params):
  x = params["x"]
  return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


def quad_params(dtype=jnp.float32):
  return {"w": jnp.zeros((N, N), dtype), "b": jnp.zeros(N, dtype)}


@pytest.mark.parametrize("factory", [
    lambda steps: soap(optax.linear_schedule(0.01, 0.0, steps), weight_decay=0.0,
                       precondition_1d=True),
    lambda steps: shampoo(0.3, precondition_1d=True),
], ids=["soap", "shampoo"])
def test_rotated_vectors_converge_on_rosenbrock(factory):
  """The matrix machinery on a vector: SOAP's eigenbasis, Shampoo's full-matrix AdaGrad."""
  steps = 3000
  params, _ = minimize(factory(steps), rosenbrock, {"x": jnp.array([-1.2, 1.0])}, steps)
  assert rosenbrock(params) < 1e-2, params["x"]


def test_inject_hyperparams_with_every_argument_as_given():
  """Each factory straight into inject_hyperparams: floats and ints become arrays."""
  params = quad_params()
  txs = [
      optax.inject_hyperparams(scion)(0.1, 0.2, param_labels=QUAD_ROLES),
      optax.inject_hyperparams(uscion)(0.1, 0.2, param_labels=QUAD_ROLES),
      optax.inject_hyperparams(soap, static_args="max_precond_dim")(precondition_frequency=2),
      optax.inject_hyperparams(shampoo, static_args="max_precond_dim")(0.1,
                                                                       precondition_frequency=2),
  ]
  for tx in txs:
    state = tx.init(params)
    for _ in range(3):
      updates, state = jax.jit(tx.update)(jax.grad(quadratic)(params), state, params)
      params = optax.apply_updates(params, updates)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(params))


@pytest.mark.parametrize("build,message", [
    (lambda: scion(-0.1, param_labels=QUAD_ROLES), "learning_rate=-0.1"),
    (lambda: uscion(-1e-3, param_labels=QUAD_ROLES), "learning_rate=-0.001"),
    (lambda: scion(0.1, 1.5, param_labels=QUAD_ROLES), "momentum=1.5"),
    (lambda: uscion(0.1, 0.0, param_labels=QUAD_ROLES), "momentum=0.0"),
    (lambda: scion(0.1, param_labels=QUAD_ROLES, radii={"hidden": -1.0}), "radii"),
    (lambda: scion(0.1, param_labels=QUAD_ROLES, lmos={"hidden": "spectrall"}), "spectral"),
    (lambda: soap(-3e-3), "learning_rate=-0.003"),
    (lambda: soap(b1=1.0), "b1=1.0"),
    (lambda: soap(b2=-0.5), "b2=-0.5"),
    (lambda: soap(shampoo_beta=1.2), "shampoo_beta=1.2"),
    (lambda: soap(weight_decay=-0.1), "weight_decay=-0.1"),
    (lambda: soap(precondition_frequency=0), "precondition_frequency=0"),
    (lambda: shampoo(-0.1), "learning_rate=-0.1"),
    (lambda: shampoo(0.1, eps=0.0), "eps=0.0"),
])
def test_out_of_range_hyperparameters_fail_at_build_time(build, message):
  with pytest.raises(ValueError, match=message):
    build()


def test_unknown_role_is_refused_with_the_known_roles():
  tx = scion(0.1, param_labels={"w": "hiden", "b": "bias"})
  with pytest.raises(ValueError, match="'hiden'.*embedding.*hidden"):
    tx.init(quad_params())


# ---------------------------------------------------------------------------------------------
# The LMOs: Newton-Schulz band and duality.

# Newton-Schulz keeps the singular vectors and maps each singular value x of G / ||G||_F by the
# quintic p(x) = a x + b x^3 + c x^5, five times; Muon's and Scion's coefficients (Jordan et al.,
# the authors' ``zeropower_via_newtonschulz5``) trade exactness for speed.
_QUINTIC = (3.4445, -4.7750, 2.0315)
_U32 = 2.0**-24  # float32 unit roundoff


def _quintic_image(x, n, steps=5):
  """p applied ``steps`` times to normalised singular values ``x``, and the float32 error bound.

  Each step's products sum at most ``n`` terms; their rounding moves a singular value by at most
  10 sqrt(n) u (the probabilistic bound for dot products, Higham & Mary 2019, with a margin),
  and later steps carry an earlier error forward by |p'(x)|.
  """
  a, b, c = _QUINTIC
  x, err = np.asarray(x, np.float64), np.zeros_like(x, dtype=np.float64)
  for _ in range(steps):
    err = np.abs(a + 3 * b * x**2 + 5 * c * x**4) * err + 10 * math.sqrt(n) * _U32
    x = a * x + b * x**3 + c * x**5
  return x, err


def _band(smallest, steps=5):
  """Where p^steps sends normalised singular values in [smallest, 1]: the band of the output."""
  y, _ = _quintic_image(np.linspace(smallest, 1.0, 100_001), 1, steps)
  return float(y.min()), float(y.max())


def _with_spectrum(rng, m, n, kappa):
  u, _ = np.linalg.qr(rng.standard_normal((m, m)))
  v, _ = np.linalg.qr(rng.standard_normal((n, n)))
  s = np.exp(rng.uniform(-np.log(kappa), 0, min(m, n)))
  s[0], s[-1] = 1.0, 1.0 / kappa
  return u[:, :min(m, n)] @ np.diag(s) @ v[:, :min(m, n)].T


def test_newton_schulz_maps_singular_values_by_the_quintic():
  rng = np.random.default_rng(0)
  cases = [rng.standard_normal(shape) for shape in [(32, 64), (64, 32), (16, 128), (128, 256)]
           for _ in range(3)]
  cases += [_with_spectrum(rng, 32, 32, 10.0) for _ in range(3)]
  cases += [_with_spectrum(rng, 24, 40, 100.0) for _ in range(3)]
  orthogonalise = jax.jit(newton_schulz)
  for g in cases:
    g32 = np.asarray(jnp.asarray(g, jnp.float32), np.float64)
    x = np.linalg.svd(g32, compute_uv=False) / (np.linalg.norm(g32) + 1e-7)
    want, err = _quintic_image(x, max(g.shape))
    got = np.linalg.svd(np.asarray(orthogonalise(jnp.asarray(g, jnp.float32)), np.float64),
                        compute_uv=False)
    # p is not monotone: compare the sorted values (sorting moves none by more than max(err))
    np.testing.assert_allclose(np.sort(got), np.sort(want), rtol=0, atol=err.max())
  # The band the docstring states: every singular value above 1% of ||G||_F lands in
  # [0.68, 1.14] (above 0.3%: [0.68, 1.21]), and an input far from orthogonal is moved into it.
  assert (0.68, 1.13) < _band(0.01) < (0.69, 1.14)
  assert (0.68, 1.20) < _band(0.003) < (0.69, 1.21)


def _nuclear(g):
  return np.linalg.svd(g, compute_uv=False).sum()


# name -> (lmo, its norm, the dual norm), all for Flax (in, out) kernels / vectors.
_D = {
    "sign": (sign,
             lambda w: np.abs(w).max() * w.shape[0],
             lambda g: np.abs(g).sum() / g.shape[0]),
    "column_norm": (column_norm,
                    lambda w: np.sqrt(np.mean(w ** 2, axis=1)).max(),
                    lambda g: math.sqrt(g.shape[1]) * np.linalg.norm(g, axis=1).sum()),
    "row_norm": (row_norm,
                 lambda w: math.sqrt(w.shape[0]) * np.linalg.norm(w, axis=0).max(),
                 lambda g: np.linalg.norm(g, axis=0).sum() / math.sqrt(g.shape[0])),
    "bias_rms": (bias_rms,
                 lambda w: np.sqrt(np.mean(w ** 2)),
                 lambda g: math.sqrt(g.size) * np.linalg.norm(g)),
}


@pytest.mark.parametrize("name", _D)
def test_lmo_attains_the_dual_norm(name):
  lmo, norm, dual = _D[name]
  rng = np.random.default_rng(0)
  for shape in ([(12,), (40,)] if name == "bias_rms" else [(6, 10), (10, 6), (7, 7)]):
    g = rng.standard_normal(shape)
    s = np.asarray(lmo(jnp.asarray(g, jnp.float32)), np.float64)
    np.testing.assert_allclose(norm(s), 1.0, rtol=1e-5)  # on the unit sphere of its norm
    np.testing.assert_allclose(np.vdot(g, s), dual(g), rtol=1e-5)  # <g, lmo(g)> = ||g||_*
    for _ in range(200):  # and no point of the unit ball does better
      w = rng.standard_normal(shape)
      assert np.vdot(g, w / norm(w)) <= dual(g) * (1 + 1e-6)


def test_spectral_lmos_attain_the_dual_norm_up_to_the_quintic():
  """<G, lmo(G)> = scale * sum_i s_i p^5(s_i / ||G||_F): the nuclear norm where p^5 would be 1."""
  rng = np.random.default_rng(0)

  def check(g, s, scale):
    g = g.reshape(-1, g.shape[-1])
    s = s.reshape(g.shape)
    sv = np.linalg.svd(g, compute_uv=False)
    y, err = _quintic_image(sv / np.linalg.norm(g), max(g.shape))
    np.testing.assert_allclose(np.vdot(g, s) / scale, np.dot(sv, y), rtol=0,
                               atol=np.dot(sv, err) + 1e-6 * np.dot(sv, y))
    np.testing.assert_allclose(np.linalg.norm(s, 2) / scale, y.max(), rtol=0,
                               atol=err.max() + 1e-6)
    lo, hi = _band(0.01)
    assert lo <= np.vdot(g, s) / (scale * _nuclear(g)) <= hi  # well-spread: inside the band

  for d_in, d_out in [(16, 32), (32, 16)]:
    g = np.asarray(jnp.asarray(rng.standard_normal((d_in, d_out)), jnp.float32), np.float64)
    s = np.asarray(spectral(jnp.asarray(g, jnp.float32)), np.float64)
    check(g, s, math.sqrt(d_out / d_in))  # the RMS->RMS norm of W is sqrt(d_in/d_out) ||W||_2
  kernel = np.asarray(jnp.asarray(rng.standard_normal((3, 3, 8, 32)), jnp.float32), np.float64)
  s = np.asarray(spectral_conv(jnp.asarray(kernel, jnp.float32)), np.float64)
  check(kernel, s, math.sqrt(32 / 8) / 9)  # (kh, kw, in, out): the kernel as (kh kw in, out)


def test_scion_picks_the_lmo_and_radius_of_each_role():
  rng = np.random.default_rng(0)
  params = {"embedding": rng.standard_normal((10, 6)), "hidden": rng.standard_normal((6, 6)),
            "head": rng.standard_normal((6, 10)), "norm": rng.standard_normal(6),
            "bias": rng.standard_normal(6), "conv": rng.standard_normal((3, 3, 2, 4))}
  params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
  roles = {k: k for k in params}
  tx = scale_by_scion(1.0, param_labels=lambda p: {k: k for k in p})
  updates, _ = tx.update(params, tx.init(params))
  lmo = {"embedding": column_norm, "hidden": spectral, "head": sign, "norm": bias_rms,
         "bias": bias_rms, "conv": spectral_conv}
  for role in roles:
    np.testing.assert_allclose(updates[role], DEFAULT_RADII[role] * lmo[role](params[role]),
                               rtol=1e-6)


def test_scion_runs_on_the_models_own_roles():
  import models
  model = models.GPT(vocab_size=256, max_len=32, width=32, depth=2, num_heads=2)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((2, 8), jnp.int32))
  params = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), shapes["params"])
  tx = scion(2.0 ** -12, param_labels=models.param_roles)
  updates, _ = jax.jit(tx.update)(params, tx.init(params), params)
  assert jax.tree.structure(updates) == jax.tree.structure(params)
  # The final norm's scale and bias are unit-RMS directions: (2**-12)(50 * 1 + 1) per entry.
  np.testing.assert_allclose(updates["final_norm"]["scale"], -(2.0 ** -12) * 51, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Numerical checks against NumPy transcriptions, on stochastic matrix quadratics
# f_k(P) = 0.5 ||A_k P - B_k||^2 per matrix (Flax layout), 0.5 ||P - C_k||^2 otherwise.

# --- Scion, transcribed from LIONS-EPFL/scion scion.py, PyTorch layout, float64.

def _ref_zeropower_via_newtonschulz5(g, steps=5):
  a, b, c = (3.4445, -4.7750, 2.0315)
  x = g.copy()
  if g.shape[0] > g.shape[1]:
    x = x.T
  x = x / (np.linalg.norm(x) + 1e-7)
  for _ in range(steps):
    m = x @ x.T
    x = a * x + (b * m + c * m @ m) @ x
  if g.shape[0] > g.shape[1]:
    x = x.T
  return x


def _ref_spectral(g):  # Spectral(): g is (out, in)
  d_out, d_in = g.shape
  return _ref_zeropower_via_newtonschulz5(g) * (d_out / d_in) ** 0.5


def _ref_spectral_conv(g):  # SpectralConv(): g is (out, in, k, k)
  out = _ref_zeropower_via_newtonschulz5(g.reshape(len(g), -1)).reshape(g.shape)
  out_channels, in_channels, k, _ = g.shape
  return out * (out_channels / in_channels) ** 0.5 / k ** 2


def _ref_sign(g):  # Sign(): g is (out, in)
  return np.sign(g) / g.shape[1]


def _ref_colnorm_transposed(g):  # ColNorm(transpose=True) on an nn.Embedding weight (V, D)
  g = g.T
  rms = 1 / math.sqrt(g.shape[0]) * np.sqrt(np.sum(g ** 2, axis=0, keepdims=True))
  return (g / (rms + 1e-8)).T


def _ref_bias_rms(g):  # BiasRMS()
  return g / (np.sqrt(np.mean(g ** 2, axis=0, keepdims=True)) + 1e-8)


# Flax -> PyTorch layout: dense (in, out) -> (out, in); conv (kh, kw, in, out) -> (out, in, kh, kw);
# an embedding table is (vocab, width) in both.
_TO_TORCH = {"w": lambda x: x.T, "h": lambda x: x.T, "e": lambda x: x,
             "k": lambda x: x.transpose(3, 2, 0, 1), "b": lambda x: x}
_FROM_TORCH = {"w": lambda x: x.T, "h": lambda x: x.T, "e": lambda x: x,
               "k": lambda x: x.transpose(2, 3, 1, 0), "b": lambda x: x}
_SCION_ROLES = {"w": "hidden", "h": "head", "e": "embedding", "k": "conv", "b": "bias"}
_REF_NORMS = {"hidden": _ref_spectral, "head": _ref_sign, "embedding": _ref_colnorm_transposed,
              "conv": _ref_spectral_conv, "bias": _ref_bias_rms}


def _ref_scion(start, data, *, lr, momentum, scales, unconstrained):
  """Scion.step() per parameter group, on PyTorch-layout copies of the parameters."""
  params = {k: _TO_TORCH[k](v.copy()) for k, v in start.items()}
  bufs = {k: np.zeros_like(v) for k, v in params.items()}
  trajectory = []
  for step in data:
    flax_params = {k: _FROM_TORCH[k](v) for k, v in params.items()}
    grads = {k: _TO_TORCH[k](g) for k, g in np_grads(flax_params, step).items()}
    for k, p in params.items():
      bufs[k] = bufs[k] * (1 - momentum) + momentum * grads[k]
      update = scales[_SCION_ROLES[k]] * _REF_NORMS[_SCION_ROLES[k]](bufs[k])
      if not unconstrained:
        p = p * (1 - lr)
      params[k] = p - lr * update
    trajectory.append({k: _FROM_TORCH[k](v) for k, v in params.items()})
  return trajectory


@pytest.mark.parametrize("unconstrained,lr,radii,start_scale", [
    (False, 0.05, {"hidden": 2.0, "head": 30.0, "embedding": 1.0, "conv": 2.0, "bias": 1.0}, 1.0),
    (True, 2.0 ** -10, None, 0.02),  # the reference nanoGPT radii (hidden 50, head 3000)
])
def test_scion_matches_the_reference_code(unconstrained, lr, radii, start_scale):
  shapes = {"w": (6, 6), "h": (6, 4), "e": (5, 6), "k": (3, 3, 2, 4), "b": (6,)}
  start, data = problem(shapes, seed=3, start_scale=start_scale)
  make = uscion if unconstrained else scion
  tx = make(lr, 0.1, param_labels=_SCION_ROLES, radii=radii)
  scales = {**DEFAULT_RADII, **(radii or {})}
  reference = _ref_scion(start, data, lr=lr, momentum=0.1, scales=scales,
                         unconstrained=unconstrained)
  assert_trajectories_match(jax_trajectory(tx, start, data), reference, start)


def test_scion_momentum_is_the_weight_on_the_new_gradient():
  g1, g2 = jnp.full((3,), 2.0), jnp.asarray([1.0, -3.0, 2.0])
  tx = scale_by_scion(0.25, param_labels={"b": "bias"}, radii={"bias": 1.0},
                      lmos={"bias": lambda m: m})
  state = tx.init({"b": g1})
  first, state = tx.update({"b": g1}, state)
  second, _ = tx.update({"b": g2}, state)
  np.testing.assert_allclose(first["b"], 0.25 * g1)  # from zero, no bias correction
  np.testing.assert_allclose(second["b"], 0.75 * 0.25 * g1 + 0.25 * g2)


# --- SOAP, transcribed from nikhilvyas/SOAP soap.py (SOAP.step and its helpers), float64.

def _ref_soap(start, data, *, lr, betas, eps, weight_decay, precondition_frequency,
              max_precond_dim=10000):
  beta1, beta2 = betas
  shampoo_beta = beta2  # shampoo_beta=-1
  params = {k: v.copy() for k, v in start.items()}
  states = {k: {} for k in params}

  def project(grad, q):
    for mat in q:
      if len(mat) > 0:
        grad = np.tensordot(grad, mat, axes=([0], [0]))
      else:
        grad = np.transpose(grad, list(range(1, grad.ndim)) + [0])
    return grad

  def project_back(grad, q):
    for mat in q:
      if len(mat) > 0:
        grad = np.tensordot(grad, mat, axes=([0], [1]))
      else:
        grad = np.transpose(grad, list(range(1, grad.ndim)) + [0])
    return grad

  def get_orthogonal_matrix(mats):
    return [[] if len(m) == 0 else np.flip(np.linalg.eigh(m)[1], axis=1) for m in mats]

  def get_orthogonal_matrix_qr(state):
    exp_avg_sq = state["exp_avg_sq"]
    final = []
    for ind, (m, o) in enumerate(zip(state["GG"], state["Q"], strict=True)):
      if len(m) == 0:
        final.append([])
        continue
      est_eig = np.diag(o.T @ m @ o)
      sort_idx = np.argsort(-est_eig, kind="stable")
      exp_avg_sq = np.take(exp_avg_sq, sort_idx, axis=ind)
      o = o[:, sort_idx]
      final.append(np.linalg.qr(m @ o)[0])
    state["exp_avg_sq"] = exp_avg_sq
    return final

  def update_preconditioner(grad, state):
    if state["Q"] is not None:
      state["exp_avg"] = project_back(state["exp_avg"], state["Q"])
    if grad.ndim > 1:
      for idx, sh in enumerate(grad.shape):
        if sh <= max_precond_dim:
          others = [i for i in range(grad.ndim) if i != idx]
          outer = np.tensordot(grad, grad, axes=(others, others))
          state["GG"][idx] = state["GG"][idx] + (1 - shampoo_beta) * (outer - state["GG"][idx])
    if state["Q"] is None:
      state["Q"] = get_orthogonal_matrix(state["GG"])
    if state["step"] > 0 and state["step"] % precondition_frequency == 0:
      state["Q"] = get_orthogonal_matrix_qr(state)
    if state["step"] > 0:
      state["exp_avg"] = project(state["exp_avg"], state["Q"])

  trajectory = []
  for step in data:
    grads = np_grads(params, step)
    for k, p in params.items():
      grad, state = grads[k], states[k]
      if "step" not in state:
        state["step"] = 0
        state["exp_avg"] = np.zeros_like(grad)
        state["exp_avg_sq"] = np.zeros_like(grad)
      if "Q" not in state:  # init_preconditioner (precondition_1d=False)
        state["GG"] = ([[]] if grad.ndim == 1 else
                       [np.zeros((sh, sh)) if sh <= max_precond_dim else [] for sh in grad.shape])
        state["Q"] = None
        update_preconditioner(grad, state)
        continue
      grad_projected = project(grad, state["Q"])
      state["step"] += 1
      state["exp_avg"] = beta1 * state["exp_avg"] + (1 - beta1) * grad_projected
      state["exp_avg_sq"] = beta2 * state["exp_avg_sq"] + (1 - beta2) * grad_projected ** 2
      denom = np.sqrt(state["exp_avg_sq"]) + eps
      step_size = lr * (1 - beta2 ** state["step"]) ** 0.5 / (1 - beta1 ** state["step"])
      norm_grad = project_back(state["exp_avg"] / denom, state["Q"])
      p = p - step_size * norm_grad
      if weight_decay > 0:
        p = p - lr * weight_decay * p
      params[k] = p
      update_preconditioner(grad, state)
    trajectory.append({k: v.copy() for k, v in params.items()})
  return trajectory


def test_soap_matches_the_reference_code():
  start, data = problem({"w": (6, 6), "b": (6,)}, seed=0,
                         first_singular_values=np.linspace(3.0, 1.0, 6))
  kwargs = dict(lr=0.05, eps=1e-8, weight_decay=0.01, precondition_frequency=3)
  reference = _ref_soap(start, data, betas=(0.95, 0.95), **kwargs)
  np.testing.assert_array_equal(reference[0]["w"], start["w"])  # its first call only initialises
  ours = jax_trajectory(soap(0.05, 0.95, 0.95, 1e-8, 0.01, 3), start, data)
  np.testing.assert_allclose(ours[0]["w"], start["w"], rtol=1e-7)
  assert_trajectories_match(ours[1:], reference[1:], start)
  # The check can fail: Adam with the same decay (no factors) is far from the reference.
  adam = jax_trajectory(soap(0.05, 0.95, 0.95, 1e-8, 0.01, 3, max_precond_dim=1), start, data)
  with pytest.raises(AssertionError):
    assert_trajectories_match(adam[1:], reference[1:], start, rtol=1e-2)


# --- Shampoo, transcribed from the paper's Algorithms 1 (matrices) and 2 (order-k tensors).

def _matrix_power(h, power):
  w, v = np.linalg.eigh(h)
  return (v * w ** power) @ v.T


def _ref_shampoo(start, data, *, lr, eps, precondition_frequency):
  params = {k: v.copy() for k, v in start.items()}
  stats, roots = {}, {}
  for k, p in params.items():
    if p.ndim == 1:  # our documented choice for vectors: diagonal AdaGrad with eps
      stats[k] = np.full(p.shape, eps)
    else:
      stats[k] = [eps * np.eye(n) for n in p.shape]
  trajectory = []
  for t, step in enumerate(data, start=1):
    grads = np_grads(params, step)
    for k, g in grads.items():
      if g.ndim == 1:
        stats[k] = stats[k] + g ** 2
        params[k] = params[k] - lr * g / np.sqrt(stats[k])
      elif g.ndim == 2:  # Algorithm 1: L += G G^T, R += G^T G, W -= lr L^-1/4 G R^-1/4
        left, right = stats[k]
        stats[k] = [left + g @ g.T, right + g.T @ g]
        if (t - 1) % precondition_frequency == 0:
          roots[k] = [_matrix_power(h, -1 / 4) for h in stats[k]]
        params[k] = params[k] - lr * roots[k][0] @ g @ roots[k][1]
      else:  # Algorithm 2 for an order-3 tensor: H^i += G_(i) G_(i)^T, exponent -1/(2k)
        h1, h2, h3 = stats[k]
        stats[k] = [h1 + np.einsum("ajk,bjk->ab", g, g), h2 + np.einsum("iak,ibk->ab", g, g),
                    h3 + np.einsum("ija,ijb->ab", g, g)]
        if (t - 1) % precondition_frequency == 0:
          roots[k] = [_matrix_power(h, -1 / 6) for h in stats[k]]
        r1, r2, r3 = roots[k]
        params[k] = params[k] - lr * np.einsum("ai,bj,ck,ijk->abc", r1, r2, r3, g)
    trajectory.append({k: v.copy() for k, v in params.items()})
  return trajectory


@pytest.mark.parametrize("precondition_frequency", [1, 3])
def test_shampoo_matches_the_paper(precondition_frequency):
  start, data = problem({"w": (6, 6), "t": (2, 3, 4), "b": (6,)}, seed=1,
                         first_singular_values=np.linspace(3.0, 1.0, 6))
  reference = _ref_shampoo(start, data, lr=0.1, eps=1e-4,
                           precondition_frequency=precondition_frequency)
  tx = shampoo(0.1, 1e-4, precondition_frequency=precondition_frequency)
  assert_trajectories_match(jax_trajectory(tx, start, data), reference, start)


def test_shampoo_vectors_get_full_matrix_adagrad_on_request():
  rng = np.random.default_rng(0)
  x, eps, lr = rng.standard_normal(5), 0.1, 0.1
  grads = [rng.standard_normal(5) for _ in range(8)]
  tx = shampoo(lr, eps, precondition_1d=True)
  state = tx.init(jnp.asarray(x, jnp.float32))
  h = eps * np.eye(5)
  for g in grads:
    updates, state = tx.update(jnp.asarray(g, jnp.float32), state)
    h = h + np.outer(g, g)
    np.testing.assert_allclose(updates, -lr * _matrix_power(h, -1 / 2) @ g, rtol=2e-5)
