"""Analyses over sweep results (``DIR/results*.jsonl``): they read rows only, never train.

``gap``: best-over-grid losses with their grid edges, the Adam-SGD gap with intervals over seeds,
the crossover batch size, and the learning-rate robustness width.
"""
