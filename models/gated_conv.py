"""Gated convolutional language model (Dauphin et al., 2017, "Language Modeling with Gated
Convolutional Networks"): a GPT-free baseline for the Adam-SGD gap study.

No attention, no position table: each block is a causal 1-D convolution whose output is split
into a value and a gate, ``a * gate(b)`` (GLU when the gate is a sigmoid), projected back to the
residual width. Whether Adam's advantage belongs to attention or to language data is exactly
what the comparison with the GPT asks, so the switches match the GPT's (norm, tied embeddings,
biases) and add the gate.

As in models/gpt.py the residual stream is a 2-D ``(B*T, D)`` array and every weight is used
as ``x @ W`` with ``W`` stored ``(in, out)``. The convolution gathers its ``K`` causal taps into
``(B*T, K*D)`` and does one matmul with the ``(K, D, 2F)`` kernel reshaped to ``(K*D, 2F)``.

Precision (``dtype``, ``param_dtype``; see ``models/layers.py``): the residual stream, the
convolution and projection matmuls and the logits are in ``dtype``, the parameters stored in
``param_dtype``. ``remat`` wraps every block in ``nn.remat`` (``jax.checkpoint``).

Shape suffixes: B batch, T time, D width, F gated width, K kernel size, V vocabulary.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.contract import check_bool, check_choice, check_int, check_precision_and_remat
from models.layers import ACTIVATIONS, DTYPES, TOKEN_NORMS, norm_layer

# The sigmoid gives Dauphin et al.'s GLU; the activations give its GELU, ReLU, SiLU variants.
GATES = {"sigmoid": jax.nn.sigmoid, **ACTIVATIONS}


def causal_taps(x_BxTxD, kernel_size: int, dilation: int):
  """``(B, T, K*D)``: at time t, the inputs at t - (K-1)d, ..., t - d, t (zeros before 0)."""
  B, T, D = x_BxTxD.shape
  pad = (kernel_size - 1) * dilation
  padded_BxSxD = jnp.concatenate([jnp.zeros((B, pad, D), x_BxTxD.dtype), x_BxTxD], axis=1)
  taps = [padded_BxSxD[:, k * dilation:k * dilation + T] for k in range(kernel_size)]
  return jnp.concatenate(taps, axis=-1)


class GatedConvBlock(nn.Module):
  """Pre-norm residual block: x + W_out (a * gate(b)), with [a, b] = causal_conv(norm(x))."""

  batch: int
  time: int
  kernel_size: int
  dilation: int
  expansion: int
  gate: str
  norm: str
  use_bias: bool
  out_init_std: float
  dtype: str
  param_dtype: str

  @nn.compact
  def __call__(self, x_NxD):
    B, T, K = self.batch, self.time, self.kernel_size
    D = x_NxD.shape[-1]
    F = self.expansion * D
    dtype, param_dtype = DTYPES[self.dtype], DTYPES[self.param_dtype]
    param = lambda name, init, shape: self.param(name, init, shape, param_dtype).astype(dtype)
    # fan-in of the convolution is K*D: scale so the gate starts in its linear range
    conv_KxDx2F = param("conv", nn.initializers.normal(1.0 / math.sqrt(K * D)), (K, D, 2 * F))
    out_FxD = param("out", nn.initializers.normal(self.out_init_std), (F, D))

    h_NxD = norm_layer(self.norm, "norm", dtype=self.dtype, param_dtype=self.param_dtype)(x_NxD)
    taps_NxKD = causal_taps(h_NxD.reshape(B, T, D), K, self.dilation).reshape(B * T, K * D)
    ab_Nx2F = taps_NxKD @ conv_KxDx2F.reshape(K * D, 2 * F)
    if self.use_bias:
      ab_Nx2F = ab_Nx2F + param("conv_bias", nn.initializers.zeros, (2 * F,))[None]
    g_NxF = ab_Nx2F[:, :F] * GATES[self.gate](ab_Nx2F[:, F:])
    y_NxD = g_NxF @ out_FxD
    if self.use_bias:
      y_NxD = y_NxD + param("out_bias", nn.initializers.zeros, (D,))[None]
    return x_NxD + y_NxD


_REMAT_BLOCK = nn.remat(GatedConvBlock)  # same parameters; activations recomputed in backward


class GatedConvLM(nn.Module):
  """Causal gated-convolution LM: int tokens (B, T) -> logits (B, T, V).

  Layer ``i`` dilates its kernel by ``dilation_base ** i`` (1 = no dilation; 2 doubles the
  receptive field every layer, as in WaveNet). The receptive field is
  ``1 + (kernel_size - 1) * sum_i dilation_base ** i`` tokens.
  """

  vocab_size: int
  width: int
  depth: int
  kernel_size: int = 4
  dilation_base: int = 1
  expansion: int = 2
  gate: str = "sigmoid"
  norm: str = "layer"
  tie_embeddings: bool = False
  use_bias: bool = False
  remat: bool = False  # recompute each block's activations in the backward pass
  dtype: str = "float32"  # compute dtype (a name from models.layers.DTYPES)
  param_dtype: str = "float32"  # dtype the parameters are stored in

  def check(self):
    for field in ("vocab_size", "width", "depth", "kernel_size", "dilation_base", "expansion"):
      check_int(field, getattr(self, field))
    check_choice("gate", self.gate, GATES)
    check_choice("norm", self.norm, TOKEN_NORMS)
    check_bool("tie_embeddings", self.tie_embeddings)
    check_bool("use_bias", self.use_bias)
    check_precision_and_remat(self, has_blocks=True)

  @property
  def receptive_field(self) -> int:
    return 1 + (self.kernel_size - 1) * sum(self.dilation_base**i for i in range(self.depth))

  @nn.compact
  def __call__(self, tokens_BxT, *, train: bool = False):
    del train
    if tokens_BxT.ndim != 2 or not jnp.issubdtype(tokens_BxT.dtype, jnp.integer):
      raise ValueError(f"gated_conv takes integer tokens of shape (batch, time); got "
                       f"{tokens_BxT.dtype} of shape {tokens_BxT.shape}")
    B, T = tokens_BxT.shape
    D, V = self.width, self.vocab_size
    dtype, param_dtype = DTYPES[self.dtype], DTYPES[self.param_dtype]
    names = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    init = nn.initializers.normal(0.02)
    emb_VxD = self.param("embedding", init, (V, D), param_dtype)
    x_NxD = emb_VxD[tokens_BxT].reshape(B * T, D).astype(dtype)
    block = _REMAT_BLOCK if self.remat else GatedConvBlock
    for i in range(self.depth):
      x_NxD = block(
          batch=B, time=T, kernel_size=self.kernel_size, dilation=self.dilation_base**i,
          expansion=self.expansion, gate=self.gate, norm=self.norm, use_bias=self.use_bias,
          out_init_std=0.02 / math.sqrt(2 * self.depth), name=f"block_{i}", **names)(x_NxD)
    x_NxD = norm_layer(self.norm, "final_norm", **names)(x_NxD)
    head_DxV = emb_VxD.T if self.tie_embeddings else self.param("head", init, (D, V), param_dtype)
    return (x_NxD @ head_DxV.astype(dtype)).reshape(B, T, V)

  def flops_per_example(self, example) -> float:
    """Training FLOPs for one sequence: 6 x multiply-adds of the convolutions, projections and
    head per token (the embedding lookup and the zero-padded taps count as in a dense layer)."""
    seq_len = example.shape[-1]
    D, F, K = self.width, self.expansion * self.width, self.kernel_size
    per_token = self.depth * (K * D * 2 * F + F * D) + D * self.vocab_size
    return 6.0 * seq_len * per_token
