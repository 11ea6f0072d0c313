"""Device mesh and shardings: a ``data`` axis and an optional ``fsdp`` axis.

The batch is split over both axes; parameters and optimizer state are replicated over ``data``
and, with ``fsdp > 1``, each array is split along its largest dimension that ``fsdp`` divides.
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

BATCH_AXES = ("data", "fsdp")


def make_mesh(fsdp: int) -> Mesh:
  devices = jax.devices()
  if fsdp < 1 or len(devices) % fsdp:
    raise ValueError(f"mesh.fsdp={fsdp} must be >= 1 and divide the {len(devices)} devices")
  return Mesh(np.asarray(devices).reshape(len(devices) // fsdp, fsdp), BATCH_AXES)


def _param_spec(shape, fsdp: int) -> P:
  if fsdp == 1:
    return P()
  dims = sorted(range(len(shape)), key=lambda d: -shape[d])
  for d in dims:
    if shape[d] % fsdp == 0 and shape[d] >= fsdp:
      spec = [None] * len(shape)
      spec[d] = "fsdp"
      return P(*spec)
  return P()


def state_shardings(abstract_state, mesh: Mesh):
  """NamedShardings for every leaf of an abstract (``jax.eval_shape``) train state."""
  fsdp = mesh.shape["fsdp"]
  return jax.tree.map(lambda x: NamedSharding(mesh, _param_spec(x.shape, fsdp)), abstract_state)


def batch_sharding(mesh: Mesh, *, microbatched: bool) -> NamedSharding:
  """Rows split over every device; a leading microbatch axis, when present, is not split."""
  return NamedSharding(mesh, P(None, BATCH_AXES) if microbatched else P(BATCH_AXES))


def initialize_distributed(cfg) -> None:
  """Starts JAX's multi-controller runtime when ``cfg.initialize`` is set.

  On a Cloud TPU slice leave the address empty: JAX finds the coordinator itself. On CPU
  hosts (and in tests) give ``coordinator_address``, ``num_processes`` and ``process_id``;
  cross-process collectives then use ``cfg.cpu_collectives`` (gloo).
  """
  if not cfg.initialize or jax.distributed.is_initialized():
    return
  if cfg.cpu_collectives:
    jax.config.update("jax_cpu_collectives_implementation", cfg.cpu_collectives)
  kwargs = {}
  if cfg.coordinator_address:
    kwargs = {"coordinator_address": cfg.coordinator_address,
              "num_processes": cfg.num_processes, "process_id": cfg.process_id}
  jax.distributed.initialize(**kwargs)
