"""Speed and memory benchmarks (not tests): they print figures and never assert a speed.

Each module is a command, ``python benchmarks/<name>.py --help``; ``python -m benchmarks.run``
gathers every model family (and the sweep runner's modes) into one table. Results go to stdout
and to JSON files outside the repository (``--out`` / ``--json``). ``benchmarks/torch_peer.py``
needs the ``bench`` extra (PyTorch); nothing else here does.
"""
