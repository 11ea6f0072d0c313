r"""Adaptive batch-size tests from per-example gradients (AdAdaGrad: Lau et al., 2024,
arXiv 2402.11215), and the per-example gradients themselves (``jax.vmap(jax.grad)``).

For gradients $g_1..g_n$ of one batch with mean $\bar g$ and variances over the batch with
Bessel's correction, each test gives the batch size at which the mean gradient would be
accurate enough:

- norm test: $\sum_j \mathrm{Var}_i(g_{ij}) / (\eta^2 \|\bar g\|^2)$;
- inner-product test: $\mathrm{Var}_i\langle g_i, \bar g\rangle / (\theta^2 \|\bar g\|^4)$;
- orthogonality test: $\sum_j \mathrm{Var}_i(g_i - \frac{\langle g_i, \bar g\rangle}{\|\bar g\|^2}
  \bar g)_j / (\nu^2 \|\bar g\|^2)$;
- augmented test: the larger of the inner-product and orthogonality tests.

The batch grows to ``next_batch``: the test's value when it exceeds the current batch (the test
failed), rounded up to a multiple the devices and microbatches can split, and capped. The
authors' defaults are $\eta = \theta = \nu = 0.1$.
"""

import math

import jax
import jax.numpy as jnp

TESTS = ("norm", "inner_product", "augmented")


def _flat(per_example_grads) -> jax.Array:
  """``(n, P)``: each example's gradient as one float32 row."""
  leaves = jax.tree.leaves(per_example_grads)
  n = leaves[0].shape[0]
  return jnp.concatenate([x.reshape(n, -1).astype(jnp.float32) for x in leaves], axis=1)


def _moments(per_example_grads):
  g = _flat(per_example_grads)
  if g.shape[0] < 2:
    raise ValueError("a batch test needs the gradients of two or more examples")
  mean = g.mean(0)
  return g, mean, jnp.sum(mean**2)


def norm_test(per_example_grads, eta: float = 0.1) -> jax.Array:
  """The batch size the norm test asks for (module doc)."""
  g, mean, sq = _moments(per_example_grads)
  return jnp.sum(jnp.var(g, axis=0, ddof=1)) / (eta**2 * sq)


def inner_product_test(per_example_grads, theta: float = 0.1) -> jax.Array:
  """The batch size the inner-product test asks for (module doc)."""
  g, mean, sq = _moments(per_example_grads)
  return jnp.var(g @ mean, ddof=1) / (theta**2 * sq**2)


def orthogonality_test(per_example_grads, nu: float = 0.1) -> jax.Array:
  """The batch size the orthogonality test asks for (module doc)."""
  g, mean, sq = _moments(per_example_grads)
  orthogonal = g - jnp.outer(g @ mean / sq, mean)
  return jnp.sum(jnp.var(orthogonal, axis=0, ddof=1)) / (nu**2 * sq)


def augmented_test(per_example_grads, theta: float = 0.1, nu: float = 0.1) -> jax.Array:
  """The larger of the inner-product and orthogonality tests."""
  return jnp.maximum(inner_product_test(per_example_grads, theta),
                     orthogonality_test(per_example_grads, nu))


def per_example_grads(loss_fn, params, model_state, batch, rng, *, model):
  """Each example's gradient of ``loss_fn`` (a ``training.step`` loss), a leading axis of n.

  The examples are evaluated one by one in train mode (``jax.vmap`` over the rows of
  ``batch``); batch statistics of a BatchNorm model are those of the single example.
  """
  def one(example):
    single = jax.tree.map(lambda x: x[None], example)
    return jax.grad(lambda p: loss_fn(p, model_state, single, rng, model=model)[0])(params)
  return jax.vmap(one)(batch)


def next_batch(current: int, wanted: float, *, multiple: int, cap: int) -> int:
  """``current`` if ``wanted`` is within it (the test passed); else ``wanted`` rounded up to
  a ``multiple``, at most ``cap`` (and never below ``current``)."""
  if math.isnan(wanted) or wanted <= current:
    return current
  if math.isinf(wanted):  # a zero mean gradient: no batch is large enough
    return max(current, cap)
  return max(current, min(cap, multiple * math.ceil(wanted / multiple)))


def compiled_test(name: str, eta: float, loss_fn, model):
  """``test(params, model_state, batch, rng) -> the batch size`` the test ``name`` asks for
  (``TESTS``; the augmented test takes theta = nu = ``eta``), jitted: one compile per batch
  shape."""
  tests = {"norm": lambda g: norm_test(g, eta),
           "inner_product": lambda g: inner_product_test(g, eta),
           "augmented": lambda g: augmented_test(g, eta, eta)}
  return jax.jit(lambda params, model_state, batch, rng: tests[name](
      per_example_grads(loss_fn, params, model_state, batch, rng, model=model)))
