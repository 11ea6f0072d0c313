"""Small offline vision sources: MNIST-1D, and scikit-learn's digits as 8x8 images.

MNIST-1D (Greydanus, 2020) is generated on the spot by the ``mnist1d`` package's own generator
(``get_dataset_args()`` then ``make_dataset(args)``), never downloaded: 40-sample signals made
from ten 1-D digit templates by padding, shear, translation and correlated noise. Small enough
for CPU, yet it separates MLPs, CNNs and transformers the way MNIST no longer does.

``DigitImages`` is ``data.digits.Digits`` with each row of 64 pixels laid out as the 8x8x1
image it is, so convolutional models and ViTs can see the spatial structure.
"""

import functools
import random

import numpy as np

from data.digits import Digits, ShuffledArrays
from data.source import check_bool, check_int, check_number


@functools.lru_cache(maxsize=4)
def _generate(num_samples: int, train_split: float, generator_seed: int):
  """MNIST-1D as the ``mnist1d`` package makes it; cached because it takes seconds."""
  from mnist1d.data import get_dataset_args, make_dataset
  args = get_dataset_args()
  args.num_samples, args.train_split, args.seed = num_samples, train_split, generator_seed
  # make_dataset seeds Python's and NumPy's global generators; leave them as they were.
  py_state, np_state = random.getstate(), np.random.get_state()
  try:
    ds = make_dataset(args)
  finally:
    random.setstate(py_state)
    np.random.set_state(np_state)
  return (ds["x"].astype(np.float32), ds["y"].astype(np.int32),
          ds["x_test"].astype(np.float32), ds["y_test"].astype(np.int32))


class Mnist1D(ShuffledArrays):
  """Classification of MNIST-1D signals (already centred and scaled to unit variance).

  ``channel_axis`` picks the input shape: ``(40,)`` for an MLP, ``(40, 1)`` (channels last) for
  convolutional models and ViTs. ``generator_seed`` fixes the data set itself (42 is the
  published one); the run's ``seed`` only orders the training stream: example ``i`` is item
  ``i mod n`` of epoch ``i // n``'s permutation, drawn from ``default_rng((seed, epoch))``.
  """

  def __init__(self, *, seed: int, num_samples: int = 5000, train_split: float = 0.8,
               generator_seed: int = 42, channel_axis: bool = False, eval_examples: int = 0):
    check_int("num_samples", num_samples, low=20, hint=" (signals generated; 5000 = published)")
    check_number("train_split", train_split, low=0.0, high=1.0, low_open=True, high_open=True,
                 hint=" (fraction of the signals used for training)")
    made = num_samples // 10 * 10  # the generator makes as many of each of the ten digits
    n_train = int(made * train_split)  # and splits them so
    if not 0 < n_train < made:
      raise ValueError(f"data.train_split={train_split} of data.num_samples={num_samples} leaves "
                       f"{n_train} for training: set data.train_split so that both splits are "
                       f"non-empty")
    check_int("generator_seed", generator_seed, low=0, high=2**32 - 1,
              hint=" (42 = the published data set)")
    check_bool("channel_axis", channel_axis)
    check_int("eval_examples", eval_examples, low=0, hint=" (ignored: the test split is used)")
    del eval_examples  # the whole test split is evaluated
    x, y, x_test, y_test = _generate(num_samples, train_split, generator_seed)
    if channel_axis:
      x, x_test = x[..., None], x_test[..., None]
    self._x, self._y, self._x_test, self._y_test = x, y, x_test, y_test
    self.seed = seed
    self._perms: dict[int, np.ndarray] = {}
    self.info = {"dataset": "mnist1d", "generator_seed": generator_seed,
                 "train_examples": len(y), "test_examples": len(y_test), "num_classes": 10,
                 "input_shape": list(x.shape[1:])}



class DigitImages(Digits):
  """scikit-learn's digits as ``(8, 8, 1)`` images (same split and stream as ``digits``)."""

  def __init__(self, *, seed: int, test_fraction: float = 0.2, eval_examples: int = 0):
    super().__init__(seed=seed, test_fraction=test_fraction, eval_examples=eval_examples)
    self.info = {**self.info, "input_shape": [8, 8, 1]}

  @staticmethod
  def _as_images(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {**batch, "inputs": batch["inputs"].reshape(-1, 8, 8, 1)}

  def examples(self, start: int, count: int) -> dict[str, np.ndarray]:
    return self._as_images(super().examples(start, count))

  def eval_set(self) -> dict[str, np.ndarray]:
    return self._as_images(super().eval_set())
