"""Train one config: python train.py --config=configs/X.py[:arg] --workdir=DIR [--config.a.b=V]"""

import os
import sys

# XLA maps and unmaps its large scratch buffers every step; these glibc settings keep them
# mapped (about 20% faster steps on a 2-core CPU, measured). glibc reads them only at
# process start, so the process re-executes itself once with them set.
_MALLOC_TUNABLES = ("glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:"
                    "glibc.malloc.trim_threshold=68719476736:glibc.malloc.hugetlb=1")


def reexec_with_malloc_tunables() -> None:
  """Restarts this process with GLIBC_TUNABLES set, unless set already or OPTLAB_NO_REEXEC=1."""
  if "GLIBC_TUNABLES" not in os.environ and not os.environ.get("OPTLAB_NO_REEXEC"):
    os.execve(sys.executable, [sys.executable, *sys.argv],
              {**os.environ, "GLIBC_TUNABLES": _MALLOC_TUNABLES})


if __name__ == "__main__":
  reexec_with_malloc_tunables()
  from training import cli
  # Experiment protocols by name, imported when a config names one (training imports none).
  sys.exit(cli.main(sys.argv, protocols={"gap": "experiments.protocols:gap",
                                       "robustness": "experiments.protocols:robustness",
                                       "seesaw": "experiments.protocols:seesaw",
                                       "cbs": "experiments.protocols:cbs",
                                       "adaptive": "experiments.protocols:adaptive",
                                       "bst": "experiments.protocols:bst"}))
