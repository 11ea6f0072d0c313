"""Train one config: python train.py --config=configs/X.py[:arg] --workdir=DIR [--config.a.b=V]"""

import os
import sys

# The environment a run starts in, each variable set only where the user has not set it; both
# are read once, at process start, so the process re-executes itself once with them set.
LAUNCH_ENV = {
    # XLA maps and unmaps its large scratch buffers every step; these glibc settings keep them
    # mapped (about 20% faster steps on a 2-core CPU, measured).
    "GLIBC_TUNABLES": ("glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:"
                       "glibc.malloc.trim_threshold=68719476736:glibc.malloc.hugetlb=1"),
    # LAPACK calls (SOAP's QR, Shampoo's eigendecompositions, SVDs) run while XLA's own threads
    # hold the cores; OpenBLAS threads on top of them only contend (SOAP's update 279 -> 216 ms,
    # Shampoo's 1,553 -> 779 ms with one thread on an idle 2-core machine, measured).
    "OPENBLAS_NUM_THREADS": "1",
}


def reexec_with_launch_env() -> None:
  """Restarts this process with ``LAUNCH_ENV``'s missing variables set (once; none is
  overridden), unless OPTLAB_NO_REEXEC=1."""
  missing = {k: v for k, v in LAUNCH_ENV.items() if k not in os.environ}
  if missing and not os.environ.get("OPTLAB_NO_REEXEC"):
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **missing})


if __name__ == "__main__":
  reexec_with_launch_env()
  from training import cli
  # Experiment protocols by name, imported when a config names one (training imports none).
  sys.exit(cli.main(sys.argv, protocols={"gap": "experiments.protocols:gap",
                                       "robustness": "experiments.protocols:robustness",
                                       "seesaw": "experiments.protocols:seesaw",
                                       "cbs": "experiments.protocols:cbs",
                                       "adaptive": "experiments.protocols:adaptive",
                                       "bst": "experiments.protocols:bst"}))
