"""Global arrays from a data source: microbatched training batches and padded eval batches.

Each process reads only the rows it feeds (its slice of every microbatch) and JAX assembles
the global array from the processes' parts (``jax.make_array_from_process_local_data``).
"""

import jax
import numpy as np


def local_rows(count: int) -> tuple[int, int]:
  """``(offset, rows)``: the slice of ``count`` global rows that this process feeds."""
  per_process = count // jax.process_count()
  return jax.process_index() * per_process, per_process


def train_batch(source, start: int, global_batch: int, num_micro: int, sharding,
                seq_len: int = 0):
  """Global examples ``start .. start + global_batch`` as an ``(M, b, ...)`` sharded batch.

  ``sharding`` is ``mesh.batch_sharding(mesh, microbatched=True)``. ``seq_len`` (a sequence
  ramp's stage; 0 = the data's own) keeps the first ``seq_len`` tokens of each sequence.
  """
  per_micro = global_batch // num_micro
  offset, local = local_rows(per_micro)
  parts = [source.examples(start + m * per_micro + offset, local) for m in range(num_micro)]
  arrays = jax.tree.map(lambda *xs: np.stack(xs), *parts)
  full = source.tokens_per_example
  if seq_len and seq_len != full:
    arrays = jax.tree.map(
        lambda v: v[:, :, :seq_len] if v.ndim >= 3 and v.shape[2] == full else v, arrays)
  return jax.tree.map(lambda v: jax.make_array_from_process_local_data(
      sharding, v, (num_micro, per_micro) + v.shape[2:]), arrays)


def eval_batches(eval_set: dict, eval_batch: int, sharding):
  """The evaluation set in batches of ``eval_batch`` rows; padding rows get weight 0.

  ``sharding`` is ``mesh.batch_sharding(mesh, microbatched=False)``.
  """
  n = len(jax.tree.leaves(eval_set["targets"])[0])
  offset, local = local_rows(eval_batch)
  for begin in range(0, n, eval_batch):
    rows = np.arange(begin + offset, begin + offset + local)
    real = (rows < n).astype(np.float32)
    rows = np.minimum(rows, n - 1)
    batch = jax.tree.map(lambda v, rows=rows: v[rows], eval_set)
    weights = batch.get("weights")
    batch["weights"] = real if weights is None else (
        weights * real.reshape((-1,) + (1,) * (weights.ndim - 1)))
    yield jax.tree.map(lambda v: jax.make_array_from_process_local_data(
        sharding, v, (eval_batch,) + v.shape[1:]), batch)
