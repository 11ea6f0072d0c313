"""One battery for every optimizer ``optimizers.build`` can name: a table of name + arguments.

Each method must converge on a quadratic and on Rosenbrock, keep bf16/f32 dtypes, compile
once, run under jit and vmap over stacked states, inside ``optax.inject_hyperparams`` (the
learning rate changed without recompiling) and ``optax.MultiSteps``, with stable state shapes.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optimizers

# Scion's parameter roles on these problems: matrices are hidden layers, vectors biases.
_ROLES = lambda params: jax.tree.map(lambda x: "hidden" if x.ndim == 2 else "bias", params)

# name -> (method arguments, learning rate on the quadratic, on Rosenbrock, Rosenbrock steps):
# hyperparameters for these toy problems, found by a small sweep.
TABLE = {
    "sgd": (dict(momentum=0.9), 0.05, 0.003, 1000),
    "adam": ({}, 0.05, 0.05, 1000),
    "adamw": (dict(weight_decay=0.0), 0.05, 0.05, 1000),
    "nadamw": (dict(weight_decay=0.0), 0.05, 0.1, 1000),
    "rmsprop": ({}, 0.02, 0.01, 1000),
    "adafactor": (dict(multiply_by_parameter_scale=False), 0.02, 0.02, 1000),
    "lion": ({}, 0.02, 0.01, 1000),
    "lamb": ({}, 0.05, 0.05, 1000),
    "lars": (dict(weight_decay=0.0), 1.0, 1.0, 1000),
    "adabelief": ({}, 0.05, 0.05, 1000),
    "adan": ({}, 0.05, 0.05, 1000),
    "sign_sgd": ({}, 0.02, 0.003, 1000),
    "signum": ({}, 0.02, 0.003, 1000),
    "muon": ({}, 0.05, 0.05, 1000),
    "ademamix": (dict(b3=0.99, alpha=2.0), 0.05, 0.05, 1000),
    "simplified_ademamix": (dict(b1=0.9, alpha=0.0), 0.02, 0.02, 1000),
    "schedule_free_adamw": ({}, 0.05, 0.05, 1000),
    "schedule_free_sgd": ({}, 0.05, 0.003, 1000),
    "prodigy": ({}, 1.0, 1.0, 1000),
    "sophia": ({}, 0.05, 0.05, 1000),
    "adopt": ({}, 0.05, 0.3, 1000),
    "mechanize": ({}, 1.0, 3.0, 1000),
    "momo": ({}, 0.1, 0.1, 1000),
    "dog": ({}, 1.0, 1.0, 3000),
    "ngn": ({}, 0.1, 0.1, 1000),
    "ngn_m": (dict(momentum=0.9), 0.1, 0.1, 1000),
    "ngn_md": (dict(momentum=0.9), 0.1, 0.3, 1000),
    "adalayer": ({}, 0.1, 0.3, 1000),
    "diffgrad": ({}, 0.1, 0.3, 1000),
    "adamp": ({}, 0.1, 0.3, 1000),
    "adagrad_norm": ({}, 1.0, 1.0, 1000),
    "exadam": ({}, 0.05, 0.05, 1000),
    "normuon": ({}, 0.05, 0.05, 1000),
    "apollo": (dict(rank=2), 0.05, 0.05, 1000),
    "apollo_mini": ({}, 0.01, 0.05, 1000),
    "swan": ({}, 0.05, 0.05, 1000),
    "scion": (dict(param_labels=_ROLES), 0.003, 0.003, 1000),
    "uscion": (dict(param_labels=_ROLES), 0.003, 0.003, 1000),
    "soap": (dict(weight_decay=0.0), 0.05, 0.05, 1000),
    "shampoo": ({}, 0.3, 0.3, 1000),
}
NAMES = sorted(TABLE)


def test_table_covers_every_name():
  assert sorted(optimizers.available()) == NAMES


def _method(name):
  return optimizers.get(name)


def _make(name, learning_rate=None):
  kwargs, lr, _, _ = TABLE[name]
  return optax.with_extra_args_support(
      _method(name)(lr if learning_rate is None else learning_rate, **kwargs))


_A = jnp.eye(4) + 0.2 * jnp.cos(jnp.arange(16.0)).reshape(4, 4)
_B = jnp.sin(jnp.arange(16.0)).reshape(4, 4)


def quadratic(params):
  return 0.5 * jnp.sum((_A @ params["w"] - _B) ** 2) + 0.5 * jnp.sum((params["b"] - 1.0) ** 2)


def rosenbrock(params):
  x, y = params["xy"][0], params["xy"][1]
  return (1.0 - x) ** 2 + 100.0 * (y - x**2) ** 2


def _zeros(dtype=jnp.float32):
  return {"w": jnp.zeros((4, 4), dtype), "b": jnp.zeros(4, dtype)}


def _run(tx, loss_fn, params, steps):
  """``steps`` updates on ``loss_fn``, as one compiled ``lax.scan``."""
  value_and_grad = jax.value_and_grad(loss_fn)

  def step(carry, _):
    params, state = carry
    loss, grads = value_and_grad(params)
    updates, state = tx.update(grads, state, params, value=loss, obj_fn=loss_fn)
    return (optax.apply_updates(params, updates), state), None

  run = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), None, length=steps)[0])
  return run(params)


@pytest.mark.parametrize("name", NAMES)
def test_converges_on_a_quadratic(name):
  params, _ = _run(_make(name), quadratic, _zeros(), 300)
  start, end = float(quadratic(_zeros())), float(quadratic(params))
  assert end < 0.05 * start, (start, end)


@pytest.mark.parametrize("name", NAMES)
def test_converges_on_rosenbrock(name):
  start_params = {"xy": jnp.array([-1.2, 1.0])}
  _, _, lr, steps = TABLE[name]
  params, _ = _run(_make(name, lr), rosenbrock, start_params, steps)
  start, end = float(rosenbrock(start_params)), float(rosenbrock(params))
  assert end < 0.1 * start, (start, end)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_keeps_the_parameter_dtype(name, dtype):
  tx = _make(name)
  params = jax.tree.map(lambda x: x + 0.5, _zeros(dtype))
  grads = jax.grad(lambda p: quadratic(jax.tree.map(lambda x: x.astype(jnp.float32), p)))(params)
  state = tx.init(params)
  for _ in range(2):
    updates, state = tx.update(grads, state, params, value=jnp.asarray(1.0, dtype),
                               obj_fn=lambda p: quadratic(
                                   jax.tree.map(lambda x: x.astype(jnp.float32), p)))
    params = optax.apply_updates(params, updates)
  for leaf in jax.tree.leaves(updates) + jax.tree.leaves(params):
    assert leaf.dtype == dtype


@pytest.mark.parametrize("name", NAMES)
def test_compiles_once_and_keeps_state_shapes(name):
  tx = _make(name)
  params = jax.tree.map(lambda x: x + 0.5, _zeros())
  update = jax.jit(lambda g, s, p: tx.update(g, s, p, value=quadratic(p), obj_fn=quadratic))
  state = tx.init(params)
  shapes = jax.tree.map(lambda x: (jnp.shape(x), jnp.result_type(x)), state)
  for i in range(3):
    grads = jax.tree.map(lambda x, i=i: x * (i + 1.0), jax.grad(quadratic)(params))
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
  assert update._cache_size() == 1
  assert jax.tree.map(lambda x: (jnp.shape(x), jnp.result_type(x)), state) == shapes


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_stacked_states_matches_separate_runs(name):
  tx = _make(name)
  pattern = lambda x, phase: jnp.cos(
      jnp.arange(x.size, dtype=x.dtype) * 1.3 + phase).reshape(x.shape)
  stacked = jax.vmap(lambda s: jax.tree.map(lambda x: s * pattern(x, 0.0), _zeros()))(
      jnp.array([0.5, 1.0, 2.0]))

  def one_step(params):
    # Gradient noise, as in training: with exact gradients SOAP's second step turns on the
    # signs of roundoff-sized rotated entries, which batching changes.
    noisy = lambda g, phase: jax.tree.map(lambda x: x + 0.5 * pattern(x, phase), g)
    state = tx.init(params)
    loss, grads = jax.value_and_grad(quadratic)(params)
    updates, state = tx.update(noisy(grads, 1.0), state, params, value=loss, obj_fn=quadratic)
    loss, grads = jax.value_and_grad(quadratic)(optax.apply_updates(params, updates))
    updates, _ = tx.update(noisy(grads, 2.0), state, params, value=loss, obj_fn=quadratic)
    return updates

  batched = jax.jit(jax.vmap(one_step))(stacked)
  for i in range(3):
    single = jax.jit(one_step)(jax.tree.map(lambda x, i=i: x[i], stacked))
    # batched matmuls and eigendecompositions round differently: compare at the leaf's scale
    jax.tree.map(lambda a, b, i=i: np.testing.assert_allclose(
        a[i], b, rtol=2e-4, atol=1e-6 + 1e-4 * float(jnp.abs(b).max())), batched, single)


def _static_args(name):
  """Arguments to keep static under inject_hyperparams: those whose default is not a float."""
  import inspect
  parameters = inspect.signature(_method(name)).parameters
  return tuple(k for k, p in parameters.items()
               if k != "learning_rate" and not isinstance(p.default, float))


@pytest.mark.parametrize("name", NAMES)
def test_inject_hyperparams_changes_the_learning_rate_without_recompiling(name):
  kwargs, lr, _, _ = TABLE[name]
  tx = optax.inject_hyperparams(_method(name), static_args=_static_args(name))(
      learning_rate=lr, **kwargs)
  params = jax.tree.map(lambda x: x + 0.5, _zeros())
  update = jax.jit(lambda g, s, p: optax.with_extra_args_support(tx).update(
      g, s, p, value=quadratic(p), obj_fn=quadratic))
  state = tx.init(params)
  for _ in range(2):  # some methods (ADOPT) make no move on their first step
    updates, state = update(jax.grad(quadratic)(params), state, params)
    params = optax.apply_updates(params, updates)
  grads = jax.grad(quadratic)(params)
  same, _ = update(grads, state, params)
  state.hyperparams["learning_rate"] = state.hyperparams["learning_rate"] * 0.5
  halved, _ = update(grads, state, params)
  assert update._cache_size() == 1
  diff = max(float(jnp.abs(a - b).max()) for a, b in
             zip(jax.tree.leaves(same), jax.tree.leaves(halved), strict=True))
  size = max(float(jnp.abs(a).max()) for a in jax.tree.leaves(same))
  assert size > 0 and diff > 1e-3 * size  # the new learning rate took effect


@pytest.mark.parametrize("name", NAMES)
def test_multisteps_accumulates_before_updating(name):
  tx = optax.MultiSteps(_make(name), every_k_schedule=2)
  params = jax.tree.map(lambda x: x + 0.5, _zeros())
  state = tx.init(params)
  moved = []
  for i in range(6):
    grads = jax.grad(quadratic)(params)
    updates, state = tx.update(grads, state, params, value=quadratic(params), obj_fn=quadratic)
    size = max(float(jnp.abs(u).max()) for u in jax.tree.leaves(updates))
    if i % 2 == 0:
      assert size == 0.0  # accumulating
    moved.append(size)
    params = optax.apply_updates(params, updates)
  assert max(moved) > 0
