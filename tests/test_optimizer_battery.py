"""One battery for every optimizer ``optimizers.build`` can name: a table of name + arguments.

Each method must converge on a quadratic and on Rosenbrock; on a nested pytree of conv kernels,
matrices, vectors and scalars keep bf16/f32 dtypes and its state's shapes and compile once; run
under vmap over stacked states, inside ``optax.inject_hyperparams`` (the learning rate changed
without recompiling) and ``optax.MultiSteps``. The files
``test_optimizers_*.py`` hold the comparisons of each method with its paper.

Where a check is an identity (vmap against a loop, MultiSteps against the mean gradient,
an injected learning rate against a method built with it), it runs in float64: the roundoff of
the two sides (1e-16, amplified by at most the 1e4 condition numbers of these small problems'
statistics) stays below 1e-12, so a 1e-9 tolerance cannot fail a correct method, while a
wrong average, a state crossed between runs or an ignored hyperparameter moves the result at
order one.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import minimize

import optimizers

# Scion's parameter roles on these problems: matrices are hidden layers, vectors biases.
_ROLES = lambda params: jax.tree.map(lambda x: "hidden" if x.ndim == 2 else "bias", params)


class Case(NamedTuple):
  kwargs: dict[str, Any]  # the method's arguments besides the learning rate
  lr: float  # learning rate on the quadratic (and in the checks that are not convergence)
  rosenbrock_lr: float
  rosenbrock_steps: int
  decay: bool = False  # cosine to zero over the run: methods whose step has a fixed length


# Hyperparameters for these toy problems, found by a small sweep (x0.3, x1, x3 the learning rate,
# constant or cosine, 1,000 or 3,000 Rosenbrock steps) for a margin of at least 3x on the
# thresholds of the convergence tests.
TABLE = {
    "sgd": Case(dict(momentum=0.9), 0.05, 0.003, 1000),
    "adam": Case({}, 0.05, 0.05, 1000),
    "adamw": Case(dict(weight_decay=0.0), 0.05, 0.05, 1000),
    "nadamw": Case(dict(weight_decay=0.0), 0.05, 0.1, 1000),
    "rmsprop": Case({}, 0.02, 0.01, 1000, decay=True),
    "adafactor": Case(dict(multiply_by_parameter_scale=False), 0.02, 0.02, 3000, decay=True),
    "lion": Case({}, 0.02, 0.01, 1000, decay=True),
    "lamb": Case({}, 0.05, 0.05, 1000, decay=True),
    "lars": Case(dict(weight_decay=0.0), 3.0, 3.0, 1000),
    "adabelief": Case({}, 0.05, 0.05, 1000),
    "adan": Case({}, 0.15, 0.05, 3000, decay=True),
    "sign_sgd": Case({}, 0.02, 0.003, 3000, decay=True),
    "signum": Case({}, 0.02, 0.003, 3000, decay=True),
    "muon": Case({}, 0.05, 0.05, 1000, decay=True),
    "ademamix": Case(dict(b3=0.99, alpha=2.0), 0.05, 0.05, 1000),
    "simplified_ademamix": Case(dict(b1=0.9, alpha=0.0), 0.02, 0.02, 1000, decay=True),
    "schedule_free_adamw": Case({}, 0.05, 0.05, 1000),
    "schedule_free_sgd": Case({}, 0.15, 0.003, 3000),
    "prodigy": Case({}, 1.0, 1.0, 1000),
    "sophia": Case({}, 0.05, 0.05, 1000),
    "adopt": Case({}, 0.05, 0.3, 3000),
    "mechanize": Case({}, 1.0, 1.0, 10000, decay=True),
    "momo": Case({}, 0.1, 0.1, 1000),
    "dog": Case({}, 3.0, 3.0, 3000, decay=True),
    "ngn": Case({}, 0.1, 0.1, 1000),
    "ngn_m": Case(dict(momentum=0.9), 0.1, 0.1, 1000),
    "ngn_md": Case(dict(momentum=0.9), 0.1, 0.3, 1000),
    "adalayer": Case({}, 0.1, 0.3, 1000),
    "diffgrad": Case({}, 0.1, 0.3, 1000),
    "adamp": Case({}, 0.1, 0.3, 1000),
    "adagrad_norm": Case({}, 1.0, 1.0, 1000),
    "exadam": Case({}, 0.05, 0.05, 1000, decay=True),
    "normuon": Case({}, 0.05, 0.05, 3000, decay=True),
    "apollo": Case(dict(rank=2), 0.05, 0.05, 1000),
    "apollo_mini": Case({}, 0.01, 0.05, 1000),
    "swan": Case({}, 0.05, 0.1, 1000, decay=True),
    "scion": Case(dict(param_labels=_ROLES), 0.003, 0.003, 1000, decay=True),
    "uscion": Case(dict(param_labels=_ROLES), 0.003, 0.003, 1000, decay=True),
    "soap": Case(dict(weight_decay=0.0), 0.05, 0.05, 1000),
    "shampoo": Case({}, 0.3, 0.3, 3000),
}
NAMES = sorted(TABLE)


def test_table_covers_every_name():
  assert sorted(optimizers.available()) == NAMES


def _method(name):
  return optimizers.get(name)


def _make(name, learning_rate=None):
  case = TABLE[name]
  return optax.with_extra_args_support(
      _method(name)(case.lr if learning_rate is None else learning_rate, **case.kwargs))


def _schedule(name, lr, steps):
  return optax.cosine_decay_schedule(lr, steps) if TABLE[name].decay else lr


_A = jnp.eye(4) + 0.2 * jnp.cos(jnp.arange(16.0)).reshape(4, 4)
_B = jnp.sin(jnp.arange(16.0)).reshape(4, 4)


def quadratic(params):
  return 0.5 * jnp.sum((_A @ params["w"] - _B) ** 2) + 0.5 * jnp.sum((params["b"] - 1.0) ** 2)


def rosenbrock(params):
  x, y = params["xy"][0], params["xy"][1]
  return (1.0 - x) ** 2 + 100.0 * (y - x**2) ** 2


def _zeros(dtype=jnp.float32):
  return {"w": jnp.zeros((4, 4), dtype), "b": jnp.zeros(4, dtype)}


def _quadratic_floor(name) -> float:
  """The least loss the method can reach from ``_zeros()``: 0, except for SWAN.

  SWAN's GradNorm removes each output unit's mean gradient over the inputs, so its matrix
  updates have zero column sums and ``w`` stays in that subspace (its ``b`` is Adam's): the
  floor is the least-squares optimum there, computed in float64.
  """
  if name != "swan":
    return 0.0
  a, b = np.asarray(_A, np.float64), np.asarray(_B, np.float64)
  basis = np.linalg.svd(np.eye(4) - 1 / 4)[0][:, :3]  # the vectors with zero sum
  z = np.linalg.lstsq(a @ basis, b, rcond=None)[0]
  return 0.5 * float(np.sum((a @ basis @ z - b) ** 2))


@pytest.mark.parametrize("name", NAMES)
def test_converges_on_a_quadratic(name):
  steps = 300
  params, _ = minimize(_make(name, _schedule(name, TABLE[name].lr, steps)), quadratic, _zeros(),
                       steps)
  floor = _quadratic_floor(name)
  start, end = float(quadratic(_zeros())), float(quadratic(params))
  assert end - floor < 1e-3 * (start - floor), (start, end, floor)


@pytest.mark.parametrize("name", NAMES)
def test_converges_on_rosenbrock(name):
  start_params = {"xy": jnp.array([-1.2, 1.0])}
  case = TABLE[name]
  lr = _schedule(name, case.rosenbrock_lr, case.rosenbrock_steps)
  params, _ = minimize(_make(name, lr), rosenbrock, start_params, case.rosenbrock_steps)
  start, end = float(rosenbrock(start_params)), float(rosenbrock(params))
  assert end < 1e-2 * start, (start, end, params["xy"])


def _signature(tree):
  return jax.tree.map(lambda x: (jnp.shape(x), jnp.result_type(x), getattr(x, "weak_type", 0)),
                      tree)


def _nested(dtype):
  """A conv kernel, a matrix, a vector and a scalar, nested: every leaf kind a model has."""
  rng = np.random.default_rng(2)
  return {"conv": {"kernel": jnp.asarray(rng.normal(size=(3, 3, 2, 4)), dtype),
                   "bias": jnp.zeros(4, dtype)},
          "dense": jnp.asarray(rng.normal(size=(4, 5)), dtype), "scale": jnp.ones([], dtype)}


def _nested_loss(p):
  p = jax.tree.map(lambda x: x.astype(jnp.float32), p)
  h = jnp.tanh(jnp.sum(p["conv"]["kernel"], axis=(0, 1, 2)) + p["conv"]["bias"])
  return jnp.sum(jnp.square(p["scale"] * h @ p["dense"] - 1.0))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_nested_pytrees_keep_their_dtype_and_state_signature_and_compile_once(name, dtype):
  # a tenth of the quadratic's rate: this loss is steeper (SGD with momentum diverges at it)
  tx = _make(name, 0.1 * TABLE[name].lr)
  params = _nested(dtype)
  value_and_grad = jax.jit(jax.value_and_grad(_nested_loss))
  update = jax.jit(lambda g, s, p, v: tx.update(g, s, p, value=v, obj_fn=_nested_loss))
  state = tx.init(params)
  signature = _signature(state)
  start = float(_nested_loss(params))
  for _ in range(20):
    loss, grads = value_and_grad(params)
    updates, state = update(grads, state, params, loss)
    params = optax.apply_updates(params, updates)
    assert _signature(state) == signature
  assert update._cache_size() == 1
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, _nested(dtype))
  for leaf in jax.tree.leaves(updates) + jax.tree.leaves(params):
    assert leaf.dtype == dtype
    assert bool(jnp.all(jnp.isfinite(leaf)))
  if dtype == jnp.float32:  # (in bfloat16 twenty small steps may round away)
    assert float(_nested_loss(params)) < start


def _pattern(x, phase):
  return jnp.cos(jnp.arange(x.size, dtype=x.dtype) * 1.3 + phase).reshape(x.shape)


def _assert_identical(got, want):
  """Equal up to float64 roundoff (the module docstring's 1e-9 band), at each leaf's scale."""
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    scale = float(jnp.abs(b).max())
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9 * scale + 1e-300)


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_stacked_states_matches_separate_runs(name):
  with jax.enable_x64(True):
    tx = _make(name)
    stacked = jax.vmap(lambda s: jax.tree.map(lambda x: s * _pattern(x, 0.0),
                                              _zeros(jnp.float64)))(jnp.array([0.5, 1.0, 2.0]))

    def two_steps(params):
      # Gradient noise, as in training: with exact gradients SOAP's second step turns on the
      # signs of roundoff-sized rotated entries.
      noisy = lambda g, phase: jax.tree.map(lambda x: x + 0.5 * _pattern(x, phase), g)
      state = tx.init(params)
      loss, grads = jax.value_and_grad(quadratic)(params)
      updates, state = tx.update(noisy(grads, 1.0), state, params, value=loss, obj_fn=quadratic)
      params = optax.apply_updates(params, updates)
      loss, grads = jax.value_and_grad(quadratic)(params)
      updates, _ = tx.update(noisy(grads, 2.0), state, params, value=loss, obj_fn=quadratic)
      return updates

    batched = jax.jit(jax.vmap(two_steps))(stacked)
    single = jax.jit(two_steps)
    for i in range(3):
      pick = lambda tree, i=i: jax.tree.map(lambda x: x[i], tree)
      _assert_identical(pick(batched), single(pick(stacked)))


def _static_args(name):
  """Arguments to keep static under inject_hyperparams: those whose default is not a float."""
  import inspect
  parameters = inspect.signature(_method(name)).parameters
  return tuple(k for k, p in parameters.items()
               if k != "learning_rate" and not isinstance(p.default, float))


@pytest.mark.parametrize("name", NAMES)
def test_inject_hyperparams_changes_the_learning_rate_without_recompiling(name):
  case = TABLE[name]
  with jax.enable_x64(True):
    tx = optax.with_extra_args_support(optax.inject_hyperparams(
        _method(name), static_args=_static_args(name))(learning_rate=case.lr, **case.kwargs))
    params = jax.tree.map(lambda x: x + _pattern(x, 0.5), _zeros(jnp.float64))
    update = jax.jit(lambda g, s, p: tx.update(g, s, p, value=quadratic(p), obj_fn=quadratic))
    state = tx.init(params)
    for _ in range(2):  # some methods (ADOPT) make no move on their first step
      updates, state = update(jax.grad(quadratic)(params), state, params)
      params = optax.apply_updates(params, updates)
    grads = jax.grad(quadratic)(params)
    same, _ = update(grads, state, params)
    state.hyperparams["learning_rate"] = jnp.asarray(0.5 * case.lr, jnp.float64)
    halved, _ = update(grads, state, params)
    assert update._cache_size() == 1
    # The injected rate acts as the method built with it, on the same inner state (built
    # with the same float64 arrays: Python floats would round some intermediates to float32) ...
    static = {k: v for k, v in case.kwargs.items() if k in _static_args(name)}
    built = optax.with_extra_args_support(_method(name)(**static, **state.hyperparams))
    want, _ = jax.jit(lambda g, s, p: built.update(g, s, p, value=quadratic(p),
                                                   obj_fn=quadratic))(grads, state.inner_state,
                                                                      params)
    _assert_identical(halved, want)
    # ... and the change took effect.
    diff = max(float(jnp.abs(a - b).max()) for a, b in
               zip(jax.tree.leaves(same), jax.tree.leaves(halved), strict=True))
    assert diff > 1e-3 * max(float(jnp.abs(a).max()) for a in jax.tree.leaves(same))


@pytest.mark.parametrize("name", NAMES)
def test_multisteps_applies_the_mean_gradient_every_k_calls(name):
  k = 2
  with jax.enable_x64(True):
    inner = _make(name)
    tx = optax.MultiSteps(inner, every_k_schedule=k, accumulator_dtype=jnp.float64)
    params = jax.tree.map(lambda x: x + 0.5, _zeros(jnp.float64))
    # Full-rank random gradients: a low-rank one leaves SOAP's and Shampoo's statistics with
    # null directions whose eigenvectors are roundoff, not a property of the method.
    rng = np.random.default_rng(0)
    grads = [jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape)), params)
             for _ in range(2 * k)]
    values = [jnp.float64(v) for v in (2.0, 1.5, 1.0, 0.5)]
    extra = lambda value: dict(value=value, obj_fn=quadratic)
    update = jax.jit(lambda g, s, v: tx.update(g, s, params, **extra(v)))
    inner_update = jax.jit(lambda g, s, v: inner.update(g, s, params, **extra(v)))
    state, inner_state = tx.init(params), inner.init(params)
    for group in range(2):  # two inner steps: some methods' first one only initialises
      for i in range(k):
        updates, state = update(grads[group * k + i], state, values[group * k + i])
        if i < k - 1:
          assert not any(bool(jnp.any(u)) for u in jax.tree.leaves(updates))  # accumulating
      mean = jax.tree.map(lambda *g: sum(g) / k, *grads[group * k:(group + 1) * k])
      want, inner_state = inner_update(mean, inner_state, values[group * k + k - 1])
      _assert_identical(updates, want)
