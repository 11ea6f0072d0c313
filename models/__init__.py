"""Flax models. Nothing here knows of optimizers, configs or training.

``build(cfg)`` picks a model by ``cfg.name`` and passes the other fields as arguments;
``param_roles(params)`` names the role of every parameter (``embedding``, ``hidden``, ``head``,
``norm``, ``bias``, ``conv``) from the naming convention every model here follows.
"""

import functools

import jax

from models.dna import DNAConvNet
from models.gated_conv import GatedConvLM
from models.gnn import GNN, GraphTransformer
from models.gpt import GPT
from models.linear import Linear
from models.mlp import MLP
from models.vision import CNN, ResNet, ResNet18, ResNet20, ResNet50, ViT

ROLES = ("embedding", "hidden", "head", "norm", "bias", "conv")

_MODELS = {
    "dna_cnn": DNAConvNet,
    "gnn": GNN,
    "graph_transformer": GraphTransformer,
    "gpt": GPT,
    "gated_conv": GatedConvLM,
    "linear": Linear,
    "mlp": MLP,
    "cnn": CNN,
    "resnet": ResNet,
    "resnet18": ResNet18,
    "resnet20": ResNet20,
    "resnet50": ResNet50,
    "vit": ViT,
}


def available() -> list[str]:
  return sorted(_MODELS)


def build(cfg):
  """Returns the Flax module named ``cfg.name`` built from the other fields of ``cfg``."""
  kwargs = dict(cfg)
  name = kwargs.pop("name")
  if name not in _MODELS:
    raise ValueError(f"unknown model {name!r}: valid names are {', '.join(available())}")
  try:
    model = _MODELS[name](**{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()})
  except TypeError as e:
    raise ValueError(f"model {name!r}: {e}") from None
  model.check()
  return model


def _role(path, leaf) -> str:
  names = [getattr(k, "key", getattr(k, "name", str(k))) for k in path]
  leaf_name = str(names[-1])
  if any("norm" in str(n) for n in names[:-1]):
    return "norm"
  if leaf_name == "bias" or leaf_name.endswith("_bias"):
    return "bias"
  if "embedding" in leaf_name:
    return "embedding"
  if any(str(n) == "head" for n in names):
    return "head"
  return "conv" if leaf.ndim >= 3 else "hidden"


def param_roles(params):
  """A pytree like ``params`` holding each parameter's role (one of ``ROLES``)."""
  return jax.tree_util.tree_map_with_path(_role, params)


GPTTiny = functools.partial(GPT, vocab_size=256, max_len=32, width=32, depth=2, num_heads=2)
