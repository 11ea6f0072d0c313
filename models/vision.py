"""Vision models: a small CNN, ResNets (CIFAR-style 18 and 20, ImageNet-style 50) and a ViT.

Every model takes channels-last inputs ``(B, *spatial, C)`` with one to three spatial axes:
``(B, H, W, C)`` images, or ``(B, L, C)`` signals such as MNIST-1D. Convolution and pooling
windows take the rank of the input, so the same module classifies digits and 1-D signals.

Parameter roles follow ``models.param_roles``: convolution kernels have three or more axes
(``conv``); every normalisation layer, BatchNorm included, sits in a module whose name contains
``norm`` (``norm``), so an optimizer can treat its scale and offset apart; the classifier is
the module ``head``; the ViT's patch projection, position table and class token are
``embedding``s, its attention and MLP matrices ``hidden``.

BatchNorm uses the batch statistics when ``train=True`` (and updates the running averages in
the ``batch_stats`` collection, which the train loop keeps as the state's ``model_state``) and
the running averages when ``train=False``, so an evaluated example does not depend on the
others in its batch.

Precision (``dtype``, ``param_dtype``; see ``models/layers.py``): inputs, activations,
convolutions and matmuls are in ``dtype``, parameters stored in ``param_dtype``; softmax and
normalisation statistics (BatchNorm's running averages included) are float32. ``remat`` wraps
each ResNet residual block and each ViT encoder block in ``nn.remat``; the CNN has no repeated
blocks and refuses it.

Shape suffixes: B batch, S spatial axes (any number), C channels, F features, N tokens,
D width, H heads, K head size, E classes.
"""

import functools
import math
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from models.contract import (
  check_bool,
  check_choice,
  check_divisible,
  check_int,
  check_ints,
  check_precision_and_remat,
  check_range,
)
from models.layers import ACTIVATIONS, CONV_NORMS, DTYPES, TOKEN_NORMS, norm_layer, softmax_f32

POOLS = ("max", "avg")
BLOCKS = ("basic", "bottleneck")
STEMS = ("cifar", "imagenet")
VIT_POOLINGS = ("cls", "mean")


def _spatial_rank(model_name: str, x) -> int:
  """The number of spatial axes of channels-last ``x``; refuses anything else with its shape."""
  if not 3 <= x.ndim <= 5:
    raise ValueError(
        f"{model_name} takes channels-last inputs (batch, *spatial, channels) with 1 to 3 "
        f"spatial axes; got inputs of shape {tuple(x.shape)} (for 1-D signals set "
        f"data.channel_axis=True; for flat vectors use the mlp)")
  return x.ndim - 2


def _conv_macs(in_spatial: Sequence[int], kernel: int, strides: int, c_in: int, c_out: int):
  """Multiply-adds of a SAME-padded convolution and its output spatial size."""
  out = tuple(-(-s // strides) for s in in_spatial)
  return math.prod(out) * kernel ** len(in_spatial) * c_in * c_out, out


class CNN(nn.Module):
  """Conv -> norm -> activation -> 2x pooling stages, then dense layers and a linear head.

  ``(B, *S, C)`` -> logits ``(B, E)``. Each stage halves every spatial axis (floor), so the
  input needs at least ``2 ** len(features)`` positions along each spatial axis.
  """

  num_classes: int
  features: Sequence[int] = (32, 64)  # output channels of each conv stage
  kernel_size: int = 3  # conv window along every spatial axis
  dense: Sequence[int] = (128,)  # widths of the dense layers before the head
  activation: str = "relu"
  norm: str = "batch"  # batch | layer | none, after every conv
  pool: str = "max"  # max | avg, window and stride 2
  bn_momentum: float = 0.9  # BatchNorm running-average decay
  remat: bool = False  # no repeated blocks: only False
  dtype: str = "float32"  # compute dtype (a name from models.layers.DTYPES)
  param_dtype: str = "float32"  # dtype the parameters are stored in

  def check(self):
    check_int("num_classes", self.num_classes)
    check_ints("features", self.features)
    check_int("kernel_size", self.kernel_size)
    check_ints("dense", self.dense, allow_empty=True)  # none: the head reads the last stage
    check_choice("activation", self.activation, ACTIVATIONS)
    check_choice("norm", self.norm, CONV_NORMS)
    check_choice("pool", self.pool, POOLS)
    check_range("bn_momentum", self.bn_momentum, 0.0, 1.0)
    check_precision_and_remat(self, has_blocks=False)

  def _check_size(self, x):
    nd = _spatial_rank("CNN", x)
    need = 2 ** len(self.features)
    if min(x.shape[1:1 + nd]) < need:
      raise ValueError(
          f"CNN with {len(self.features)} pooling stages needs at least {need} positions along "
          f"each spatial axis; got inputs of shape {tuple(x.shape)} (spatial "
          f"{tuple(x.shape[1:1 + nd])}): use fewer model.features or a larger image")
    return nd

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    nd = self._check_size(x)
    act = ACTIVATIONS[self.activation]
    pool = nn.max_pool if self.pool == "max" else nn.avg_pool
    names = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    dtypes = dict(dtype=DTYPES[self.dtype], param_dtype=DTYPES[self.param_dtype])
    x_BxSxC = x.astype(dtypes["dtype"])
    for i, features in enumerate(self.features):
      # A bias before a normalisation is cancelled by its mean subtraction.
      x_BxSxC = nn.Conv(features, (self.kernel_size,) * nd, padding="SAME",
                        use_bias=self.norm == "none", name=f"conv_{i}", **dtypes)(x_BxSxC)
      x_BxSxC = act(norm_layer(self.norm, f"norm_{i}", train=train,
                               momentum=self.bn_momentum, **names)(x_BxSxC))
      x_BxSxC = pool(x_BxSxC, (2,) * nd, strides=(2,) * nd)
    x_BxF = x_BxSxC.reshape(x_BxSxC.shape[0], -1)
    for j, width in enumerate(self.dense):
      x_BxF = act(nn.Dense(width, name=f"dense_{j}", **dtypes)(x_BxF))
    return nn.Dense(self.num_classes, name="head", **dtypes)(x_BxF)

  def flops_per_example(self, example) -> float:
    """Training FLOPs for one example: 6 x (multiply-adds of the convolutions and dense layers)."""
    spatial, c_in = tuple(example.shape[:-1]), example.shape[-1]
    macs = 0
    for features in self.features:
      m, spatial = _conv_macs(spatial, self.kernel_size, 1, c_in, features)
      macs += m
      spatial, c_in = tuple(s // 2 for s in spatial), features
    sizes = [math.prod(spatial) * c_in, *self.dense, self.num_classes]
    macs += sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    return 6.0 * macs


class _ResidualBlock(nn.Module):
  """A basic (two 3x3 convs) or bottleneck (1x1, 3x3, 1x1 x4) residual block.

  The stride sits on the 3x3 conv (ResNet v1.5); the shortcut is a strided 1x1 conv and a norm
  when the shape changes. With ``zero_init_residual`` the last norm's scale starts at zero, so
  every block starts as the identity (Goyal et al., 2017).
  """

  filters: int
  strides: int
  bottleneck: bool
  activation: str
  norm: str
  bn_momentum: float
  zero_init_residual: bool
  dtype: str
  param_dtype: str

  @nn.compact
  def __call__(self, x_BxSxC, train: bool):  # train positional: static under nn.remat
    nd = x_BxSxC.ndim - 2
    act = ACTIVATIONS[self.activation]
    bias = self.norm == "none"
    norm = functools.partial(norm_layer, self.norm, train=train, momentum=self.bn_momentum,
                             dtype=self.dtype, param_dtype=self.param_dtype)
    dtypes = dict(dtype=DTYPES[self.dtype], param_dtype=DTYPES[self.param_dtype])
    conv = lambda f, k, s, name: nn.Conv(f, (k,) * nd, strides=(s,) * nd, padding="SAME",
                                         use_bias=bias, name=name, **dtypes)
    if self.bottleneck:
      out = 4 * self.filters
      y = act(norm("norm_1")(conv(self.filters, 1, 1, "conv_1")(x_BxSxC)))
      y = act(norm("norm_2")(conv(self.filters, 3, self.strides, "conv_2")(y)))
      y = norm("norm_3", zero_scale=self.zero_init_residual)(conv(out, 1, 1, "conv_3")(y))
    else:
      out = self.filters
      y = act(norm("norm_1")(conv(self.filters, 3, self.strides, "conv_1")(x_BxSxC)))
      y = norm("norm_2", zero_scale=self.zero_init_residual)(conv(out, 3, 1, "conv_2")(y))
    shortcut = x_BxSxC
    if self.strides != 1 or x_BxSxC.shape[-1] != out:
      shortcut = norm("shortcut_norm")(conv(out, 1, self.strides, "shortcut_conv")(x_BxSxC))
    return act(y + shortcut)


# ``train`` (argument 2, counting the module) is a Python bool that picks BatchNorm's mode.
_REMAT_RESIDUAL_BLOCK = nn.remat(_ResidualBlock, static_argnums=(2,))


class ResNet(nn.Module):
  """Residual network: stem, stages of residual blocks, global average pooling, linear head.

  Stage ``i`` has ``width * 2**i`` filters (x4 outputs for bottleneck blocks) and, after the
  first stage, starts with a stride-2 block. The ``cifar`` stem is one 3x3 conv (small images
  keep their resolution); the ``imagenet`` stem is a 7x7 stride-2 conv and a 3x3 stride-2 max
  pool. ``(B, *S, C)`` -> logits ``(B, E)``.
  """

  num_classes: int
  stage_sizes: Sequence[int] = (3, 3, 3)  # residual blocks per stage
  block: str = "basic"  # basic | bottleneck
  width: int = 16  # filters of the first stage (doubled at each later stage)
  stem: str = "cifar"  # cifar | imagenet
  activation: str = "relu"
  norm: str = "batch"  # batch | layer | none
  bn_momentum: float = 0.9  # BatchNorm running-average decay
  zero_init_residual: bool = True  # each block's last norm scale starts at 0
  remat: bool = False  # recompute each residual block's activations in the backward pass
  dtype: str = "float32"  # compute dtype (a name from models.layers.DTYPES)
  param_dtype: str = "float32"  # dtype the parameters are stored in

  def check(self):
    check_int("num_classes", self.num_classes)
    check_ints("stage_sizes", self.stage_sizes)
    check_int("width", self.width)
    check_choice("block", self.block, BLOCKS)
    check_choice("stem", self.stem, STEMS)
    check_choice("activation", self.activation, ACTIVATIONS)
    check_choice("norm", self.norm, CONV_NORMS)
    check_range("bn_momentum", self.bn_momentum, 0.0, 1.0)
    check_bool("zero_init_residual", self.zero_init_residual)
    check_precision_and_remat(self, has_blocks=True)

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    nd = _spatial_rank("ResNet", x)
    act = ACTIVATIONS[self.activation]
    names = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    dtypes = dict(dtype=DTYPES[self.dtype], param_dtype=DTYPES[self.param_dtype])
    x_BxSxC = x.astype(dtypes["dtype"])
    k, s = (7, 2) if self.stem == "imagenet" else (3, 1)
    x_BxSxC = nn.Conv(self.width, (k,) * nd, strides=(s,) * nd, padding="SAME",
                      use_bias=self.norm == "none", name="stem_conv", **dtypes)(x_BxSxC)
    x_BxSxC = act(norm_layer(self.norm, "stem_norm", train=train,
                             momentum=self.bn_momentum, **names)(x_BxSxC))
    if self.stem == "imagenet":
      x_BxSxC = nn.max_pool(x_BxSxC, (3,) * nd, strides=(2,) * nd, padding="SAME")
    block = _REMAT_RESIDUAL_BLOCK if self.remat else _ResidualBlock
    for i, blocks in enumerate(self.stage_sizes):
      for j in range(blocks):
        x_BxSxC = block(
            filters=self.width * 2**i, strides=2 if i > 0 and j == 0 else 1,
            bottleneck=self.block == "bottleneck", activation=self.activation, norm=self.norm,
            bn_momentum=self.bn_momentum, zero_init_residual=self.zero_init_residual,
            name=f"stage{i}_block{j}", **names)(x_BxSxC, train)
    x_BxC = x_BxSxC.mean(axis=tuple(range(1, 1 + nd)))
    return nn.Dense(self.num_classes, name="head", **dtypes)(x_BxC)

  def flops_per_example(self, example) -> float:
    """Training FLOPs for one example: 6 x (multiply-adds of every conv and the head).

    Norms, activations, pooling and the residual additions (O(activations), not
    O(activations x channels)) are left out, as usual. Every kernel tap counts, those on the
    zero padding too; XLA's ``cost_analysis`` counts only the taps inside the image, which on
    small inputs is much less (8 x 8 digits: 0.70 of this, as the 4 x 4 and 2 x 2 stages put
    most of a 3 x 3 kernel on padding).
    """
    spatial, c_in = tuple(example.shape[:-1]), example.shape[-1]
    k, s = (7, 2) if self.stem == "imagenet" else (3, 1)
    macs, spatial = _conv_macs(spatial, k, s, c_in, self.width)
    c_in = self.width
    if self.stem == "imagenet":
      spatial = tuple(-(-d // 2) for d in spatial)
    for i, blocks in enumerate(self.stage_sizes):
      filters = self.width * 2**i
      for j in range(blocks):
        strides = 2 if i > 0 and j == 0 else 1
        if self.block == "bottleneck":
          out = 4 * filters
          m1, _ = _conv_macs(spatial, 1, 1, c_in, filters)
          m2, new = _conv_macs(spatial, 3, strides, filters, filters)
          m3, _ = _conv_macs(new, 1, 1, filters, out)
        else:
          out = filters
          m1, new = _conv_macs(spatial, 3, strides, c_in, filters)
          m2, _ = _conv_macs(new, 3, 1, filters, out)
          m3 = 0
        macs += m1 + m2 + m3
        if strides != 1 or c_in != out:
          macs += _conv_macs(spatial, 1, strides, c_in, out)[0]
        spatial, c_in = new, out
    macs += c_in * self.num_classes
    return 6.0 * macs


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block="basic", width=64,
                             stem="cifar")
"""CIFAR-style ResNet-18: 3x3 stem, 4 stages of 2 basic blocks, 64-512 filters (11M params)."""
ResNet20 = functools.partial(ResNet, stage_sizes=(3, 3, 3), block="basic", width=16,
                             stem="cifar")
"""He et al.'s CIFAR ResNet-20: 3 stages of 3 basic blocks, 16-64 filters (0.27M params)."""
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block="bottleneck", width=64,
                             stem="imagenet")
"""ImageNet ResNet-50 (v1.5): 7x7 stem, bottleneck stages of 3, 4, 6, 3 blocks (25.6M params)."""


class _EncoderBlock(nn.Module):
  """Pre-norm transformer block (bidirectional attention) on a (B, N, D) token sequence."""

  num_heads: int
  mlp_ratio: int
  activation: str
  norm: str
  dtype: str
  param_dtype: str

  @nn.compact
  def __call__(self, x_BxNxD):
    B, N, D = x_BxNxD.shape
    H = self.num_heads
    K = D // H
    norm = functools.partial(norm_layer, self.norm, dtype=self.dtype,
                             param_dtype=self.param_dtype)
    dense = functools.partial(nn.Dense, dtype=DTYPES[self.dtype],
                              param_dtype=DTYPES[self.param_dtype])
    h_BxNxD = norm("attn_norm")(x_BxNxD)
    qkv_BxNx3D = dense(3 * D, name="qkv")(h_BxNxD)
    qkv_3xBxHxNxK = qkv_BxNx3D.reshape(B, N, 3, H, K).transpose(2, 0, 3, 1, 4)
    q, k, v = qkv_3xBxHxNxK[0], qkv_3xBxHxNxK[1], qkv_3xBxHxNxK[2]
    s_BxHxNxN = (q * (1.0 / math.sqrt(K))) @ jnp.swapaxes(k, -1, -2)
    o_BxHxNxK = softmax_f32(s_BxHxNxN) @ v
    o_BxNxD = o_BxHxNxK.transpose(0, 2, 1, 3).reshape(B, N, D)
    x_BxNxD = x_BxNxD + dense(D, name="attn_out")(o_BxNxD)
    h_BxNxD = norm("mlp_norm")(x_BxNxD)
    h_BxNxF = ACTIVATIONS[self.activation](dense(self.mlp_ratio * D, name="mlp_in")(h_BxNxD))
    return x_BxNxD + dense(D, name="mlp_out")(h_BxNxF)


_REMAT_ENCODER_BLOCK = nn.remat(_EncoderBlock)


class ViT(nn.Module):
  """Vision transformer: non-overlapping patches, learned positions, pre-norm blocks, head.

  ``(B, *S, C)`` -> logits ``(B, E)``. Every spatial size must be divisible by
  ``patch_size``; the position table is sized by the image seen at initialisation. With
  ``pooling="cls"`` a learned class token is prepended and its final state classifies; with
  ``"mean"`` the final token states are averaged.
  """

  num_classes: int
  patch_size: int = 4  # patch side along every spatial axis
  width: int = 64  # token width D
  depth: int = 4  # transformer blocks
  num_heads: int = 4  # attention heads (head size D / heads)
  mlp_ratio: int = 4  # MLP hidden width / D
  activation: str = "gelu"
  norm: str = "layer"  # layer | rms | none
  pooling: str = "cls"  # cls | mean
  remat: bool = False  # recompute each encoder block's activations in the backward pass
  dtype: str = "float32"  # compute dtype (a name from models.layers.DTYPES)
  param_dtype: str = "float32"  # dtype the parameters are stored in

  def check(self):
    for field in ("num_classes", "patch_size", "width", "depth", "num_heads", "mlp_ratio"):
      check_int(field, getattr(self, field))
    check_divisible("width", self.width, "num_heads", self.num_heads)
    check_choice("activation", self.activation, ACTIVATIONS)
    check_choice("norm", self.norm, TOKEN_NORMS)
    check_choice("pooling", self.pooling, VIT_POOLINGS)
    check_precision_and_remat(self, has_blocks=True)

  def _check_size(self, x) -> int:
    nd = _spatial_rank("ViT", x)
    spatial = tuple(x.shape[1:1 + nd])
    if any(s % self.patch_size for s in spatial):
      raise ValueError(
          f"ViT patch_size={self.patch_size} does not divide the spatial size {spatial} of "
          f"inputs of shape {tuple(x.shape)}: choose a patch size that divides every side "
          f"or resize the images (data.image_size)")
    return nd

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    del train
    nd = self._check_size(x)
    B, C, P, D = x.shape[0], x.shape[-1], self.patch_size, self.width
    grid = tuple(s // P for s in x.shape[1:1 + nd])
    dtype, param_dtype = DTYPES[self.dtype], DTYPES[self.param_dtype]
    names = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    # (B, g1, P, g2, P, ..., C) -> (B, g1, g2, ..., P, P, ..., C) -> (B, N, P^nd C)
    split = x.astype(dtype).reshape((B,) + sum(((g, P) for g in grid), ()) + (C,))
    order = (0, *range(1, 2 * nd, 2), *range(2, 2 * nd + 1, 2), 2 * nd + 1)
    patches_BxNxF = split.transpose(order).reshape(B, math.prod(grid), P**nd * C)
    init = nn.initializers.normal(0.02)
    param = lambda name, init, shape: self.param(name, init, shape, param_dtype).astype(dtype)
    # The patch projection is the image's input table: it gets the embedding role.
    kernel_FxD = param("patch_embedding", nn.initializers.lecun_normal(), (P**nd * C, D))
    x_BxNxD = patches_BxNxF @ kernel_FxD + param("patch_bias", nn.initializers.zeros,
                                                 (D,))[None, None]
    if self.pooling == "cls":
      cls_1x1xD = param("cls_embedding", nn.initializers.zeros, (1, 1, D))
      x_BxNxD = jnp.concatenate([jnp.broadcast_to(cls_1x1xD, (B, 1, D)), x_BxNxD], axis=1)
    pos_NxD = param("pos_embedding", init, x_BxNxD.shape[1:])
    x_BxNxD = x_BxNxD + pos_NxD[None]
    block = _REMAT_ENCODER_BLOCK if self.remat else _EncoderBlock
    for i in range(self.depth):
      x_BxNxD = block(num_heads=self.num_heads, mlp_ratio=self.mlp_ratio,
                      activation=self.activation, norm=self.norm, name=f"block_{i}",
                      **names)(x_BxNxD)
    x_BxNxD = norm_layer(self.norm, "final_norm", **names)(x_BxNxD)
    x_BxD = x_BxNxD[:, 0] if self.pooling == "cls" else x_BxNxD.mean(axis=1)
    # A zero head starts every class at equal odds (big_vision's head_zeroinit).
    return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros, name="head",
                    dtype=dtype, param_dtype=param_dtype)(x_BxD)

  def flops_per_example(self, example) -> float:
    """Training FLOPs: 6 x (patch projection + per-token block matmuls + attention + head).

    Attention counts the full N x N score matrix and its product with the values
    (2 N^2 D multiply-adds per block), as the PaLM convention does.
    """
    spatial, c = tuple(example.shape[:-1]), example.shape[-1]
    nd, P, D = len(spatial), self.patch_size, self.width
    patches = math.prod(s // P for s in spatial)
    tokens = patches + (self.pooling == "cls")
    per_token = self.depth * (4 * D * D + 2 * self.mlp_ratio * D * D)
    macs = (patches * P**nd * c * D + tokens * per_token
            + self.depth * 2 * tokens * tokens * D + D * self.num_classes)
    return 6.0 * macs
