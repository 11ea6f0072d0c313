"""TFDS data sets read with ``tfds.data_source`` (array_record; no TensorFlow) and grain."""

import os

import grain
import numpy as np


def open_split(name: str, split: str, data_dir: str):
  """``tfds.data_source`` for one split, with a one-line error naming the fix if missing."""
  import tensorflow_datasets as tfds
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir or None, download=False)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise ValueError(f"unknown TFDS dataset {name!r}: {str(e).splitlines()[0]}") from None
  except (FileNotFoundError, NotImplementedError, AssertionError, KeyError) as e:
    folder = os.path.join(data_dir or tfds.core.constants.DATA_DIR, name)
    raise ValueError(
        f"TFDS dataset {name!r} (split {split!r}) is not prepared as array_record in {folder}: "
        f"run `tfds build {name} --data_dir={data_dir or '~/tensorflow_datasets'} "
        f"--file_format=array_record` on a machine with internet and copy the folder there "
        f"({type(e).__name__})") from None


class TfdsImages:
  """Image classification from TFDS (``mnist``, ``fashion_mnist``, ``cifar10``, ...).

  The training stream is grain's lazily shuffled, repeated view of the source: example ``i`` is
  ``dataset[i]``, random access with no iterator to carry, so the stream position is one
  integer. Pixels are scaled to [0, 1] and normalised by ``mean``/``std``.
  """

  task = "classification"
  tokens_per_example = 0

  def __init__(self, *, dataset: str, data_dir: str, seed: int, train_split: str = "train",
               eval_split: str = "test", eval_examples: int = 1024,
               mean: float = 0.5, std: float = 0.5):
    train = open_split(dataset, train_split, data_dir)
    self._eval_source = open_split(dataset, eval_split, data_dir)
    self._train = grain.MapDataset.source(train).shuffle(seed=seed).repeat().map(self._prepare)
    self.mean, self.std = mean, std
    self.eval_examples = min(eval_examples, len(self._eval_source))
    self.info = {"dataset": f"tfds:{dataset}", "train_examples": len(train),
                 "eval_examples": self.eval_examples}

  def _prepare(self, example) -> dict[str, np.ndarray]:
    image = np.asarray(example["image"], np.float32) / 255.0
    return {"inputs": (image - self.mean) / self.std,
            "targets": np.asarray(example["label"], np.int32)}

  @staticmethod
  def _stack(items) -> dict[str, np.ndarray]:
    return {k: np.stack([it[k] for it in items]) for k in items[0]}

  def examples(self, start: int, count: int) -> dict[str, np.ndarray]:
    return self._stack([self._train[i] for i in range(start, start + count)])

  def eval_set(self) -> dict[str, np.ndarray]:
    return self._stack([self._prepare(self._eval_source[i]) for i in range(self.eval_examples)])
