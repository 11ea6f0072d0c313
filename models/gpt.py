"""GPT-style decoder-only language model.

The residual stream is kept as a 2-D ``(B*T, D)`` array and every dense layer is a plain
``x @ W`` with ``W`` stored ``(in, out)``: on CPU this avoids the transposes XLA inserts for
3-D weight gradients (a third of the step when measured). Attention works on ``(B, H, T, Dh)`` and
splits the queries into causal chunks so that fully masked blocks are never computed.

Shape suffixes: B batch, T time, D width, H heads, K head size, V vocabulary, F MLP width.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.contract import check_bool, check_choice, check_divisible, check_int
from models.layers import ACTIVATIONS, TOKEN_NORMS, norm_layer

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
    outs.append(jax.nn.softmax(s_BxHxCxS, axis=-1) @ v)
  return jnp.concatenate(outs, axis=2) if len(outs) > 1 else outs[0]


def _causal_linear_attention(q_BxHxTxK, k_BxHxTxK, v_BxHxTxK):
  """Causal linear attention with the elu+1 feature map (Katharopoulos et al., 2020)."""
  T = q_BxHxTxK.shape[2]
  fq = jax.nn.elu(q_BxHxTxK) + 1.0
  fk = jax.nn.elu(k_BxHxTxK) + 1.0
  mask_TxT = jnp.tril(jnp.ones((T, T), q_BxHxTxK.dtype))
  a_BxHxTxT = (fq @ jnp.swapaxes(fk, -1, -2)) * mask_TxT[None, None]
  return (a_BxHxTxT @ v_BxHxTxK) / (a_BxHxTxT.sum(-1, keepdims=True) + 1e-6)


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

  @nn.compact
  def __call__(self, x_NxD):
    B, T, H = self.batch, self.time, self.num_heads
    D = x_NxD.shape[-1]
    K = D // H
    init = nn.initializers.normal(0.02)
    out_init = nn.initializers.normal(self.out_init_std)

    def dense(x, name, shape, kernel_init):
      y = x @ self.param(name, kernel_init, shape)
      if self.use_bias:
        y = y + self.param(f"{name}_bias", nn.initializers.zeros, shape[-1:])[None]
      return y

    h_NxD = norm_layer(self.norm, "attn_norm")(x_NxD)
    qkv_Nx3D = dense(h_NxD, "qkv", (D, 3 * D), init)
    qkv_3xBxHxTxK = qkv_Nx3D.reshape(B, T, 3, H, K).transpose(2, 0, 3, 1, 4)
    q, k, v = qkv_3xBxHxTxK[0], qkv_3xBxHxTxK[1], qkv_3xBxHxTxK[2]
    if self.attention == "softmax":
      o_BxHxTxK = _causal_softmax_attention(q, k, v, self.attn_chunks)
    else:
      o_BxHxTxK = _causal_linear_attention(q, k, v)
    o_NxD = o_BxHxTxK.transpose(0, 2, 1, 3).reshape(B * T, D)
    x_NxD = x_NxD + dense(o_NxD, "attn_out", (D, D), out_init)

    h_NxD = norm_layer(self.norm, "mlp_norm")(x_NxD)
    h_NxF = ACTIVATIONS[self.activation](dense(h_NxD, "mlp_in", (D, self.mlp_ratio * D), init))
    return x_NxD + dense(h_NxF, "mlp_out", (self.mlp_ratio * D, D), out_init)


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

  @nn.compact
  def __call__(self, tokens_BxT, *, train: bool = False):
    del train
    B, T = tokens_BxT.shape
    if T > self.max_len:
      raise ValueError(
          f"sequence length {T} exceeds the model's max_len={self.max_len} "
          f"(inputs of shape {tokens_BxT.shape}); raise model.max_len or lower data.seq_len")
    D, V = self.width, self.vocab_size
    init = nn.initializers.normal(0.02)
    emb_VxD = self.param("embedding", init, (V, D))
    pos_LxD = self.param("pos_embedding", init, (self.max_len, D))
    x_NxD = (emb_VxD[tokens_BxT] + pos_LxD[None, :T]).reshape(B * T, D)
    for i in range(self.depth):
      x_NxD = Block(
          batch=B, time=T, num_heads=self.num_heads, mlp_ratio=self.mlp_ratio,
          activation=self.activation, attention=self.attention, norm=self.norm,
          use_bias=self.use_bias, attn_chunks=self.attn_chunks,
          out_init_std=0.02 / math.sqrt(2 * self.depth), name=f"block_{i}")(x_NxD)
    x_NxD = norm_layer(self.norm, "final_norm")(x_NxD)
    head_DxV = emb_VxD.T if self.tie_embeddings else self.param("head", init, (D, V))
    return (x_NxD @ head_DxV).reshape(B, T, V)

  def flops_per_example(self, example) -> float:
    """Training FLOPs for one sequence: 6 N per token plus 12 L D T for attention (PaLM, App. B).

    N counts the matmul weights (blocks and head, not the embedding lookups); the attention
    term counts the full T x T score matrix, as the PaLM convention does.
    """
    seq_len = example.shape[-1]
    D, F = self.width, self.mlp_ratio * self.width
    n_matmul = self.depth * (3 * D * D + D * D + 2 * D * F) + D * self.vocab_size
    return seq_len * (6.0 * n_matmul + 12.0 * self.depth * D * seq_len)
