"""Python's own standard-library source as a byte-level language-modelling corpus.

Every Python installation carries it, so it works offline on any machine. It follows the
interpreter's version: ``info`` records the version, the size and a SHA-256 of the bytes so
that a run's summary says exactly which corpus it saw.
"""

import functools
import hashlib
import pathlib
import sys
import sysconfig
import zlib

import numpy as np

from data.source import check_eval_examples, check_int

_SKIP_DIRS = {"site-packages", "test", "tests", "idlelib", "lib2to3", "__pycache__"}


def _corpus_files() -> tuple[pathlib.Path, list[pathlib.Path]]:
  root = pathlib.Path(sysconfig.get_paths()["stdlib"])
  files = sorted(p for p in root.rglob("*.py")
                 if not _SKIP_DIRS.intersection(p.relative_to(root).parts))
  return root, files


@functools.lru_cache(maxsize=4)
def _corpus(validation_every: int) -> tuple[np.ndarray, np.ndarray, dict]:
  """The training and validation bytes (read-only) and their description, read once per
  process: a sweep builds one source per run, and reading and hashing the library took about
  half a second each time."""
  root, files = _corpus_files()
  train, val = [], []
  for path in files:
    rel = str(path.relative_to(root)).encode()
    (val if zlib.crc32(rel) % validation_every == 0 else train).append(path.read_bytes())
  train_bytes = np.frombuffer(b"".join(train), np.uint8)
  val_bytes = np.frombuffer(b"".join(val), np.uint8)
  info = {
      "corpus": "python-stdlib-bytes",
      "python_version": sys.version.split()[0],
      "files": len(files),
      "train_bytes": int(train_bytes.size),
      "validation_bytes": int(val_bytes.size),
      "sha256": hashlib.sha256(train_bytes.tobytes() + val_bytes.tobytes()).hexdigest(),
  }
  return train_bytes, val_bytes, info


class StdlibBytes:
  """Next-byte prediction on random windows of the standard library's ``.py`` files.

  Files go to validation when the CRC32 of their relative path is divisible by
  ``validation_every`` (deterministic, independent of file order), the rest to training.
  Training example ``i`` is the window at an offset drawn from ``default_rng((seed, i))``:
  any example can be produced on its own, so the position in the stream is a single integer.
  """

  def __init__(self, *, seq_len: int, seed: int, validation_every: int = 10,
               eval_examples: int = 64):
    check_int("seq_len", seq_len, low=1, hint=" (bytes per training sequence)")
    check_int("validation_every", validation_every, low=2,
              hint=" (1 would put every file in validation)")
    check_eval_examples(eval_examples)
    self._train, self._val, info = _corpus(validation_every)
    self.seq_len, self.seed, self.eval_examples = seq_len, seed, eval_examples
    self.info = dict(info)
    if self._val.size < (seq_len + 1) * 2:
      raise ValueError(f"data.seq_len={seq_len} is too long for the validation split "
                       f"({self._val.size} bytes): set data.seq_len <= "
                       f"{self._val.size // 2 - 1} or a smaller data.validation_every")

  @property
  def tokens_per_example(self) -> int:
    return self.seq_len

  def _windows(self, corpus: np.ndarray, offsets: np.ndarray) -> dict[str, np.ndarray]:
    idx = offsets[:, None] + np.arange(self.seq_len + 1)[None, :]
    seq = corpus[idx].astype(np.int32)
    return {"inputs": seq[:, :-1], "targets": seq[:, 1:]}

  def examples(self, start: int, count: int) -> dict[str, np.ndarray]:
    """Training examples ``start .. start + count - 1`` of the infinite stream."""
    high = self._train.size - self.seq_len - 1
    offsets = np.array([np.random.default_rng((self.seed, i)).integers(high)
                        for i in range(start, start + count)], np.int64)
    return self._windows(self._train, offsets)

  def eval_set(self) -> dict[str, np.ndarray]:
    """A fixed validation set: windows at evenly spaced offsets of the validation split."""
    offsets = np.linspace(0, self._val.size - self.seq_len - 1, self.eval_examples).astype(np.int64)
    return self._windows(self._val, offsets)
