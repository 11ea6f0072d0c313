"""Each matrix method's update, sharded as ``mesh.fsdp = 8`` shards it, equals its unsharded update.

Parameters, optimizer state and gradients get the shardings training gives them
(``training.mesh.state_shardings``: every array split 8 ways along its largest axis that 8
divides, on the 8 CPU devices ``conftest.py`` asks for); the jitted update then runs XLA's SPMD
partitioning: Newton–Schulz and the Shampoo/SOAP products as distributed matmuls (partial sums
reduced across devices), the eigendecompositions and QR on gathered operands, and a stack of
same-shaped matrices (when stacking is on) across differently split leaves.

Tolerance. In float64 the two programs differ by the order of their sums only: 1e-16 relative,
carried through at most 10 Newton–Schulz steps (x4.6 each, ``test_optimizer_speed_paths.py``)
or an eigenbasis whose eigenvalues are at least 1/20 of the largest apart (x20), and Adam's
division by sqrt(v) (x1e3 at most for these gradients): below 1e-10 of an update's largest
entry (measured: 2e-15 to 2e-14). A shard applied to the wrong rows, a missing reduction or a
reused stale state moves it at order one.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optimizers
from optimizers import _newton_schulz
from training.mesh import make_mesh, state_shardings

_TOL = 1e-10

pytestmark = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (fake) devices")

# A transformer-like tree whose axes 8 divides; roles as models.param_roles gives them.
_SHAPES = {"embedding": (64, 32), "qkv": (32, 96), "attn_out": (32, 32), "mlp_in": (32, 128),
           "mlp_out": (128, 32), "head": (32, 64), "norm": (32,)}
_ROLES = {"embedding": "embedding", "qkv": "hidden", "attn_out": "hidden", "mlp_in": "hidden",
          "mlp_out": "hidden", "head": "head", "norm": "norm"}
# SOAP and Shampoo on square layers: a rectangular layer's first gradient leaves part of SOAP's
# eigenbasis undetermined (any rounding picks it), which no sharding can be compared on.
_SQUARE = {"a": (32, 32), "b": (32, 32), "c": (16, 16), "v": (32,)}

_METHODS = {
    "muon": (lambda: optimizers.muon(0.02), _SHAPES),
    "scion": (lambda: optimizers.scion(2.0**-6, param_labels=_ROLES), _SHAPES),
    "normuon": (lambda: optimizers.normuon(1e-2), _SHAPES),
    "swan": (lambda: optimizers.swan(1e-2), _SHAPES),
    "soap": (lambda: optimizers.soap(3e-3, precondition_frequency=2), _SQUARE),  # refresh, call 3
    "shampoo": (lambda: optimizers.shampoo(0.1), _SQUARE),
}


def _well_conditioned(rng, shape):
  """Gradients with singular values spread over [1, 2]: eigenvalues of G G^T well apart."""
  if len(shape) == 1:
    return rng.standard_normal(shape)
  m, n = shape
  u, _ = np.linalg.qr(rng.standard_normal((m, m)))
  v, _ = np.linalg.qr(rng.standard_normal((n, n)))
  k = min(m, n)
  return u[:, :k] @ np.diag(np.linspace(2.0, 1.0, k)) @ v[:, :k].T


# Every method as on CPU (each matrix alone), and the two stacked iterations (Muon's quintic,
# SWAN's whitening) as on accelerators. uScion is Scion's direction without the decay.
_CASES = [(name, False) for name in sorted(_METHODS)] + [("muon", True), ("swan", True)]


@pytest.mark.parametrize("name,stack", _CASES,
                         ids=[f"{n}-{'stacked' if s else 'one_by_one'}" for n, s in _CASES])
def test_fsdp_sharded_update_equals_unsharded(name, stack, monkeypatch):
  monkeypatch.setattr(_newton_schulz, "_default_batch", lambda: stack)
  make, shapes = _METHODS[name]
  rng = np.random.default_rng(0)
  with jax.enable_x64(True):
    params = {k: jnp.asarray(rng.standard_normal(s)) for k, s in shapes.items()}
    grads = [{k: jnp.asarray(_well_conditioned(rng, s)) for k, s in shapes.items()}
             for _ in range(3)]
    tx = make()
    state = tx.init(params)

    def step(params, state, grads):
      updates, state = tx.update(grads, state, params)
      return optax.apply_updates(params, updates), state, updates

    mesh = make_mesh(8)
    shard = lambda tree: state_shardings(jax.eval_shape(lambda: tree), mesh)
    p_sh, s_sh, g_sh = shard(params), shard(state), shard(grads[0])
    assert p_sh["mlp_in" if "mlp_in" in p_sh else "a"].spec != jax.sharding.PartitionSpec()
    sharded = jax.jit(step, in_shardings=(p_sh, s_sh, g_sh), out_shardings=(p_sh, s_sh, p_sh))
    plain = jax.jit(step)
    a_params, a_state = jax.device_put(params, p_sh), jax.device_put(state, s_sh)
    b_params, b_state = params, state
    for g in grads:
      a_params, a_state, a_upd = sharded(a_params, a_state, jax.device_put(g, g_sh))
      b_params, b_state, b_upd = plain(b_params, b_state, g)
      for k in shapes:
        scale = float(jnp.abs(b_upd[k]).max())
        assert scale > 0 or name == "soap"  # SOAP's first call only initialises
        np.testing.assert_allclose(np.asarray(a_upd[k]), np.asarray(b_upd[k]), rtol=0,
                                   atol=_TOL * scale, err_msg=f"{name} {k}")
    assert len(a_params["norm" if "norm" in shapes else "v"].sharding.device_set) == 8
