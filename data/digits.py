"""scikit-learn's bundled 8x8 digits (1,797 images, 10 classes): real data, offline."""

import numpy as np

from data.source import check_int, check_number


class ShuffledArrays:
  """A classification set held in memory (``_x``, ``_y``, ``_x_test``, ``_y_test``, ``seed``).

  Training example ``i`` is item ``i mod n`` of epoch ``i // n``'s permutation, drawn from
  ``default_rng((seed, epoch))``, so any position of the stream is one integer.
  """

  tokens_per_example = 0

  def _perm(self, epoch: int) -> np.ndarray:
    if epoch not in self._perms:
      self._perms = {epoch: np.random.default_rng((self.seed, epoch)).permutation(len(self._y))}
    return self._perms[epoch]

  def examples(self, start: int, count: int) -> dict[str, np.ndarray]:
    n = len(self._y)
    idx = np.array([self._perm(i // n)[i % n] for i in range(start, start + count)])
    return {"inputs": self._x[idx], "targets": self._y[idx]}

  def eval_set(self) -> dict[str, np.ndarray]:
    return {"inputs": self._x_test, "targets": self._y_test}


class Digits(ShuffledArrays):
  """Classification of the 64 pixel intensities (scaled to [0, 1]).

  A fixed permutation (seed 0) holds out the last ``test_fraction`` as the test set; training
  example ``i`` is item ``i mod n`` of epoch ``i // n``'s permutation, drawn from
  ``default_rng((seed, epoch))``, so any position of the stream is one integer.
  """

  def __init__(self, *, seed: int, test_fraction: float = 0.2, eval_examples: int = 0):
    check_number("test_fraction", test_fraction, low=0.0, high=1.0, low_open=True,
                 high_open=True, hint=" (share of the 1797 images held out)")
    check_int("eval_examples", eval_examples, low=0, hint=" (ignored: the test split is used)")
    del eval_examples  # the whole test split is evaluated
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    if not 0 < n_test < len(y):
      raise ValueError(f"data.test_fraction={test_fraction} holds out {n_test} of {len(y)} "
                       f"images: set data.test_fraction so that both splits are non-empty "
                       f"(e.g. 0.2)")
    x = (x / 16.0).astype(np.float32)
    self._x, self._y = x[order[n_test:]], y[order[n_test:]].astype(np.int32)
    self._x_test, self._y_test = x[order[:n_test]], y[order[:n_test]].astype(np.int32)
    self.seed = seed
    self._perms: dict[int, np.ndarray] = {}
    self.info = {"dataset": "sklearn-digits", "train_examples": len(self._y),
                 "test_examples": n_test, "num_classes": 10}

