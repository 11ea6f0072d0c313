"""Input pipelines: offline embedded sources and TFDS (``tfds.data_source`` + grain).

Every source has ``task``, ``info`` (what a run's summary records about the data),
``tokens_per_example``, ``examples(start, count)`` (rows ``start ..`` of an infinite,
deterministic training stream, as numpy arrays of fixed shape) and ``eval_set()``.
A stream position is one integer, so a resumed run sees exactly the batches it would have.
"""

from data.digits import Digits
from data.stdlib_text import StdlibBytes
from data.tfds_source import TfdsImages

_SOURCES = {
    "stdlib_bytes": StdlibBytes,
    "digits": Digits,
    "tfds_images": TfdsImages,
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
