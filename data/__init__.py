"""Input pipelines: offline embedded sources and TFDS (``tfds.data_source`` + grain).

Every source has ``task``, ``info`` (what a run's summary records about the data),
``tokens_per_example``, ``examples(start, count)`` (rows ``start ..`` of an infinite,
deterministic training stream, as numpy arrays of fixed shape) and ``eval_set()``.
A stream position is one integer, so a resumed run sees exactly the batches it would have.
"""

from data.digits import Digits
from data.dna import DNAMotifs, TfdsDNA
from data.graphs import GraphProperties, SBMNodes, TfdsMolPCBA
from data.linear_regression import LinearRegression
from data.mnist1d import DigitImages, Mnist1D
from data.stdlib_text import StdlibBytes
from data.tfds_source import TfdsImages
from data.tfds_text import TfdsText
from data.tfds_vision import TfdsVision
from data.token_streams import TokenStreams

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


def build(cfg, *, seed: int):
  """The data source ``cfg.name``, built from the other fields of ``cfg`` and ``seed``."""
  kwargs = dict(cfg)
  name = kwargs.pop("name")
  if name not in _SOURCES:
    raise ValueError(f"unknown data source {name!r}: valid names are {', '.join(available())}")
  try:
    return _SOURCES[name](seed=seed, **kwargs)
  except TypeError as e:
    raise ValueError(f"data source {name!r}: {e}") from None
