"""GPT-style decoder-only language model.

The residual stream is kept as a 2-D ``(B*T, D)`` array and every dense layer is a plain
``x @ W`` with ``W`` stored ``(in, out)``: on CPU this avoids the transposes XLA inserts for
3-D weight gradients (a third of the step when measured). Attention works on ``(B, H, T, Dh)`` and
splits the queries into causal chunks so that fully masked blocks are never computed.

Precision (``dtype``, ``param_dtype``; see ``models/layers.py``): parameters are stored in
``param_dtype`` and cast to ``dtype`` at their use, so the residual stream, every matmul and
the logits are in ``dtype``; the attention softmax, the linear attention's normaliser and the
norms' statistics are float32. ``remat`` wraps every block in ``nn.remat`` (``jax.checkpoint``):
the backward pass recomputes a block's activations from its input instead of storing them.

Shape suffixes: B batch, T time, D width, H heads, K head size, V vocabulary, F MLP width.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.contract import (
  check_bool,
  check_choice,
  check_divisible,
  check_int,
  check_precision_and_remat,
)
from models.layers import ACTIVATIONS, DTYPES, TOKEN_NORMS, norm_layer, softmax_f32

ATTENTIONS = ("softmax", "linear")


def _causal_softmax_attention(q_BxHxTxK, k_BxHxTxK, v_BxHxTxK, num_chunks: int):
  """Exact causal attention; query chunk c only looks at keys [0, end of chunk c)."""
  T, K = q_BxHxTxK.shape[2], q_BxHxTxK.shape[3]
  chunks = num_chunks if T % num_chunks == 0 else 1
  C = T // chunks
  q_BxHxTxK = q_BxHxTxK * (1.0 / math.sqrt(K))
  outs = []
  for c in range(chunks):
    q = q_BxHxTxK[:, :, c * C:(c + 1) * C]
    k = k_BxHxTxK[:, :, :(c + 1) * C]
    v = v_BxHxTxK[:, :, :(c + 1) * C]
    s_BxHxCxS = q @ jnp.swapaxes(k, -1, -2)
    row = jnp.arange(C)[:, None] + c * C
    col = jnp.arange((c + 1) * C)[None, :]
    s_BxHxCxS = s_BxHxCxS + jnp.where(col <= row, 0.0, -1e9).astype(s_BxHxCxS.dtype)[None, None]
    outs.append(softmax_f32(s_BxHxCxS) @ v)
  return jnp.concatenate(outs, axis=2) if len(outs) > 1 else outs[0]


def _causal_linear_attention(q_BxHxTxK, k_BxHxTxK, v_BxHxTxK):
  """Causal linear attention with the elu+1 feature map (Katharopoulos et al., 2020)."""
  T = q_BxHxTxK.shape[2]
  fq = jax.nn.elu(q_BxHxTxK) + 1.0
  fk = jax.nn.elu(k_BxHxTxK) + 1.0
  mask_TxT = jnp.tril(jnp.ones((T, T), q_BxHxTxK.dtype))
  a_BxHxTxT = (fq @ jnp.swapaxes(fk, -1, -2)) * mask_TxT[None, None]
  # The normaliser sums up to T positive terms: in float32, as a softmax's denominator is.
  norm_BxHxTx1 = a_BxHxTxT.sum(-1, keepdims=True, dtype=jnp.float32) + 1e-6
  return ((a_BxHxTxT @ v_BxHxTxK) / norm_BxHxTx1).astype(q_BxHxTxK.dtype)


class Block(nn.Module):
  """Pre-norm transformer block on a (B*T, D) residual stream."""

  batch: int
  time: int
  num_heads: int
  mlp_ratio: int
  activation: str
  attention: str
  norm: str
  use_bias: bool
  attn_chunks: int
  out_init_std: float
  dtype: str
  param_dtype: str

  @nn.compact
  def __call__(self, x_NxD):
    B, T, H = self.batch, self.time, self.num_heads
    D = x_NxD.shape[-1]
    K = D // H
    init = nn.initializers.normal(0.02)
    out_init = nn.initializers.normal(self.out_init_std)
    dtype, param_dtype = DTYPES[self.dtype], DTYPES[self.param_dtype]
    norm = lambda name: norm_layer(self.norm, name, dtype=self.dtype,
                                   param_dtype=self.param_dtype)

    def dense(x, name, shape, kernel_init):
      y = x @ self.param(name, kernel_init, shape, param_dtype).astype(dtype)
      if self.use_bias:
        bias = self.param(f"{name}_bias", nn.initializers.zeros, shape[-1:], param_dtype)
        y = y + bias.astype(dtype)[None]
      return y

    h_NxD = norm("attn_norm")(x_NxD)
    qkv_Nx3D = dense(h_NxD, "qkv", (D, 3 * D), init)
    qkv_3xBxHxTxK = qkv_Nx3D.reshape(B, T, 3, H, K).transpose(2, 0, 3, 1, 4)
    q, k, v = qkv_3xBxHxTxK[0], qkv_3xBxHxTxK[1], qkv_3xBxHxTxK[2]
    if self.attention == "softmax":
      o_BxHxTxK = _causal_softmax_attention(q, k, v, self.attn_chunks)
    else:
      o_BxHxTxK = _causal_linear_attention(q, k, v)
    o_NxD = o_BxHxTxK.transpose(0, 2, 1, 3).reshape(B * T, D)
    x_NxD = x_NxD + dense(o_NxD, "attn_out", (D, D), out_init)

    h_NxD = norm("mlp_norm")(x_NxD)
    h_NxF = ACTIVATIONS[self.activation](dense(h_NxD, "mlp_in", (D, self.mlp_ratio * D), init))
    return x_NxD + dense(h_NxF, "mlp_out", (self.mlp_ratio * D, D), out_init)


_REMAT_BLOCK = nn.remat(Block)  # same parameters as Block; activations recomputed in backward


class GPT(nn.Module):
  """Decoder-only transformer LM: int tokens (B, T) -> logits (B, T, V)."""

  vocab_size: int
  max_len: int
  width: int
  depth: int
  num_heads: int
  mlp_ratio: int = 4
  activation: str = "gelu"
  attention: str = "softmax"
  norm: str = "layer"
  tie_embeddings: bool = False
  use_bias: bool = False
  attn_chunks: int = 4
  remat: bool = False  # recompute each block's activations in the backward pass
  dtype: str = "float32"  # compute dtype (a name from models.layers.DTYPES)
  param_dtype: str = "float32"  # dtype the parameters are stored in

  def check(self):
    for field in ("vocab_size", "max_len", "width", "depth", "num_heads", "mlp_ratio",
                  "attn_chunks"):
      check_int(field, getattr(self, field))
    check_divisible("width", self.width, "num_heads", self.num_heads)
    check_choice("activation", self.activation, ACTIVATIONS)
    check_choice("attention", self.attention, ATTENTIONS)
    check_choice("norm", self.norm, TOKEN_NORMS)
    check_bool("tie_embeddings", self.tie_embeddings)
    check_bool("use_bias", self.use_bias)
    check_precision_and_remat(self, has_blocks=True)

  @nn.compact
  def __call__(self, tokens_BxT, *, train: bool = False):
    del train
    B, T = tokens_BxT.shape
    if T > self.max_len:
      raise ValueError(
          f"sequence length {T} exceeds the model's max_len={self.max_len} "
          f"(inputs of shape {tokens_BxT.shape}); raise model.max_len or lower data.seq_len")
    D, V = self.width, self.vocab_size
    dtype, param_dtype = DTYPES[self.dtype], DTYPES[self.param_dtype]
    init = nn.initializers.normal(0.02)
    emb_VxD = self.param("embedding", init, (V, D), param_dtype)
    pos_LxD = self.param("pos_embedding", init, (self.max_len, D), param_dtype)
    x_NxD = (emb_VxD[tokens_BxT] + pos_LxD[None, :T]).reshape(B * T, D).astype(dtype)
    block = _REMAT_BLOCK if self.remat else Block
    for i in range(self.depth):
      x_NxD = block(
          batch=B, time=T, num_heads=self.num_heads, mlp_ratio=self.mlp_ratio,
          activation=self.activation, attention=self.attention, norm=self.norm,
          use_bias=self.use_bias, attn_chunks=self.attn_chunks,
          out_init_std=0.02 / math.sqrt(2 * self.depth), dtype=self.dtype,
          param_dtype=self.param_dtype, name=f"block_{i}")(x_NxD)
    x_NxD = norm_layer(self.norm, "final_norm", dtype=self.dtype,
                       param_dtype=self.param_dtype)(x_NxD)
    head_DxV = emb_VxD.T if self.tie_embeddings else self.param("head", init, (D, V), param_dtype)
    return (x_NxD @ head_DxV.astype(dtype)).reshape(B, T, V)

  def flops_per_example(self, example) -> float:
    """Training FLOPs for one sequence: 6 N per token plus 12 L D T for attention (PaLM, App. B).

    N counts the matmul weights (blocks and head, not the embedding lookups); the attention
    term counts the full T x T score matrix, as the PaLM convention does.
    """
    seq_len = example.shape[-1]
    D, F = self.width, self.mlp_ratio * self.width
    n_matmul = self.depth * (3 * D * D + D * D + 2 * D * F) + D * self.vocab_size
    return seq_len * (6.0 * n_matmul + 12.0 * self.depth * D * seq_len)
