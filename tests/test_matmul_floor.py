"""The contraction census of ``benchmarks/matmul_floor.py``: what it counts is what a step does."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from benchmarks.matmul_floor import Contraction, contractions, einsum_spec, flops, kind


def _census(fn, *args):
  return contractions(jax.make_jaxpr(fn)(*args).jaxpr)


def test_a_two_layer_gradient_has_its_forward_input_and_weight_products():
  x, w1, w2 = jnp.ones((32, 8)), jnp.ones((8, 16)), jnp.ones((16, 4))
  loss = lambda w1, w2: jnp.sum((x @ w1) @ w2)
  found = _census(jax.jit(jax.grad(loss, argnums=(0, 1))), w1, w2)
  kinds = {}
  for c, n in found.items():
    kinds[kind(c)] = kinds.get(kind(c), 0) + n
  # forward x @ w1, h @ w2 (NN); dh = g @ w2.T (NT); dw2 = h.T @ g, dw1 = x.T @ dh (TN)
  assert kinds == {"NN": 2, "NT": 1, "TN": 2}
  total = sum(n * flops(c) for c, n in found.items())
  assert total == 2 * (32 * 8 * 16 + 32 * 16 * 4) + 2 * 32 * 16 * 4 + 2 * (32 * 16 * 4
                                                                               + 32 * 8 * 16)


def test_a_cond_counts_its_cheapest_branch_and_a_scan_its_body_once():
  a, b = jnp.ones((8, 8)), jnp.ones((8, 8))
  found = _census(lambda p: lax.cond(p, lambda: a @ b @ b, lambda: a @ b), True)
  assert sum(found.values()) == 1
  body = lambda c, _: (c @ b, None)
  assert sum(_census(lambda: lax.scan(body, a, None, length=5)[0]).values()) == 1


@pytest.mark.parametrize("lhs,rhs,dims", [
    ((3, 5, 7), (3, 7, 2), (((2,), (1,)), ((0,), (0,)))),  # batched matmul
    ((7, 3, 5), (3, 2, 7), (((0,), (2,)), ((1,), (0,)))),  # batch and contraction elsewhere
    ((6, 4), (6, 9), (((0,), (0,)), ((), ()))),  # TN
])
def test_einsum_spec_is_the_same_contraction_and_flops_count_it(lhs, rhs, dims):
  rng = np.random.default_rng(0)
  x, y = rng.standard_normal(lhs), rng.standard_normal(rhs)
  c = Contraction(lhs, rhs, dims)
  expected = np.asarray(lax.dot_general(jnp.asarray(x), jnp.asarray(y), dims))
  np.testing.assert_allclose(np.einsum(einsum_spec(c), x, y), expected, rtol=1e-5, atol=1e-5)
  (lc, _), _ = dims
  assert flops(c) == 2 * expected.size * int(np.prod([lhs[i] for i in lc]))
