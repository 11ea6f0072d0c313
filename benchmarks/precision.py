"""Compute dtype (``dtype``) on the quickstart GPT: float32 against bfloat16 step time and memory.

    python benchmarks/precision.py [--config configs/quickstart.py] [--steps 10] [--rounds 3]

The parameters and the optimizer state are float32 in both (``param_dtype``'s default), so the
difference is the activations and matmuls alone. Measured as ``benchmarks/remat.py`` measures
(``compare``): the variants' compiled steps alternating on one fixed batch, XLA's memory plan,
and the RSS of a fresh process per variant while it steps. On a CPU expect no gain in time
(XLA's CPU matmuls are fastest in float32, see PERFORMANCE.md) but smaller temporaries (the
activations kept for the backward pass are half the bytes); the speed-up is an accelerator's.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import train  # noqa: E402  (for the malloc settings the command line uses)

if __name__ == "__main__":
  train.reexec_with_launch_env()

from benchmarks.remat import arguments, compare  # noqa: E402

VARIANTS = {"float32": {"dtype": "float32"}, "bfloat16": {"dtype": "bfloat16"}}


def main():
  args = arguments(__doc__).parse_args()
  compare(args.config, VARIANTS, steps=args.steps, rounds=args.rounds, rss=not args.no_rss)


if __name__ == "__main__":
  main()
