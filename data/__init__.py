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
    "stdlib_bytes": lambda cfg, seed: StdlibBytes(
        seq_len=cfg.seq_len, seed=seed, eval_examples=cfg.eval_examples),
    "digits": lambda cfg, seed: Digits(seed=seed),
    "tfds_images": lambda cfg, seed: TfdsImages(
        name=cfg.tfds_name, data_dir=cfg.data_dir, seed=seed, eval_examples=cfg.eval_examples),
}


def available() -> list[str]:
  return sorted(_SOURCES)


def build(cfg, *, seed: int):
  """The data source ``cfg.name``, configured by the other fields of ``cfg``."""
  if cfg.name not in _SOURCES:
    raise ValueError(f"unknown data source {cfg.name!r}: valid names are {', '.join(available())}")
  return _SOURCES[cfg.name](cfg, seed)
