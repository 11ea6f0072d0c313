"""A linear model for the theory-sized tasks (noisy linear regression).

The model whose loss is a quadratic with a known Hessian (the input covariance), so the curves
of a real train step can be read against closed forms: the batch-size and SDE studies train it
through the same ``train_step`` as the networks.
"""

import flax.linen as nn

from models.contract import check_bool, check_int, check_precision_and_remat
from models.layers import DTYPES


class Linear(nn.Module):
  """Inputs (B, input_dim) -> one prediction per example, (B,): ``x @ w (+ b)``.

  No bias by default: the regression data are centred, and a bias would add a direction of
  curvature 1 that the power-law spectrum does not have. The weight sits in a module named
  ``head`` (its role for per-role optimizers); it starts at zero, the usual start of the
  linear-regression analyses (risk at init = the null risk the data source records).
  """

  input_dim: int
  use_bias: bool = False
  remat: bool = False  # no repeated blocks: only False
  dtype: str = "float32"  # compute dtype (a name from models.layers.DTYPES)
  param_dtype: str = "float32"  # dtype the parameters are stored in

  def check(self):
    check_int("input_dim", self.input_dim)
    check_bool("use_bias", self.use_bias)
    check_precision_and_remat(self, has_blocks=False)

  @nn.compact
  def __call__(self, x_BxD, *, train: bool = False):
    del train
    if x_BxD.ndim != 2 or x_BxD.shape[-1] != self.input_dim:
      raise ValueError(f"linear takes inputs of shape (batch, {self.input_dim}) "
                       f"(model.input_dim={self.input_dim}); got shape {x_BxD.shape}")
    dtype = DTYPES[self.dtype]
    head = nn.Dense(1, use_bias=self.use_bias, kernel_init=nn.initializers.zeros, name="head",
                    dtype=dtype, param_dtype=DTYPES[self.param_dtype])
    return head(x_BxD.astype(dtype))[:, 0]

  def flops_per_example(self, example) -> float:
    """Training FLOPs for one example: 6 x the ``input_dim`` multiply-adds of ``x @ w``."""
    del example
    return 6.0 * self.input_dim
