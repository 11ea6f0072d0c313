"""Multi-layer perceptron classifier."""

import math
from collections.abc import Sequence

import flax.linen as nn

from models.contract import check_choice, check_int, check_ints, check_precision_and_remat
from models.layers import ACTIVATIONS, DTYPES


class MLP(nn.Module):
  """Flattens the input, then hidden Dense layers and a linear head: (B, ...) -> logits (B, C)."""

  num_classes: int
  hidden: Sequence[int] = (256, 256)
  activation: str = "relu"
  remat: bool = False  # no repeated blocks: only False
  dtype: str = "float32"  # compute dtype (a name from models.layers.DTYPES)
  param_dtype: str = "float32"  # dtype the parameters are stored in

  def check(self):
    check_int("num_classes", self.num_classes)
    check_ints("hidden", self.hidden, allow_empty=True)  # no hidden layer: a linear classifier
    check_choice("activation", self.activation, ACTIVATIONS)
    check_precision_and_remat(self, has_blocks=False)

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    del train
    dtypes = dict(dtype=DTYPES[self.dtype], param_dtype=DTYPES[self.param_dtype])
    x_BxF = x.reshape(x.shape[0], -1).astype(dtypes["dtype"])
    for i, width in enumerate(self.hidden):
      x_BxF = ACTIVATIONS[self.activation](nn.Dense(width, name=f"dense_{i}", **dtypes)(x_BxF))
    return nn.Dense(self.num_classes, name="head", **dtypes)(x_BxF)

  def flops_per_example(self, example) -> float:
    """Training FLOPs for one example: 6 x (multiply-adds of the dense layers)."""
    sizes = [math.prod(example.shape), *self.hidden, self.num_classes]
    return 6.0 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
