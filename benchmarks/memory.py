"""Optimizer state bytes per parameter, for every optimizer, on the quickstart GPT's parameters.

    python benchmarks/memory.py [--variant smoke] [--out memory.json]

The GPT comes from ``configs/quickstart.py`` through ``models.build`` and is initialised with
``jax.eval_shape``; each optimizer is built by ``optimizers.build`` with its own defaults (the
quickstart's optimizer section with its name changed, no method arguments, no weight decay) and
measured by ``optimizers.state_bytes``. Nothing is allocated, so this takes seconds on any
machine. Prints a Markdown table; ``--out`` also writes the figures as JSON.
``tests/test_optimizer_memory.py`` checks each method's count against its paper.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402

import models  # noqa: E402
import optimizers  # noqa: E402
from configs import quickstart  # noqa: E402


def gpt_params(config) -> dict:
  """The quickstart GPT's parameters as ``jax.ShapeDtypeStruct`` leaves (nothing allocated)."""
  model = models.build(config.model)
  tokens = jnp.zeros((1, config.data.seq_len), jnp.int32)
  return jax.eval_shape(lambda rng: model.init(rng, tokens, train=False),
                        jax.random.PRNGKey(config.seed))["params"]


def method_config(config, name: str) -> ml_collections.ConfigDict:
  """The config's optimizer section, switched to ``name`` with that method's defaults."""
  cfg = ml_collections.ConfigDict(config.optimizer.to_dict())
  cfg.name = name
  cfg.kwargs = ml_collections.ConfigDict()  # the method's own defaults
  cfg.weight_decay = 0.0  # Scion refuses any: its constraint is its decay
  return cfg


def measure(config, params) -> dict[str, int]:
  """State bytes of every registered optimizer on ``params``."""
  return {name: optimizers.state_bytes(
              optimizers.build(method_config(config, name), total_steps=config.train.steps,
                               param_labels=models.param_roles), params)
          for name in optimizers.available()}


def table(measured: dict[str, int], num_params: int) -> str:
  """A Markdown table, smallest state first, with each state relative to Adam's."""
  adam = measured["adam"]
  rows = ["| optimizer | state (MiB) | bytes / parameter | x Adam |", "|---|---:|---:|---:|"]
  for name, nbytes in sorted(measured.items(), key=lambda kv: (kv[1], kv[0])):
    rows.append(f"| {name} | {nbytes / 2**20:.2f} | {nbytes / num_params:.3f} | "
                f"{nbytes / adam:.2f} |")
  return "\n".join(rows)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--variant", default="", help="configs/quickstart.py's argument ('smoke')")
  parser.add_argument("--out", default="", help="also write the figures to this JSON file")
  args = parser.parse_args()
  config = quickstart.get_config(args.variant)
  params = gpt_params(config)
  leaves = jax.tree.leaves(params)
  num_params = sum(leaf.size for leaf in leaves)
  dtypes = sorted({str(leaf.dtype) for leaf in leaves})
  measured = measure(config, params)
  variant = f":{args.variant}" if args.variant else ""
  print(f"Optimizer state on the quickstart GPT (configs/quickstart.py{variant}): "
        f"{num_params:,} parameters ({', '.join(dtypes)}), {len(leaves)} leaves; each method "
        f"with its defaults, as optimizers.build makes it.\n")
  print(table(measured, num_params))
  if args.out:
    with open(args.out, "w") as f:
      json.dump({"config": f"configs/quickstart.py{variant}", "num_params": num_params,
                 "param_dtypes": dtypes,
                 "optimizers": {name: {"state_bytes": nbytes,
                                       "bytes_per_parameter": nbytes / num_params}
                                for name, nbytes in measured.items()}}, f, indent=1)
      f.write("\n")


if __name__ == "__main__":
  main()
