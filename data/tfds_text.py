"""TFDS text sets (``lm1b``, ``tiny_shakespeare``, ``c4``, ...) as byte-level language modelling.

Read with ``tfds.data_source`` (array_record; no TensorFlow) and grain. Tokens are UTF-8 bytes
(vocabulary 256); every document ends with the byte 0 (NUL, which text never contains) so the
model can tell where one stops and the next starts.

Packing with random access. The sets differ by orders of magnitude (tiny_shakespeare is one
1 MB document, lm1b 30 M sentences, c4 365 M web pages), so the training stream is cut into
chunks rather than packed whole:

* grain's ``MapDataset.source(...).shuffle(seed).repeat()`` gives a seeded order of the
  training documents by random access (an index shuffle; no pass over the data, no list held);
* chunk ``c`` packs documents ``c * docs_per_chunk, c * docs_per_chunk + 1, ...`` of that order
  into one byte stream: ``docs_per_chunk`` of them, fewer once ``max_chunk_bytes`` is reached
  (so a book-sized document is a chunk of its own), more while the chunk is shorter than one
  window;
* training example ``i`` is the window of ``seq_len + 1`` bytes of chunk
  ``i // examples_per_chunk`` at an offset drawn from ``default_rng((seed, i))``, as in
  ``data/stdlib_text.py``.

So example ``i`` is a function of ``(seed, i)`` alone, and only the chunk in use is held (a
one-entry cache: consecutive examples share it). The evaluation set packs the first documents
of the evaluation split, in stored order, and cuts them into consecutive, non-overlapping
windows: the same set whatever the seed.
"""

import numpy as np

from data.source import check_eval_examples, check_int, check_str
from data.tfds_source import open_splits

EOS = 0  # byte that ends every document


def _text_feature(source, dataset: str, requested: str) -> str:
  """The name of the text feature: ``requested``, else ``text``, else the only Text feature."""
  import tensorflow_datasets as tfds
  features = source.dataset_info.features
  texts = sorted(k for k, f in features.items() if isinstance(f, tfds.features.Text))
  if requested:
    if requested not in texts:
      raise ValueError(f"data.text_feature={requested!r} is not a text feature of {dataset}: "
                       f"valid are {', '.join(texts) or 'none'}")
    return requested
  if "text" in texts:
    return "text"
  if len(texts) == 1:
    return texts[0]
  raise ValueError(f"{dataset} has text features {', '.join(texts) or 'none'}: "
                   f"choose one with data.text_feature")


def encode(text) -> np.ndarray:
  """UTF-8 bytes of one document followed by ``EOS``, as uint8 tokens."""
  raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
  return np.frombuffer(raw + bytes([EOS]), np.uint8)


class TfdsText:
  """Next-byte prediction on a TFDS text set, packed into fixed-length windows (see above).

  Args:
    dataset: TFDS name (``lm1b``, ``tiny_shakespeare``, ``c4``; any set with a text feature).
    data_dir: TFDS data_dir: a folder or a gs:// bucket ("" = TFDS default).
    seq_len: bytes per training sequence.
    seed: orders the documents and draws the window offsets.
    train_split, eval_split: TFDS split names.
    text_feature: the feature holding the text ("" = ``text`` or the only Text feature).
    docs_per_chunk: documents packed into one chunk.
    max_chunk_bytes: a chunk stops taking documents once it holds this many bytes.
    examples_per_chunk: consecutive training examples drawn from one chunk.
    eval_examples: evaluation windows (fewer if the evaluation split is shorter).
  """

  def __init__(self, *, dataset: str, data_dir: str, seq_len: int, seed: int,
               train_split: str = "train", eval_split: str = "validation",
               text_feature: str = "", docs_per_chunk: int = 512,
               max_chunk_bytes: int = 1 << 20, examples_per_chunk: int = 128,
               eval_examples: int = 64):
    check_int("seq_len", seq_len, low=1, hint=" (bytes per training sequence)")
    check_int("docs_per_chunk", docs_per_chunk, low=1)
    check_int("max_chunk_bytes", max_chunk_bytes, low=1)
    check_int("examples_per_chunk", examples_per_chunk, low=1)
    check_eval_examples(eval_examples)
    check_str("text_feature", text_feature, what='a feature name ("" = text or the only one)')
    train, self._docs, eval_source = open_splits(
        dataset, data_dir, train_split=train_split, eval_split=eval_split, seed=seed)
    self._feature = _text_feature(train, dataset, text_feature)
    self.seq_len, self.seed = seq_len, seed
    self.docs_per_chunk, self.max_chunk_bytes = docs_per_chunk, max_chunk_bytes
    self.examples_per_chunk = examples_per_chunk
    self._cache: dict[int, np.ndarray] = {}

    window, parts, size, read = seq_len + 1, [], 0, 0
    while size < eval_examples * window and read < len(eval_source):
      parts.append(encode(eval_source[read][self._feature]))
      size, read = size + parts[-1].size, read + 1
    count = min(eval_examples, size // window)
    if count == 0:
      raise ValueError(f"data.seq_len={seq_len} is too long for the {eval_split!r} split of "
                       f"{dataset} ({size} bytes in {read} documents): set data.seq_len <= "
                       f"{size - 1} or another data.eval_split")
    eval_bytes = np.concatenate(parts)[:count * window].reshape(count, window).astype(np.int32)
    self._eval = {"inputs": eval_bytes[:, :-1], "targets": eval_bytes[:, 1:]}
    self.info = {
        "dataset": f"tfds:{dataset}",
        "tokenizer": "utf-8 bytes, document end = byte 0",
        "text_feature": self._feature,
        "train_documents": len(train),
        "eval_split": eval_split,
        "eval_examples": count,
        "eval_documents": read,
    }

  @property
  def tokens_per_example(self) -> int:
    return self.seq_len

  def chunk(self, c: int) -> np.ndarray:
    """The packed bytes of chunk ``c`` (see the module docstring)."""
    if c not in self._cache:
      first, parts, size = c * self.docs_per_chunk, [], 0
      while ((len(parts) < self.docs_per_chunk and size < self.max_chunk_bytes)
             or size < self.seq_len + 1):
        parts.append(encode(self._docs[first + len(parts)][self._feature]))
        size += parts[-1].size
      self._cache = {c: np.concatenate(parts)}
    return self._cache[c]

  def examples(self, start: int, count: int) -> dict[str, np.ndarray]:
    """Training examples ``start .. start + count - 1`` of the infinite stream."""
    rows = []
    for i in range(start, start + count):
      stream = self.chunk(i // self.examples_per_chunk)
      offset = np.random.default_rng((self.seed, i)).integers(stream.size - self.seq_len)
      rows.append(stream[offset:offset + self.seq_len + 1])
    seq = np.stack(rows).astype(np.int32)
    return {"inputs": seq[:, :-1], "targets": seq[:, 1:]}

  def eval_set(self) -> dict[str, np.ndarray]:
    return self._eval
