"""TFDS data sets read with ``tfds.data_source`` (array_record; no TensorFlow) and grain.

``TfdsSource`` is the base of the sources that turn one stored example into one training
example (images, DNA, molecules): the in-memory counterpart is ``data.digits.ShuffledArrays``.
``open_splits`` is what every TFDS source shares, ``data.tfds_text.TfdsText`` included.
"""

import importlib
import os

import grain
import numpy as np

from data.source import check_eval_examples, check_number, check_str, stack

# Builders in TFDS's legacy packages (``tfds.text``, ``tfds.structured``), which TFDS imports
# lazily: until their module is imported ``tfds.data_source`` does not know the name.
_LAZY_BUILDERS = {"c4": "tensorflow_datasets.text.c4",
                  "genomics_ood": "tensorflow_datasets.structured.genomics_ood"}


def _check_data_dir(data_dir):
  check_str("data_dir", data_dir, what='a folder, a gs:// bucket, or "" for the TFDS default')
  if not data_dir or "://" in data_dir:  # the TFDS default, or a bucket TFDS opens itself
    return
  folder = os.path.expanduser(data_dir)
  try:
    os.listdir(folder)
  except OSError as e:
    raise ValueError(
        f"data.data_dir={data_dir!r} cannot be read ({e.strerror or type(e).__name__}): set "
        f'data.data_dir to the folder `tfds build --data_dir=...` wrote ("" = TFDS default)'
    ) from None


def open_split(name: str, split: str, data_dir: str, *, key: str = "split"):
  """``tfds.data_source`` for one split, with a one-line error naming the fix if missing.

  ``key`` is the config key that chose ``split``, named in the error for an unknown split.
  """
  import tensorflow_datasets as tfds
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir or None, download=False)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise ValueError(f"data.dataset={name!r} is not a TFDS dataset ({str(e).splitlines()[0]}): "
                     f"set data.dataset to a TFDS name (e.g. mnist)") from None
  except ValueError as e:  # tfds's word for a split it cannot read: unknown or malformed
    message = str(e).splitlines()[0] if str(e) else type(e).__name__
    if message.startswith("Unknown split"):
      valid = message.partition("Should be one of ")[2].rstrip(".") or "?"
      raise ValueError(f"data.{key}={split!r} is not a split of TFDS {name!r}: "
                       f"valid are {valid}") from None
    if "split" not in message.lower():
      raise
    raise ValueError(f"data.{key}={split!r} cannot be read from TFDS {name!r} ({message}): "
                     f"set data.{key} to a split name, optionally sliced (train[:10%])") from None
  except (FileNotFoundError, NotImplementedError, AssertionError, KeyError) as e:
    folder = os.path.join(data_dir or tfds.core.constants.DATA_DIR, name)
    raise ValueError(
        f"data.data_dir={data_dir!r}: TFDS dataset {name!r} (split {split!r}) is not prepared "
        f"as array_record in {folder}: "
        f"run `tfds build {name} --data_dir={data_dir or '~/tensorflow_datasets'} "
        f"--file_format=array_record` on a machine with internet and copy the folder there "
        f"({type(e).__name__})") from None


def open_splits(dataset: str, data_dir: str, *, train_split: str, eval_split: str, seed: int):
  """The training split, grain's seeded shuffle of it repeated forever, and the eval split.

  The shuffle is grain's lazy index shuffle, reshuffled each epoch: element ``i`` of the stream
  is random access with no iterator to carry, so the stream position is one integer.
  """
  check_str("dataset", dataset, nonempty=True, what="a TFDS name (e.g. mnist)")
  _check_data_dir(data_dir)
  check_str("train_split", train_split, nonempty=True, what="a TFDS split (e.g. train)")
  check_str("eval_split", eval_split, nonempty=True, what="a TFDS split (e.g. test)")
  if dataset in _LAZY_BUILDERS:
    importlib.import_module(_LAZY_BUILDERS[dataset])
  train = open_split(dataset, train_split, data_dir, key="train_split")
  eval_source = open_split(dataset, eval_split, data_dir, key="eval_split")
  return train, grain.MapDataset.source(train).shuffle(seed=seed).repeat(), eval_source


class TfdsSource:
  """A TFDS set, one stored example per training example.

  Training example ``i`` is ``_train_example(i, stored)`` of element ``i`` of grain's shuffled,
  repeated view of the training split (``open_splits``); the evaluation set is ``_prepare`` of
  the first ``eval_examples`` of the evaluation split, in stored order. A subclass checks its own
  arguments, calls ``__init__`` here, extends ``info`` and defines ``_prepare`` (and
  ``_train_example`` where training examples are augmented).
  """

  tokens_per_example = 0

  def __init__(self, *, dataset: str, data_dir: str, seed: int, train_split: str,
               eval_split: str, eval_examples: int):
    check_eval_examples(eval_examples)
    self._train_source, stream, self._eval_source = open_splits(
        dataset, data_dir, train_split=train_split, eval_split=eval_split, seed=seed)
    self._train = stream.map_with_index(self._train_example)
    self.eval_examples = min(eval_examples, len(self._eval_source))
    self.info = {"dataset": f"tfds:{dataset}", "train_examples": len(self._train_source),
                 "eval_examples": self.eval_examples}

  def _prepare(self, example) -> dict:
    """One stored example as fixed-shape arrays (the evaluation transform)."""
    raise NotImplementedError

  def _train_example(self, index: int, example) -> dict:
    del index  # the same transform at every position: no augmentation
    return self._prepare(example)

  def examples(self, start: int, count: int) -> dict:
    return stack([self._train[i] for i in range(start, start + count)])

  def eval_set(self) -> dict:
    return stack([self._prepare(self._eval_source[i]) for i in range(self.eval_examples)])


class TfdsImages(TfdsSource):
  """Image classification from TFDS (``mnist``, ``fashion_mnist``, ``cifar10``, ...).

  Pixels are scaled to [0, 1] and normalised by ``mean``/``std``; no augmentation (see
  ``data.tfds_vision.TfdsVision`` for crops and flips).
  """

  def __init__(self, *, dataset: str, data_dir: str, seed: int, train_split: str = "train",
               eval_split: str = "test", eval_examples: int = 1024,
               mean: float = 0.5, std: float = 0.5):
    check_number("mean", mean, hint=" (pixel mean in [0, 1], subtracted)")
    check_number("std", std, low=0.0, low_open=True, hint=" (pixel spread, divided by)")
    self.mean, self.std = mean, std
    super().__init__(dataset=dataset, data_dir=data_dir, seed=seed, train_split=train_split,
                     eval_split=eval_split, eval_examples=eval_examples)

  def _prepare(self, example) -> dict[str, np.ndarray]:
    image = np.asarray(example["image"], np.float32) / 255.0
    return {"inputs": (image - self.mean) / self.std,
            "targets": np.asarray(example["label"], np.int32)}
