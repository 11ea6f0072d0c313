"""Update time and state memory of every optimizer on the quickstart GPT's parameter tree.

    python benchmarks/optimizers.py [--repeats 10] [--only adam,muon,...]

For each name in ``optimizers.available()`` (built with its defaults and a constant learning rate):
the median time of one jitted ``update`` + ``apply_updates`` on the 3.3M-parameter tree, relative
to ``optax.adam`` timed alternately with it in the same process, and the optimizer state's bytes
per parameter. Elementwise methods should stay within 1.5x of Adam; the matrix methods (Muon,
Scion, SOAP, Shampoo) are reported as they are.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import train  # noqa: E402

train.reexec_with_malloc_tunables()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import optax  # noqa: E402

import models  # noqa: E402
import optimizers  # noqa: E402

# Learning rates for methods whose defaults are "learning-rate free" (scale 1).
_LEARNING_RATE = {"prodigy": 1.0, "dog": 1.0}


def gpt_params():
  cfg = ml_collections.ConfigDict(dict(
      name="gpt", vocab_size=256, max_len=256, width=256, depth=4, num_heads=4, mlp_ratio=4))
  model = models.build(cfg)
  tokens = jnp.zeros((1, 256), jnp.int32)
  return model.init(jax.random.PRNGKey(0), tokens)["params"]


def build(name: str):
  cfg = ml_collections.ConfigDict(dict(
      name=name, learning_rate=_LEARNING_RATE.get(name, 1e-3), kwargs={}, weight_decay=0.0,
      decay_roles=("hidden", "head", "embedding", "conv"), grad_clip_norm=0.0,
      schedule=dict(name="constant", warmup_steps=0, end_factor=0.0, decay_fraction=0.2)))
  return optimizers.build(cfg, total_steps=1000, param_labels=models.param_roles)


class Stepper:
  """One jitted ``update`` + ``apply_updates`` of ``tx`` on its own copy of the parameters."""

  def __init__(self, tx, params):
    objective = lambda p: sum(jnp.sum(x * x) for x in jax.tree.leaves(p))
    tx = optax.with_extra_args_support(tx)

    def step(params, state, grads):
      updates, state = tx.update(grads, state, params, value=jnp.float32(1.0),
                                 obj_fn=objective)
      return optax.apply_updates(params, updates), state

    self._step = jax.jit(step, donate_argnums=(0, 1))
    self._grads = jax.tree.map(lambda x: 1e-3 * jnp.cos(jnp.arange(x.size, dtype=x.dtype))
                               .reshape(x.shape), params)
    self._params = jax.tree.map(jnp.copy, params)
    # some states alias the params (DoG, Prodigy)
    self._state = jax.tree.map(jnp.copy, tx.init(self._params))
    self.state_bytes = sum(x.nbytes for x in jax.tree.leaves(self._state)
                           if hasattr(x, "nbytes"))
    for _ in range(3):
      self.seconds()

  def seconds(self) -> float:
    start = time.perf_counter()
    self._params, self._state = self._step(self._params, self._state, self._grads)
    jax.block_until_ready(self._params)
    return time.perf_counter() - start


def paired_medians(method: Stepper, adam: Stepper, repeats: int) -> tuple[float, float]:
  """Median update times of ``method`` and of Adam, measured alternately so that the machine's
  drift (clock, other load) falls on both; each timed call follows an untimed one of the same
  optimizer, so neither is timed on caches the other has just emptied."""
  def warm_seconds(stepper):
    stepper.seconds()
    return stepper.seconds()

  times = [(warm_seconds(method), warm_seconds(adam)) for _ in range(repeats)]
  return (statistics.median(t for t, _ in times), statistics.median(t for _, t in times))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--only", default="", help="comma-separated names (default: all)")
  args = parser.parse_args()
  params = gpt_params()
  n = sum(x.size for x in jax.tree.leaves(params))
  names = args.only.split(",") if args.only else optimizers.available()
  adam = Stepper(optax.adam(1e-3), params)
  _, adam_s = paired_medians(adam, adam, args.repeats)
  print(f"parameter tree: quickstart GPT, {n / 1e6:.2f}M parameters, f32; "
        f"optax.adam update {adam_s * 1e3:.2f} ms, {adam.state_bytes / n:.1f} state bytes/param")
  print(f"{'optimizer':<22}{'ms/update':>10}{'x adam':>8}{'state B/param':>15}")
  for name in names:
    try:
      method = Stepper(build(name), params)
    except Exception as e:  # noqa: BLE001 -- report and go on to the next method
      print(f"{name:<22}  failed: {type(e).__name__}: {str(e).splitlines()[0][:80]}")
      continue
    seconds, adam_s = paired_medians(method, adam, args.repeats)
    print(f"{name:<22}{seconds * 1e3:>10.2f}{seconds / adam_s:>8.2f}"
          f"{method.state_bytes / n:>15.1f}")


if __name__ == "__main__":
  main()
