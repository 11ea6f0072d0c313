"""The one train step: microbatch accumulation, metrics, purity."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

import data
import models
import optimizers
from training import TrainState, cross_entropy, eval_params, eval_step, train_step
from training.setup import init_state


def _setup(opt_name="sgd", kwargs=None):
  model = models.build(ml_collections.ConfigDict(
      dict(name="mlp", num_classes=10, hidden=(32,), activation="tanh")))
  source = data.build(ml_collections.ConfigDict(dict(name="digits")), seed=0)
  cfg = ml_collections.ConfigDict(dict(
      name=opt_name, learning_rate=0.1, kwargs=kwargs or {}, weight_decay=0.01,
      decay_roles=("hidden", "head"), grad_clip_norm=0.0,
      schedule=dict(name="constant", warmup_steps=0, end_factor=0.0, decay_fraction=0.2)))
  batch = source.examples(0, 32)
  params = model.init(jax.random.PRNGKey(0), batch["inputs"])["params"]
  tx = optimizers.build(cfg, total_steps=10, param_labels=models.param_roles(params))
  state = init_state(jax.random.PRNGKey(0), batch["inputs"], model=model, tx=tx)
  step = jax.jit(functools.partial(train_step, model=model, tx=tx, loss_fn=cross_entropy))
  return model, source, state, step


def _microbatched(batch, num_micro):
  return jax.tree.map(lambda x: x.reshape((num_micro, -1) + x.shape[1:]), batch)


@pytest.mark.slow  # compiles several programs: seconds on two cores
def test_1x32_and_4x8_microbatches_give_the_same_update():
  for opt, kwargs in (("sgd", dict(momentum=0.9)), ("adamw", dict(b1=0.9, b2=0.99))):
    _, source, state, step = _setup(opt, kwargs)
    batch = source.examples(0, 32)
    s1, m1 = step(state, _microbatched(batch, 1))
    s4, m4 = step(state, _microbatched(batch, 4))
    np.testing.assert_allclose(m1["loss"], m4["loss"], rtol=1e-6)
    np.testing.assert_allclose(m1["grad_norm"], m4["grad_norm"], rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                 s1.params, s4.params)
    # and it is a real update, not a no-op
    assert float(m1["update_norm"]) > 1e-3


@pytest.mark.slow  # compiles several programs: seconds on two cores
def test_step_matches_a_hand_written_sgd_update():
  model, source, state, step = _setup("sgd")
  batch = source.examples(0, 32)
  new_state, metrics = step(state, _microbatched(batch, 1))

  def loss(params):
    logits = model.apply({"params": params}, batch["inputs"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"]).mean()

  grads = jax.grad(loss)(state.params)
  roles = models.param_roles(state.params)
  want = jax.tree.map(lambda p, g, r: p - 0.1 * (g + (0.01 * p if r != "bias" else 0.0)),
                      state.params, grads, roles)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               new_state.params, want)
  np.testing.assert_allclose(metrics["loss"], loss(state.params), rtol=1e-6)
  np.testing.assert_allclose(metrics["lr"], 0.1)
  g_all = np.sqrt(sum(float(jnp.sum(g**2)) for g in jax.tree.leaves(grads)))
  np.testing.assert_allclose(metrics["grad_norm"], g_all, rtol=1e-5)
  g_bias = np.sqrt(float(jnp.sum(grads["dense_0"]["bias"] ** 2)
                         + jnp.sum(grads["head"]["bias"] ** 2)))
  np.testing.assert_allclose(metrics["grad_norm/bias"], g_bias, rtol=1e-5)
  assert int(new_state.step) == 1 and int(state.step) == 0  # pure: the input is untouched


def test_step_counter_and_rng_stay_in_state():
  _, source, state, step = _setup("sgd")
  assert isinstance(state, TrainState)
  batch = _microbatched(source.examples(0, 32), 2)
  for _ in range(3):
    state, _ = step(state, batch)
  assert int(state.step) == 3
  assert state.rng.shape == jax.random.PRNGKey(0).shape


def _schedule_free_state(opt_state):
  is_sf = lambda node: isinstance(node, optax.contrib.ScheduleFreeState)
  return next(n for n in jax.tree.leaves(opt_state, is_leaf=is_sf) if is_sf(n))


def test_schedule_free_is_evaluated_at_its_average_not_at_the_training_iterate():
  model, source, state, step = _setup("schedule_free_sgd", dict(b1=0.9))
  batch = source.examples(0, 32)
  for _ in range(5):
    state, _ = step(state, _microbatched(batch, 1))
  eval_batch = {**source.examples(32, 32), "weights": np.ones(32, np.float32)}
  sums = jax.jit(functools.partial(eval_step, model=model, loss_fn=cross_entropy))(
      state, eval_batch)
  sf = _schedule_free_state(state.opt_state)
  # x = (y - (1 - b1) z) / b1: the average, from the interpolated y = params and the base z.
  x = jax.tree.map(lambda y, z: (y - (1 - 0.9) * z) / 0.9, state.params, sf.z)
  at = lambda params: float(cross_entropy(params, {}, eval_batch, state.rng, model=model,
                                          train=False)[0])
  np.testing.assert_allclose(float(sums["loss_sum"] / sums["count"]), at(x), rtol=1e-5)
  assert abs(at(x) - at(state.params)) > 1e-4  # the two points differ: the test can fail


def test_schedule_free_in_one_role_group_moves_only_that_group():
  model = models.build(ml_collections.ConfigDict(
      dict(name="mlp", num_classes=10, hidden=(32,), activation="tanh")))
  source = data.build(ml_collections.ConfigDict(dict(name="digits")), seed=0)
  schedule = dict(name="constant", warmup_steps=0, end_factor=0.0, decay_fraction=0.2)
  cfg = ml_collections.ConfigDict(dict(
      name="sgd", learning_rate=0.1, kwargs={}, weight_decay=0.0, decay_roles=(),
      grad_clip_norm=0.0, schedule=schedule,
      by_role={"hidden": dict(name="schedule_free_sgd", learning_rate=0.1, kwargs={})}))
  batch = source.examples(0, 32)
  tx = optimizers.build(cfg, total_steps=10, param_labels=models.param_roles)
  state = init_state(jax.random.PRNGKey(0), batch["inputs"], model=model, tx=tx)
  step = jax.jit(functools.partial(train_step, model=model, tx=tx, loss_fn=cross_entropy))
  for _ in range(3):
    state, _ = step(state, _microbatched(batch, 1))
  moved = eval_params(state.params, state.opt_state)
  roles = models.param_roles(state.params)
  z = _schedule_free_state(state.opt_state).z
  for path, role in jax.tree_util.tree_leaves_with_path(roles):
    y = _at(state.params, path)
    if role == "hidden":
      want = (y - (1 - 0.9) * _at(z, path)) / 0.9  # schedule_free_sgd's default b1 = 0.9
      np.testing.assert_allclose(_at(moved, path), want, rtol=1e-5, atol=1e-7)
      assert not np.allclose(_at(moved, path), y)
    else:
      np.testing.assert_array_equal(_at(moved, path), y)


def _at(tree, path):
  for key in path:
    tree = tree[key.key]
  return np.asarray(tree)
