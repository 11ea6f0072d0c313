import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

import optimizers


def _cfg(name="sgd", **kw):
  cfg = dict(name=name, learning_rate=0.1, kwargs={}, weight_decay=0.0,
             decay_roles=("hidden", "head", "embedding", "conv"), grad_clip_norm=0.0,
             schedule=dict(name="constant", warmup_steps=0, end_factor=0.0, decay_fraction=0.2))
  cfg.update(kw)
  return ml_collections.ConfigDict(cfg)


def test_unknown_optimizer_lists_valid_names():
  with pytest.raises(ValueError, match="valid names are .*adamw.*sgd"):
    optimizers.build(_cfg("adamm"), total_steps=10)


def test_bad_hyperparameters_fail_at_build_time():
  with pytest.raises(ValueError, match="learning_rate=-0.1"):
    optimizers.build(_cfg(learning_rate=-0.1), total_steps=10)
  with pytest.raises(ValueError, match="kwargs.b2=1.5"):
    optimizers.build(_cfg("adam", kwargs=dict(b2=1.5)), total_steps=10)
  with pytest.raises(ValueError, match="takes no argument beta1.*valid optimizer.kwargs"):
    optimizers.build(_cfg("adam", kwargs=dict(beta1=0.9)), total_steps=10)


@pytest.mark.parametrize("name,expected", [
    ("constant", [1.0] * 11),
    ("warmup_constant", [0.0, 0.25, 0.5, 0.75] + [1.0] * 7),
    ("wsd", [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 0.7, 0.4, 0.1]),
])
def test_schedules_match_their_definition(name, expected):
  cfg = ml_collections.ConfigDict(dict(name=name, warmup_steps=4, end_factor=0.1,
                                       decay_fraction=0.3))
  schedule = optimizers.build_schedule(cfg, 1.0, 10)
  np.testing.assert_allclose([schedule(i) for i in range(11)], expected, atol=1e-6)


def test_warmup_cosine_matches_the_formula():
  cfg = ml_collections.ConfigDict(dict(name="warmup_cosine", warmup_steps=4, end_factor=0.1,
                                       decay_fraction=0.2))
  schedule = optimizers.build_schedule(cfg, 2.0, 20)
  for t in range(4, 21):
    frac = (t - 4) / 16
    want = 0.2 + (2.0 - 0.2) * 0.5 * (1 + np.cos(np.pi * frac))
    np.testing.assert_allclose(schedule(t), want, rtol=1e-5)


def test_weight_decay_mask_spares_norms_and_biases():
  params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2), "scale": jnp.ones(2)}
  roles = {"w": "hidden", "b": "bias", "scale": "norm"}
  zero = jax.tree.map(jnp.zeros_like, params)
  for name in ("sgd", "adamw"):
    tx = optimizers.build(_cfg(name, weight_decay=0.5), total_steps=10, param_labels=roles)
    updates, _ = tx.update(zero, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], -0.1 * 0.5 * np.ones((2, 2)), rtol=1e-6)
    np.testing.assert_array_equal(updates["b"], 0.0)
    np.testing.assert_array_equal(updates["scale"], 0.0)


def test_sgd_momentum_nesterov_and_clipping_match_the_rule():
  lr, mu, clip = 0.1, 0.9, 1.0
  tx = optimizers.build(_cfg("sgd", kwargs=dict(momentum=mu, nesterov=True),
                             grad_clip_norm=clip), total_steps=10)
  x = jnp.array([3.0, -4.0])
  state = tx.init(x)
  ref_x, ref_m = np.array([3.0, -4.0]), np.zeros(2)
  for _ in range(5):
    g = 2 * x  # gradient of |x|^2
    updates, state = tx.update(g, state, x)
    x = optax.apply_updates(x, updates)
    g_ref = 2 * ref_x
    g_ref = g_ref * min(1.0, clip / np.linalg.norm(g_ref))
    ref_m = mu * ref_m + g_ref
    ref_x = ref_x - lr * (g_ref + mu * ref_m)
    np.testing.assert_allclose(x, ref_x, rtol=1e-5)


def test_learning_rate_is_readable_from_state_and_matches_schedule():
  cfg = _cfg("adamw", schedule=dict(name="warmup_cosine", warmup_steps=3, end_factor=0.0,
                                    decay_fraction=0.2))
  tx = optimizers.build(cfg, total_steps=10)
  schedule = optimizers.build_schedule(cfg.schedule, 0.1, 10)
  params = jnp.ones(3)
  state = tx.init(params)
  update = jax.jit(tx.update)
  for t in range(6):
    _, state = update(params, state, params)
    np.testing.assert_allclose(optimizers.learning_rate(state), schedule(t), rtol=1e-6)


def test_one_config_switches_between_methods():
  """A config holding Adam's and SGD's hyperparameters builds either; each takes its own."""
  kwargs = dict(b1=0.0, b2=0.5, eps=1e-8, momentum=0.5, nesterov=False)
  x = jnp.array([1.0, -2.0])
  g = jnp.array([0.5, 0.25])
  sgd = optimizers.build(_cfg("sgd", kwargs=kwargs), total_steps=10)
  updates, _ = sgd.update(g, sgd.init(x), x)
  np.testing.assert_allclose(updates, -0.1 * g, rtol=1e-6)  # first step of heavy ball
  adam = optimizers.build(_cfg("adam", kwargs=kwargs), total_steps=10)
  updates, _ = adam.update(g, adam.init(x), x)
  np.testing.assert_allclose(updates, -0.1 * np.sign(g), rtol=1e-5)  # bias-corrected first step


def test_by_role_groups_give_each_role_its_own_method():
  roles_of = lambda params: {"w": "hidden", "b": "bias", "e": "embedding"}
  params = {"w": jnp.eye(4) + 0.1, "b": jnp.ones(4), "e": jnp.ones((8, 4))}
  grads = jax.tree.map(lambda p: jnp.cos(jnp.arange(p.size, dtype=jnp.float32)).reshape(p.shape),
                       params)
  cfg = _cfg("adamw", learning_rate=0.01, kwargs=dict(b1=0.9, b2=0.99))
  cfg.by_role = dict(hidden=dict(name="muon", learning_rate=0.02, kwargs=dict(beta=0.9)))
  tx = optimizers.build(cfg, total_steps=10, param_labels=roles_of)
  state = tx.init(params)
  updates, state = jax.jit(tx.update)(grads, state, params)
  rates = optimizers.learning_rates(state)
  np.testing.assert_allclose(rates["default"], 0.01)
  np.testing.assert_allclose(rates["hidden"], 0.02)

  muon = optax.contrib.muon(0.02, beta=0.9, weight_decay=0.0)
  want_w, _ = muon.update({"w": grads["w"]}, muon.init({"w": params["w"]}), {"w": params["w"]})
  np.testing.assert_allclose(updates["w"], want_w["w"], rtol=1e-4, atol=1e-6)  # jit vs eager NS
  adamw = optax.adamw(0.01, b1=0.9, b2=0.99, weight_decay=0.0)
  rest = {k: params[k] for k in ("b", "e")}
  want, _ = adamw.update({k: grads[k] for k in rest}, adamw.init(rest), rest)
  for k in ("b", "e"):
    np.testing.assert_allclose(updates[k], want[k], rtol=1e-5)


def test_by_role_without_role_function_is_refused():
  cfg = _cfg("adamw")
  cfg.by_role = dict(hidden=dict(name="muon", learning_rate=0.02))
  with pytest.raises(ValueError, match="by_role needs param_labels"):
    optimizers.build(cfg, total_steps=10)
  cfg.by_role.hidden.name = "muonn"
  with pytest.raises(ValueError, match="unknown optimizer 'muonn'"):
    optimizers.build(cfg, total_steps=10, param_labels=lambda p: p)
