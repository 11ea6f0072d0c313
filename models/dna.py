"""A convolutional DNA model over the five symbols A, C, G, T, N.

Two tasks share one body (embedding, residual 1-D convolution blocks, a linear head):

* ``task="classification"``: ``(B, T)`` symbols -> logits ``(B, C)``.
  Each block is followed by max pooling of size ``pool_size``, so deeper layers see longer
  stretches; the last activations are pooled over the remaining positions (``pooling``).
* ``task="next_token"``: causal language modelling, ``(B, T)`` -> logits ``(B, T, V)``.
  Convolutions are left-padded (position t sees t and earlier only) and dilated by
  ``2**i`` in block i (WaveNet-style), so the receptive field grows exponentially with depth
  without pooling, which would mix positions across time.

The kernels are Flax ``nn.Conv`` kernels ``(K, D_in, D_out)``: three axes, so
``models.param_roles`` gives them the ``conv`` role; the symbol table is ``embedding``, the
output layer ``head``, the norms ``norm``.

Precision (``dtype``, ``param_dtype``; see ``models/layers.py``): activations and
convolutions in ``dtype``, parameters stored in ``param_dtype``. There are no repeated blocks
to rematerialise (the layers are inline), so ``remat`` is refused.

Shape suffixes: B batch, T time, D width, K kernel size, C classes, V vocabulary.
"""

import flax.linen as nn
import jax.numpy as jnp

from models.contract import check_choice, check_int, check_precision_and_remat
from models.layers import ACTIVATIONS, DTYPES, TOKEN_NORMS, norm_layer

TASKS = ("classification", "next_token")
POOLINGS = ("mean", "max")
SYMBOLS = "ACGTN"


class DNAConvNet(nn.Module):
  """Residual 1-D CNN on DNA symbols (0..4 = A, C, G, T, N); see the module docstring."""

  num_classes: int  # classes of task="classification" (next_token predicts vocab_size symbols)
  task: str = "classification"
  vocab_size: int = len(SYMBOLS)
  width: int = 64
  depth: int = 3
  kernel_size: int = 9
  pool_size: int = 2
  pooling: str = "mean"
  activation: str = "relu"
  norm: str = "layer"
  remat: bool = False  # no repeated blocks: only False
  dtype: str = "float32"  # compute dtype (a name from models.layers.DTYPES)
  param_dtype: str = "float32"  # dtype the parameters are stored in

  def check(self):
    check_choice("task", self.task, TASKS)
    check_choice("activation", self.activation, ACTIVATIONS)
    check_choice("norm", self.norm, TOKEN_NORMS)
    check_choice("pooling", self.pooling, POOLINGS)
    for field in ("width", "depth", "kernel_size", "pool_size", "vocab_size"):
      check_int(field, getattr(self, field))
    if self.task == "classification":
      check_int("num_classes", self.num_classes, minimum=2, reason=" for classification")
    else:  # unused by next_token, but a required field: still a count, never a string
      check_int("num_classes", self.num_classes)
    check_precision_and_remat(self, has_blocks=False)

  def min_len(self) -> int:
    """Shortest sequence the model takes: classification pools ``pool_size`` after each block."""
    return self.pool_size ** self.depth if self.task == "classification" else 1

  def _check_input(self, tokens):
    if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
      raise ValueError(f"DNAConvNet takes integer symbols of shape (batch, length); got "
                       f"{tokens.dtype} inputs of shape {tokens.shape}")
    if tokens.shape[1] < self.min_len():
      raise ValueError(
          f"sequence length {tokens.shape[1]} (inputs of shape {tokens.shape}) is shorter than "
          f"the {self.min_len()} = pool_size**depth = {self.pool_size}**{self.depth} positions "
          f"that classification pools away; raise data.seq_len or lower model.depth/pool_size")

  @nn.compact
  def __call__(self, tokens_BxT, *, train: bool = False):
    del train
    self._check_input(tokens_BxT)
    causal = self.task == "next_token"
    act = ACTIVATIONS[self.activation]
    names = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    dtypes = dict(dtype=DTYPES[self.dtype], param_dtype=DTYPES[self.param_dtype])
    emb_VxD = self.param("embedding", nn.initializers.normal(1.0), (self.vocab_size, self.width),
                         dtypes["param_dtype"])
    x_BxTxD = emb_VxD[tokens_BxT].astype(dtypes["dtype"])
    for i in range(self.depth):
      dilation = 2**i if causal else 1
      h_BxTxD = act(norm_layer(self.norm, f"norm_{i}", **names)(x_BxTxD))
      if causal:  # left padding only: position t never sees t + 1
        h_BxTxD = jnp.pad(h_BxTxD, ((0, 0), ((self.kernel_size - 1) * dilation, 0), (0, 0)))
      conv = nn.Conv(self.width, (self.kernel_size,), kernel_dilation=(dilation,),
                     padding="VALID" if causal else "SAME", name=f"conv_{i}", **dtypes)
      x_BxTxD = x_BxTxD + conv(h_BxTxD)
      if not causal and self.pool_size > 1:
        x_BxTxD = nn.max_pool(x_BxTxD, (self.pool_size,), strides=(self.pool_size,))
    x_BxTxD = act(norm_layer(self.norm, "final_norm", **names)(x_BxTxD))
    if causal:
      return nn.Dense(self.vocab_size, name="head", **dtypes)(x_BxTxD)
    pooled_BxD = x_BxTxD.mean(1) if self.pooling == "mean" else x_BxTxD.max(1)
    return nn.Dense(self.num_classes, name="head", **dtypes)(pooled_BxD)

  def flops_per_example(self, example) -> float:
    """Training FLOPs for one sequence: 6 x the multiply-adds of the convolutions and the head.

    Block i convolves ``T_i`` positions (``T / pool_size**i`` for classification) with a
    ``K x D x D`` kernel; the head is ``D x C`` once (classification) or ``D x V`` per
    position (next_token).
    """
    T, D, K = example.shape[-1], self.width, self.kernel_size
    if self.task == "next_token":
      return 6.0 * T * (self.depth * K * D * D + D * self.vocab_size)
    macs, length = 0, T
    for _ in range(self.depth):
      macs += length * K * D * D
      length = length // self.pool_size if self.pool_size > 1 else length
    return 6.0 * (macs + D * self.num_classes)

