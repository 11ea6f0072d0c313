"""Graph models on padded, fixed-shape graph batches: message passing (GCN, GAT) and a graph
transformer.

A batch of graphs is a dict of arrays, each graph padded to the same node count N:

    {"nodes": (B, N, F) features, "adjacency": (B, N, N) 0/1, "node_mask": (B, N) 1 = real}

Dense adjacency keeps every shape static (one compiled program for any mix of graph sizes) and
turns message passing into batched matmuls, which is what accelerators run best at the graph
sizes used here (tens of nodes). Padded nodes have no edges, receive no messages that reach a
real node, and are left out of graph pooling; their own outputs are meaningless and must be
masked by the loss (the graph sources give them weight 0).

``output="node"`` gives ``(B, N, num_outputs)`` (node classification); ``output="graph"``
pools the real nodes (``readout``) and gives ``(B, num_outputs)``, or
``(B, num_tasks, num_outputs)`` when ``num_tasks > 0`` (many binary tasks at once, each a
two-way softmax: multi-label classification with the ordinary cross-entropy).

Precision (``dtype``, ``param_dtype``; see ``models/layers.py``): node states, projections,
message passing and attention matmuls are in ``dtype``, parameters stored in ``param_dtype``;
the graph operators (degrees, masks) are built in float32 and cast for their matmul, and
softmax and the graph readout are float32. ``remat`` wraps each graph-transformer block in
``nn.remat``; the GNN's layers are inline and it refuses ``remat``.

Shape suffixes: B batch, N nodes, F input features, D width, H heads, K head size,
C outputs, T tasks.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.contract import (
  check_choice,
  check_divisible,
  check_int,
  check_precision_and_remat,
)
from models.layers import ACTIVATIONS, DTYPES, TOKEN_NORMS, norm_layer, softmax_f32

CONVS = ("gcn", "gat")
OUTPUTS = ("node", "graph")
READOUTS = ("mean", "sum", "max")
ADJACENCY_MODES = ("bias", "mask")
_NEG = -1e9  # attention logit of a non-edge; finite so an all-masked (padded) row stays finite


def _unpack(inputs) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(nodes, adjacency, node_mask) from a graph batch, checking that their shapes agree."""
  if not isinstance(inputs, dict) or not {"nodes", "adjacency", "node_mask"} <= set(inputs):
    keys = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
    raise ValueError(f"graph models take a dict with nodes, adjacency and node_mask; got {keys}")
  nodes, adjacency, mask = inputs["nodes"], inputs["adjacency"], inputs["node_mask"]
  if nodes.ndim != 3:
    raise ValueError(f"nodes must be (batch, nodes, features); got shape {nodes.shape}")
  B, N = nodes.shape[:2]
  if adjacency.shape != (B, N, N) or mask.shape != (B, N):
    raise ValueError(
        f"graph size mismatch: nodes {nodes.shape} need adjacency {(B, N, N)} and node_mask "
        f"{(B, N)}; got adjacency {adjacency.shape} and node_mask {mask.shape}")
  return nodes.astype(jnp.float32), adjacency.astype(jnp.float32), mask.astype(jnp.float32)


def _self_loops(adjacency_BxNxN, mask_BxN):
  """A + I restricted to real nodes: edges touching a padded node are dropped."""
  pair_BxNxN = mask_BxN[:, :, None] * mask_BxN[:, None, :]
  eye_1xNxN = jnp.eye(mask_BxN.shape[1])[None]
  return jnp.maximum(adjacency_BxNxN * pair_BxNxN, eye_1xNxN * pair_BxNxN)


def _gcn_operator(adjacency_BxNxN, mask_BxN):
  """D^-1/2 (A + I) D^-1/2 (Kipf & Welling, 2017), zero on padded rows and columns."""
  a_BxNxN = _self_loops(adjacency_BxNxN, mask_BxN)
  degree_BxN = a_BxNxN.sum(-1)
  inv_sqrt_BxN = jnp.where(degree_BxN > 0, jax.lax.rsqrt(jnp.maximum(degree_BxN, 1.0)), 0.0)
  return inv_sqrt_BxN[:, :, None] * a_BxNxN * inv_sqrt_BxN[:, None, :]


class GATLayer(nn.Module):
  """Graph attention (Velickovic et al., 2018): each node attends to its neighbours and itself."""

  width: int
  num_heads: int
  dtype: str = "float32"
  param_dtype: str = "float32"

  @nn.compact
  def __call__(self, x_BxNxD, edges_BxNxN):
    B, N, _ = x_BxNxD.shape
    H, K = self.num_heads, self.width // self.num_heads
    dtype, param_dtype = DTYPES[self.dtype], DTYPES[self.param_dtype]
    param = lambda name, init, shape: self.param(name, init, shape, param_dtype).astype(dtype)
    z_BxNxHxK = nn.Dense(H * K, use_bias=False, name="proj", dtype=dtype,
                         param_dtype=param_dtype)(x_BxNxD).reshape(B, N, H, K)
    init = nn.initializers.normal(0.1)
    src_BxHxN = jnp.einsum("bnhk,hk->bhn", z_BxNxHxK, param("attn_src", init, (H, K)))
    dst_BxHxN = jnp.einsum("bnhk,hk->bhn", z_BxNxHxK, param("attn_dst", init, (H, K)))
    logits_BxHxNxN = nn.leaky_relu(src_BxHxN[:, :, :, None] + dst_BxHxN[:, :, None, :], 0.2)
    logits_BxHxNxN = jnp.where(edges_BxNxN[:, None] > 0, logits_BxHxNxN, _NEG)
    attn_BxHxNxN = softmax_f32(logits_BxHxNxN)
    out_BxNxHxK = jnp.einsum("bhij,bjhk->bihk", attn_BxHxNxN, z_BxNxHxK)
    bias_D = param("out_bias", nn.initializers.zeros, (H * K,))
    return out_BxNxHxK.reshape(B, N, H * K) + bias_D[None, None]


def _readout(kind: str, x_BxNxD, mask_BxN):
  """Pools the real nodes of each graph, in float32 (a sum over up to N nodes)."""
  x_BxNxD = x_BxNxD.astype(jnp.float32)
  m_BxNx1 = mask_BxN[:, :, None]
  if kind == "max":
    return jnp.where(m_BxNx1 > 0, x_BxNxD, _NEG).max(1)
  total_BxD = (x_BxNxD * m_BxNx1).sum(1)
  if kind == "sum":
    return total_BxD
  return total_BxD / jnp.maximum(m_BxNx1.sum(1), 1.0)


class _GraphModel(nn.Module):
  """The fields and the output stage shared by the graph models."""

  num_outputs: int
  output: str = "node"
  num_tasks: int = 0
  width: int = 64
  depth: int = 3
  num_heads: int = 4
  activation: str = "relu"
  norm: str = "layer"
  readout: str = "mean"
  remat: bool = False  # recompute each block's activations in the backward pass
  dtype: str = "float32"  # compute dtype (a name from models.layers.DTYPES)
  param_dtype: str = "float32"  # dtype the parameters are stored in

  def check(self):
    for field, valid in (("activation", ACTIVATIONS), ("norm", TOKEN_NORMS),
                         ("output", OUTPUTS), ("readout", READOUTS)):
      check_choice(field, getattr(self, field), valid)
    for field in ("num_outputs", "width", "depth", "num_heads"):
      check_int(field, getattr(self, field))
    check_int("num_tasks", self.num_tasks, minimum=0, reason=" (0: one task, no task axis)")
    if self._uses_heads():
      check_divisible("width", self.width, "num_heads", self.num_heads)
    if self.num_tasks and self.output != "graph":
      raise ValueError(f"model.num_tasks={self.num_tasks} needs model.output='graph' "
                       f"(got {self.output!r}); set num_tasks=0 for node outputs")
    check_precision_and_remat(self, has_blocks=self._has_blocks())

  def _uses_heads(self) -> bool:
    return True

  def _has_blocks(self) -> bool:
    return True

  def _dense(self, features: int, name: str, **kwargs):
    return nn.Dense(features, name=name, dtype=DTYPES[self.dtype],
                    param_dtype=DTYPES[self.param_dtype], **kwargs)

  def _outputs(self, x_BxNxD, mask_BxN):
    x_BxNxD = ACTIVATIONS[self.activation](norm_layer(
        self.norm, "final_norm", dtype=self.dtype, param_dtype=self.param_dtype)(x_BxNxD))
    if self.output == "node":
      return self._dense(self.num_outputs, "head")(x_BxNxD)
    pooled_BxD = _readout(self.readout, x_BxNxD, mask_BxN)
    if not self.num_tasks:
      return self._dense(self.num_outputs, "head")(pooled_BxD)
    out_BxTC = self._dense(self.num_tasks * self.num_outputs, "head")(pooled_BxD)
    return out_BxTC.reshape(-1, self.num_tasks, self.num_outputs)

  def _head_macs(self, num_nodes: int) -> int:
    if self.output == "node":
      return num_nodes * self.width * self.num_outputs
    return self.width * self.num_outputs * max(self.num_tasks, 1)


class GNN(_GraphModel):
  """Message passing: pre-norm residual GCN or GAT layers, then a node or graph head.

  ``conv="gcn"``: ``x <- x + D^-1/2 (A+I) D^-1/2 act(norm(x)) W``; ``conv="gat"``: the same
  residual form with multi-head graph attention over each node's neighbours and itself.
  """

  conv: str = "gcn"

  def check(self):
    check_choice("conv", self.conv, CONVS)
    super().check()

  def _uses_heads(self) -> bool:
    return self.conv == "gat"

  def _has_blocks(self) -> bool:
    return False  # its layers are inline: nothing for remat to wrap

  @nn.compact
  def __call__(self, inputs, *, train: bool = False):
    del train
    nodes_BxNxF, adjacency_BxNxN, mask_BxN = _unpack(inputs)
    act = ACTIVATIONS[self.activation]
    names = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    if self.conv == "gcn":
      op_BxNxN = _gcn_operator(adjacency_BxNxN, mask_BxN).astype(DTYPES[self.dtype])
    else:
      edges_BxNxN = _self_loops(adjacency_BxNxN, mask_BxN)
    x_BxNxD = self._dense(self.width, "input")(nodes_BxNxF)
    for i in range(self.depth):
      h_BxNxD = act(norm_layer(self.norm, f"norm_{i}", **names)(x_BxNxD))
      if self.conv == "gcn":
        h_BxNxD = op_BxNxN @ self._dense(self.width, f"gcn_{i}")(h_BxNxD)
      else:
        h_BxNxD = GATLayer(self.width, self.num_heads, name=f"gat_{i}", **names)(
            h_BxNxD, edges_BxNxN)
      x_BxNxD = x_BxNxD + h_BxNxD
    return self._outputs(x_BxNxD, mask_BxN)

  def flops_per_example(self, example) -> float:
    """Training FLOPs for one graph: 6 x multiply-adds, aggregation counted as a dense matmul.

    Per layer: the ``D x D`` transform of N nodes and the ``(N x N) @ (N x D)`` aggregation
    (GAT adds its two score projections, ``2 N D``); plus the ``F x D`` input layer and the
    head.
    """
    N, F = example["nodes"].shape
    D = self.width
    layer = N * D * D + N * N * D + (2 * N * D if self.conv == "gat" else 0)
    return 6.0 * (N * F * D + self.depth * layer + self._head_macs(N))


class GraphTransformerBlock(nn.Module):
  """Pre-norm transformer block whose attention sees the graph: adjacency as bias or mask."""

  num_heads: int
  mlp_ratio: int
  activation: str
  norm: str
  adjacency: str
  dtype: str
  param_dtype: str

  @nn.compact
  def __call__(self, x_BxNxD, edges_BxNxN, mask_BxN):
    B, N, D = x_BxNxD.shape
    H, K = self.num_heads, D // self.num_heads
    dtype, param_dtype = DTYPES[self.dtype], DTYPES[self.param_dtype]
    dense = lambda features, name, **kw: nn.Dense(features, name=name, dtype=dtype,
                                                  param_dtype=param_dtype, **kw)
    norm = lambda name: norm_layer(self.norm, name, dtype=self.dtype,
                                   param_dtype=self.param_dtype)
    h_BxNxD = norm("attn_norm")(x_BxNxD)
    qkv_3xBxHxNxK = (dense(3 * D, "qkv", use_bias=False)(h_BxNxD)
                     .reshape(B, N, 3, H, K).transpose(2, 0, 3, 1, 4))
    q, k, v = qkv_3xBxHxNxK[0], qkv_3xBxHxNxK[1], qkv_3xBxHxNxK[2]
    s_BxHxNxN = (q @ jnp.swapaxes(k, -1, -2)) * (K ** -0.5)
    if self.adjacency == "bias":
      # One learned logit offset per head for "is an edge" (Graphormer's spatial bias, 1 hop).
      edge_bias_H = self.param("edge_bias", nn.initializers.ones, (H,), param_dtype)
      s_BxHxNxN = s_BxHxNxN + (edge_bias_H[None, :, None, None]
                               * edges_BxNxN[:, None]).astype(dtype)
      allowed_BxNxN = mask_BxN[:, None, :] * jnp.ones_like(edges_BxNxN)
    else:
      allowed_BxNxN = edges_BxNxN
    s_BxHxNxN = jnp.where(allowed_BxNxN[:, None] > 0, s_BxHxNxN, _NEG)
    o_BxHxNxK = softmax_f32(s_BxHxNxN) @ v
    o_BxNxD = o_BxHxNxK.transpose(0, 2, 1, 3).reshape(B, N, D)
    x_BxNxD = x_BxNxD + dense(D, "attn_out")(o_BxNxD)
    h_BxNxD = norm("mlp_norm")(x_BxNxD)
    h_BxNxF = ACTIVATIONS[self.activation](dense(self.mlp_ratio * D, "mlp_in")(h_BxNxD))
    return x_BxNxD + dense(D, "mlp_out")(h_BxNxF)


_REMAT_TRANSFORMER_BLOCK = nn.remat(GraphTransformerBlock)


class GraphTransformer(_GraphModel):
  """Transformer over the nodes of each graph; padded nodes are never attended to.

  ``adjacency="bias"``: every node attends to every real node, with a learned per-head bonus
  on edges (and self); ``adjacency="mask"``: only to its neighbours and itself. No positional
  encodings: the graph structure enters only through the adjacency.
  """

  mlp_ratio: int = 2
  adjacency: str = "bias"

  def check(self):
    super().check()
    check_int("mlp_ratio", self.mlp_ratio)
    check_choice("adjacency", self.adjacency, ADJACENCY_MODES)

  @nn.compact
  def __call__(self, inputs, *, train: bool = False):
    del train
    nodes_BxNxF, adjacency_BxNxN, mask_BxN = _unpack(inputs)
    edges_BxNxN = _self_loops(adjacency_BxNxN, mask_BxN)
    x_BxNxD = self._dense(self.width, "input")(nodes_BxNxF)
    block = _REMAT_TRANSFORMER_BLOCK if self.remat else GraphTransformerBlock
    for i in range(self.depth):
      x_BxNxD = block(
          num_heads=self.num_heads, mlp_ratio=self.mlp_ratio, activation=self.activation,
          norm=self.norm, adjacency=self.adjacency, dtype=self.dtype,
          param_dtype=self.param_dtype, name=f"block_{i}")(x_BxNxD, edges_BxNxN, mask_BxN)
    return self._outputs(x_BxNxD, mask_BxN)

  def flops_per_example(self, example) -> float:
    """Training FLOPs for one graph: 6 x multiply-adds of the projections, the N x N scores and
    their values, the MLP, the input layer and the head."""
    N, F = example["nodes"].shape
    D, M = self.width, self.mlp_ratio * self.width
    block = 4 * N * D * D + 2 * N * N * D + 2 * N * D * M
    return 6.0 * (N * F * D + self.depth * block + self._head_macs(N))

