"""DNA sequences over the five symbols A, C, G, T, N (0..4): generated and from TFDS.

``DNAMotifs`` plants known motifs in uniform random background, so the signal a model should
find is known exactly; ``TfdsDNA`` reads TFDS ``genomics_ood`` (bacterial genome fragments of
250 bases, Ren et al., 2019) with ``tfds.data_source`` and grain. Both serve two tasks:
``classification`` (which class a sequence belongs to) and ``next_token`` (predict each next
base).
"""

import numpy as np

from data.source import check_choice, check_eval_examples, check_int, check_number
from data.tfds_source import TfdsSource

SYMBOLS = "ACGTN"
N_SYMBOL = 4
TASKS = ("classification", "next_token")

# Byte -> symbol: A, C, G, T in either case map to 0..3; anything else is unknown (N).
_BYTE_TO_SYMBOL = np.full(256, N_SYMBOL, np.int32)
for _i, _c in enumerate("ACGT"):
  _BYTE_TO_SYMBOL[ord(_c)] = _BYTE_TO_SYMBOL[ord(_c.lower())] = _i


def encode(sequence: str | bytes) -> np.ndarray:
  """A DNA string as int32 symbols (A, C, G, T -> 0..3; any other character -> N = 4)."""
  raw = sequence.encode() if isinstance(sequence, str) else bytes(sequence)
  return _BYTE_TO_SYMBOL[np.frombuffer(raw, np.uint8)]


def _check_task_and_length(task: str, seq_len: int):
  check_choice("task", task, TASKS)
  check_int("seq_len", seq_len, low=1, hint=" (bases per model input)")


class DNAMotifs:
  """Uniform random DNA with planted motifs: a known, learnable signal.

  ``num_motifs`` motifs of ``motif_len`` bases are drawn once from ``motif_seed`` (they define
  the task, so every training seed sees the same ones). Each sequence is uniform over A, C, G,
  T; ``copies`` motif occurrences are written at uniform positions, each base of an occurrence
  replaced by a random base with probability ``mutation_rate``; finally each position becomes
  N with probability ``n_rate``.

  * ``classification``: the label is 0 (no motif planted) or k in 1..num_motifs (motif k
    planted): chance accuracy is 1 / (num_motifs + 1).
  * ``next_token``: each occurrence is a uniformly chosen motif; once its first bases are seen
    the rest of it is predictable, while background bases stay at chance (1/4).

  Training example ``i`` comes from ``default_rng((0, seed, i))`` and evaluation example ``j``
  from ``default_rng((1, j))``: any example is produced on its own, the evaluation set does not
  depend on the training seed, and the two streams never share a generator.
  """

  def __init__(self, *, seed: int, task: str = "classification", seq_len: int = 128,
               num_motifs: int = 4, motif_len: int = 8, copies: int = 1,
               mutation_rate: float = 0.0, n_rate: float = 0.01, motif_seed: int = 0,
               eval_examples: int = 512):
    _check_task_and_length(task, seq_len)
    check_int("num_motifs", num_motifs, low=1)
    check_int("copies", copies, low=1, hint=" (motif occurrences per sequence)")
    check_int("motif_len", motif_len, low=1, hint=" (bases per motif)")
    extra = 1 if task == "next_token" else 0
    if motif_len > seq_len + extra:
      raise ValueError(f"data.motif_len={motif_len} does not fit in data.seq_len={seq_len}: "
                       f"set data.motif_len <= {seq_len + extra} or a longer data.seq_len")
    check_number("mutation_rate", mutation_rate, low=0.0, high=1.0)
    check_number("n_rate", n_rate, low=0.0, high=1.0)
    check_int("motif_seed", motif_seed, low=0)
    check_eval_examples(eval_examples)
    self.task, self.seq_len, self.seed = task, seq_len, seed
    self.num_motifs, self.motif_len, self.copies = num_motifs, motif_len, copies
    self.mutation_rate, self.n_rate, self.eval_examples = mutation_rate, n_rate, eval_examples
    self.motifs = np.random.default_rng(motif_seed).integers(0, 4, (num_motifs, motif_len))
    self.info = {
        "dataset": "dna-planted-motifs", "task": task, "seq_len": seq_len,
        "num_motifs": num_motifs, "motif_len": motif_len, "copies": copies,
        "mutation_rate": mutation_rate, "n_rate": n_rate, "motif_seed": motif_seed,
        "motifs": ["".join(SYMBOLS[s] for s in m) for m in self.motifs],
        "num_classes": num_motifs + 1 if task == "classification" else len(SYMBOLS),
        "eval_examples": eval_examples,
    }

  @property
  def tokens_per_example(self) -> int:
    return self.seq_len if self.task == "next_token" else 0

  def _one(self, key) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng(key)
    length = self.seq_len + (1 if self.task == "next_token" else 0)
    seq = rng.integers(0, 4, length)
    if self.task == "classification":
      label = int(rng.integers(0, self.num_motifs + 1))
      which = [label - 1] * self.copies if label else []
    else:
      label, which = 0, rng.integers(0, self.num_motifs, self.copies)
    for m in which:
      start = rng.integers(0, length - self.motif_len + 1)
      motif = self.motifs[m].copy()
      mutated = rng.random(self.motif_len) < self.mutation_rate
      motif[mutated] = rng.integers(0, 4, int(mutated.sum()))
      seq[start:start + self.motif_len] = motif
    seq[rng.random(length) < self.n_rate] = N_SYMBOL
    return seq.astype(np.int32), label

  def _batch(self, keys) -> dict[str, np.ndarray]:
    seqs, labels = zip(*(self._one(k) for k in keys), strict=True)
    seq = np.stack(seqs)
    if self.task == "next_token":
      return {"inputs": seq[:, :-1], "targets": seq[:, 1:]}
    return {"inputs": seq, "targets": np.array(labels, np.int32)}

  def examples(self, start: int, count: int) -> dict[str, np.ndarray]:
    return self._batch([(0, self.seed, i) for i in range(start, start + count)])

  def eval_set(self) -> dict[str, np.ndarray]:
    return self._batch([(1, j) for j in range(self.eval_examples)])


class TfdsDNA(TfdsSource):
  """TFDS ``genomics_ood`` through ``tfds.data_source`` (array_record, no TensorFlow) and grain.

  The ``seq`` string becomes symbols (``encode``), cut or padded with N to the fixed length.

  * ``classification``: targets are the ``label`` class ids. The in-distribution splits
    (``train``, ``validation``, ``test``) hold classes 0..9; the OOD splits hold classes
    10..129, which have no in-distribution label, so examples whose label is ``>= num_classes``
    get weight 0 and target 0 (they stay in the batch, keeping its shape, but leave the loss
    and the accuracy).
  * ``next_token``: inputs are symbols ``[0, seq_len)`` and targets ``[1, seq_len]`` (so
    ``seq_len`` may be at most 249 on the real 250-base fragments); target positions past the
    end of a shorter sequence get weight 0.

  As in every ``TfdsSource``, training example ``i`` is element ``i`` of grain's lazily
  shuffled, repeated view: the stream position is one integer.
  """

  def __init__(self, *, seed: int, data_dir: str, dataset: str = "genomics_ood",
               task: str = "classification", seq_len: int = 250, num_classes: int = 10,
               train_split: str = "train", eval_split: str = "validation",
               eval_examples: int = 1024):
    _check_task_and_length(task, seq_len)
    check_int("num_classes", num_classes, low=1, hint=" (in-distribution classes)")
    self.task, self.seq_len, self.num_classes = task, seq_len, num_classes
    super().__init__(dataset=dataset, data_dir=data_dir, seed=seed, train_split=train_split,
                     eval_split=eval_split, eval_examples=eval_examples)
    self.info.update({"task": task, "seq_len": seq_len,
                      "num_classes": num_classes if task == "classification" else len(SYMBOLS)})

  @property
  def tokens_per_example(self) -> int:
    return self.seq_len if self.task == "next_token" else 0

  def _prepare(self, example) -> dict[str, np.ndarray]:
    length = self.seq_len + (1 if self.task == "next_token" else 0)
    symbols = encode(example["seq"])[:length]
    seq = np.full(length, N_SYMBOL, np.int32)
    seq[:len(symbols)] = symbols
    if self.task == "next_token":
      weights = (np.arange(1, length) < len(symbols)).astype(np.float32)
      return {"inputs": seq[:-1], "targets": seq[1:], "weights": weights}
    label = int(example["label"])
    known = label < self.num_classes
    # An out-of-range class id would make the cross-entropy NaN even at weight 0: use class 0.
    return {"inputs": seq, "targets": np.asarray(label if known else 0, np.int32),
            "weights": np.asarray(known, np.float32)}
