import re

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


def _refused(cfg, *patterns, total_steps=10):
  """``build`` refuses ``cfg`` with one line that matches every pattern (the key, the fix)."""
  with pytest.raises(ValueError) as raised:
    optimizers.build(ml_collections.ConfigDict(cfg), total_steps=total_steps,
                     param_labels=lambda params: jax.tree.map(lambda _: "hidden", params))
  message = str(raised.value)
  assert "\n" not in message, message
  for pattern in patterns:
    assert re.search(pattern, message), (pattern, message)


def test_every_method_builds_from_a_plain_config():
  """The checks refuse mistakes only: each method's defaults and a shared kwargs set pass."""
  kwargs = dict(b1=0.9, b2=0.99, eps=1e-8, momentum=0.9, nesterov=False)
  for name in optimizers.available():
    tx = optimizers.build(_cfg(name, kwargs=kwargs), total_steps=10,
                          param_labels=lambda params: jax.tree.map(lambda _: "hidden", params))
    params = {"w": jnp.ones((3, 3))}
    assert jax.tree.structure(tx.init(params)) is not None


@pytest.mark.parametrize("cfg", [
    _cfg("adamm"),
    _cfg("adamw", by_role=dict(hidden=dict(name="muonn", learning_rate=0.02))),
])
def test_unknown_optimizer_names_the_key_and_lists_valid_names(cfg):
  where = "optimizer.by_role.hidden" if cfg.get("by_role") else "optimizer"
  _refused(cfg, rf"^{re.escape(where)}\.name: unknown optimizer '\w+'",
           "valid names are .*adamw.*sgd")


@pytest.mark.parametrize("cfg,key", [
    (_cfg(learning_rate=-0.1), r"optimizer\.learning_rate=-0\.1 must be >= 0"),
    (_cfg("adamw", by_role=dict(head=dict(name="sgd", learning_rate=-1e-3))),
     r"optimizer\.by_role\.head\.learning_rate=-0\.001 must be >= 0"),
    (_cfg(learning_rate=0.0), r"optimizer\.learning_rate=0\.0 must be > 0"),
    (_cfg(learning_rate=0.0, by_role=dict(head=dict(name="sgd", learning_rate=0.0))),
     r"optimizer\.learning_rate=0\.0 must be > 0.*by_role"),
])
def test_bad_learning_rate_names_the_key(cfg, key):
  _refused(cfg, key)


def test_a_zero_learning_rate_freezes_one_group_only():
  cfg = _cfg("sgd", learning_rate=0.0, by_role=dict(head=dict(name="sgd", learning_rate=0.1)))
  tx = optimizers.build(cfg, total_steps=10, param_labels=lambda p: {"w": "hidden", "h": "head"})
  params = {"w": jnp.ones(2), "h": jnp.ones(2)}
  updates, _ = tx.update(params, tx.init(params), params)
  np.testing.assert_array_equal(updates["w"], 0.0)
  np.testing.assert_allclose(updates["h"], -0.1)


@pytest.mark.parametrize("cfg,key", [
    (_cfg(learning_rate="0.1"), r"optimizer\.learning_rate='0\.1' must be a number, not str"),
    (_cfg("adam", kwargs=dict(b1="0.9")), r"optimizer\.kwargs\.b1='0\.9' must be a number"),
    (_cfg("adam", kwargs=dict(b2=True)), r"optimizer\.kwargs\.b2=True must be a number"),
    (_cfg("sgd", kwargs=dict(nesterov="yes")),
     r"optimizer\.kwargs\.nesterov='yes' must be True or False \(sgd's default is False\)"),
    (_cfg("apollo", kwargs=dict(scale_type=1)),
     r"optimizer\.kwargs\.scale_type=1 must be a string"),
    (_cfg(weight_decay="0"), r"optimizer\.weight_decay='0' must be a number"),
    (_cfg(grad_clip_norm="1.0"), r"optimizer\.grad_clip_norm='1\.0' must be a number"),
    (_cfg(schedule=dict(name="warmup_cosine", warmup_steps=2.5, end_factor=0.0,
                        decay_fraction=0.2)),
     r"optimizer\.schedule\.warmup_steps=2\.5 must be an integer"),
    (_cfg(schedule=dict(name="wsd", warmup_steps=0, end_factor="0", decay_fraction=0.2)),
     r"optimizer\.schedule\.end_factor='0' must lie in \[0, 1\]"),
])
def test_wrong_type_names_the_key_and_the_type_wanted(cfg, key):
  _refused(cfg, key)


@pytest.mark.parametrize("name,kwargs,key", [
    ("adam", dict(b1=1.0), r"optimizer\.kwargs\.b1=1\.0 must lie in \[0, 1\)"),
    ("adam", dict(b2=1), r"optimizer\.kwargs\.b2=1 must lie in \[0, 1\)"),
    ("adam", dict(b2=-0.5), r"optimizer\.kwargs\.b2=-0\.5 must lie in \[0, 1\)"),
    ("sgd", dict(momentum=1.5), r"optimizer\.kwargs\.momentum=1\.5 must lie in \[0, 1\)"),
    ("rmsprop", dict(decay=1.0), r"optimizer\.kwargs\.decay=1\.0 must lie in \[0, 1\)"),
    ("ademamix", dict(b3=1.2), r"optimizer\.kwargs\.b3=1\.2 must lie in \[0, 1\)"),
    ("soap", dict(shampoo_beta=1.0), r"optimizer\.kwargs\.shampoo_beta=1\.0 must lie in"),
    ("scion", dict(momentum=0.0), r"optimizer\.kwargs\.momentum=0\.0 .* must lie in \(0, 1\]"),
])
def test_out_of_range_beta_names_the_key_and_the_range(name, kwargs, key):
  _refused(_cfg(name, kwargs=kwargs), key)


@pytest.mark.parametrize("name,kwargs,key", [
    ("adagrad_norm", dict(b0=0.0), r"optimizer\.kwargs\.b0=0\.0 must be > 0"),
    ("shampoo", dict(eps=0.0), r"optimizer\.kwargs\.eps=0\.0 must be > 0"),
    ("soap", dict(precondition_frequency=0),
     r"optimizer\.kwargs\.precondition_frequency=0 must be >= 1"),
    ("apollo", dict(rank=0), r"optimizer\.kwargs\.rank=0 must be an integer >= 1"),
    ("apollo", dict(scale_type="row"), r"optimizer\.kwargs\.scale_type='row' must be one of"),
])
def test_a_methods_own_checks_run_at_build_time_with_the_key(name, kwargs, key):
  _refused(_cfg(name, kwargs=kwargs), key)


@pytest.mark.parametrize("cfg,key", [
    (_cfg("adamw", weight_decay=-0.1), r"optimizer\.weight_decay=-0\.1 must be >= 0"),
    (_cfg("sgd", weight_decay=-1.0), r"optimizer\.weight_decay=-1\.0 must be >= 0"),
    (_cfg("adamw", by_role=dict(head=dict(name="sgd", learning_rate=0.1, weight_decay=-0.5))),
     r"optimizer\.by_role\.head\.weight_decay=-0\.5 must be >= 0"),
    (_cfg("scion", weight_decay=0.1),
     r"optimizer\.weight_decay=0\.1: scion shrinks .* set it to 0"),
])
def test_bad_weight_decay_names_the_key(cfg, key):
  _refused(cfg, key)


@pytest.mark.parametrize("clip", [-1.0, -1e-6])
def test_negative_grad_clip_norm_names_the_key(clip):
  _refused(_cfg(grad_clip_norm=clip), r"optimizer\.grad_clip_norm=-\S+ must be >= 0 \(0 turns")


def _schedule(**kw):
  return dict(dict(name="wsd", warmup_steps=2, end_factor=0.1, decay_fraction=0.2), **kw)


@pytest.mark.parametrize("name", ["cosine", "warmup-cosine", ""])
def test_unknown_schedule_lists_valid_names(name):
  _refused(_cfg(schedule=_schedule(name=name)),
           r"optimizer\.schedule\.name: unknown schedule",
           "valid names are constant, warmup_constant, warmup_cosine, wsd")


@pytest.mark.parametrize("warmup", [-1, 11, 1000])
def test_warmup_outside_the_run_names_the_range(warmup):
  _refused(_cfg(schedule=_schedule(warmup_steps=warmup)),
           rf"optimizer\.schedule\.warmup_steps={warmup} must be an integer in \[0, 10\]")


@pytest.mark.parametrize("schedule", ["warmup_cosine", "wsd", "constant"])
@pytest.mark.parametrize("end_factor", [-0.1, 1.5])
def test_end_factor_outside_the_unit_interval_names_the_range(schedule, end_factor):
  _refused(_cfg(schedule=_schedule(name=schedule, end_factor=end_factor)),
           rf"optimizer\.schedule\.end_factor={end_factor} must lie in \[0, 1\]")


@pytest.mark.parametrize("decay_fraction", [0.0, -0.2, 1.5])
def test_decay_fraction_outside_zero_one_names_the_range(decay_fraction):
  _refused(_cfg(schedule=_schedule(decay_fraction=decay_fraction)),
           rf"optimizer\.schedule\.decay_fraction={decay_fraction} must lie in \(0, 1\]")


@pytest.mark.parametrize("cfg,key", [
    (_cfg("adamw", by_role=dict(hiden=dict(name="sgd", learning_rate=0.1))),
     r"optimizer\.by_role\.hiden: unknown role 'hiden'"),
    (_cfg("adamw", by_role=dict(embeddings=dict(name="sgd", learning_rate=0.1))),
     r"optimizer\.by_role\.embeddings: unknown role 'embeddings'"),
    (_cfg("adamw", decay_roles=("hidden", "heads")),
     r"optimizer\.decay_roles: unknown role 'heads'"),
])
def test_unknown_role_lists_the_roles(cfg, key):
  _refused(cfg, key, "valid roles are embedding, hidden, head, norm, bias, conv")


def test_the_roles_are_the_models_roles():
  import models
  assert optimizers.ROLES == models.ROLES


def test_unknown_argument_lists_the_methods_arguments():
  _refused(_cfg("adam", kwargs=dict(beta1=0.9)),
           r"optimizer 'adam' takes no argument beta1: valid optimizer\.kwargs are .*b1, b2")


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
