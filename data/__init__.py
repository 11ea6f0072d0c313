"""Input pipelines: offline embedded sources and TFDS (``tfds.data_source`` + grain).

Every source is a ``DataSource`` (``data/source.py``), the whole contract with ``training``:

* ``info``: a JSON-serialisable dict naming the data (what a run's summary records);
* ``tokens_per_example``: tokens one training example adds to ``tokens_seen`` (0: not tokens);
* ``examples(start, count)``: rows ``start ..`` of an infinite, deterministic training stream,
  as (possibly nested) dicts of numpy arrays whose shapes do not depend on ``start``;
* ``eval_set()``: the fixed evaluation set, the same structure, with ``targets``.

A stream position is one integer, so a resumed run sees exactly the batches it would have.
Sources are built by name from ``_SOURCES`` below (``build(cfg, seed=...)``); each checks its
arguments in its constructor and refuses a bad one with a ``data.<key>=<value>`` line. TFDS
sources subclass ``tfds_source.TfdsSource``, in-memory classification sets
``digits.ShuffledArrays``; the generated ones draw example ``i`` from its own seeded generator.
"""

import inspect

from data.digits import Digits
from data.dna import DNAMotifs, TfdsDNA
from data.graphs import GraphProperties, SBMNodes, TfdsMolPCBA
from data.linear_regression import LinearRegression
from data.mnist1d import DigitImages, Mnist1D
from data.source import DataSource
from data.stdlib_text import StdlibBytes
from data.tfds_source import TfdsImages
from data.tfds_text import TfdsText
from data.tfds_vision import TfdsVision
from data.token_streams import TokenStreams
from plain_numbers import is_int

__all__ = ["DataSource", "available", "build"]

_SOURCES = {
    "dna_motifs": DNAMotifs,
    "tfds_genomics_ood": TfdsDNA,
    "sbm_nodes": SBMNodes,
    "graph_properties": GraphProperties,
    "tfds_ogbg_molpcba": TfdsMolPCBA,
    "stdlib_bytes": StdlibBytes,
    "digits": Digits,
    "digit_images": DigitImages,
    "mnist1d": Mnist1D,
    "tfds_vision": TfdsVision,
    "tfds_images": TfdsImages,
    "tfds_text": TfdsText,
    "token_streams": TokenStreams,
    "linear_regression": LinearRegression,
}


def available() -> list[str]:
  return sorted(_SOURCES)


def build(cfg, *, seed: int) -> DataSource:
  """The data source ``cfg.name``, built from the other fields of ``cfg`` and ``seed``."""
  kwargs = dict(cfg)
  name = kwargs.pop("name", None)
  if name not in _SOURCES:
    raise ValueError(f"unknown data source {name!r}: valid names are {', '.join(available())}")
  if not is_int(seed) or seed < 0:
    raise ValueError(f"seed={seed!r} must be an integer >= 0: set seed to one (e.g. 0)")
  # Keys are checked against the constructor here, so that the error names the config key.
  params = inspect.signature(_SOURCES[name]).parameters
  valid = ", ".join(k for k in params if k != "seed")
  for key in kwargs:
    if key not in params or key == "seed":
      raise ValueError(f"data.{key}: unexpected keyword argument {key!r} for data source "
                       f"{name!r}: valid keys are {valid}")
  for key, param in params.items():
    if key != "seed" and param.default is param.empty and key not in kwargs:
      raise ValueError(f"data.{key} is missing: data source {name!r} needs it: add data.{key} "
                       f"to the config")
  return _SOURCES[name](seed=seed, **kwargs)
