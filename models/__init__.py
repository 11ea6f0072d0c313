"""Flax models. Nothing here knows of optimizers, configs or training.

``build(cfg)`` picks a model by ``cfg.name`` and passes the other fields as arguments;
``param_roles(params)`` names the role of every parameter (``embedding``, ``hidden``, ``head``,
``norm``, ``bias``, ``conv``) from the naming convention every model here follows.

The contract every model keeps (``models.Model``, written out in ``models/contract.py``):

* it is a ``flax.linen.Module`` whose fields are the config's ``model`` section, called as
  ``model.apply(variables, inputs, train=...)``;
* ``check()`` refuses a bad field before anything is compiled: a ``ValueError`` whose one line
  names ``model.<field>`` and what is accepted (``build`` calls it);
* ``flops_per_example(example)`` gives the training FLOPs (forward and backward) of one example;
* every model has the fields ``dtype`` (compute), ``param_dtype`` (storage) and ``remat``
  (rematerialise each repeated block in the backward pass);
* its parameter names follow the convention ``param_roles`` reads: ``*embedding*`` for input
  tables, the module ``head`` for the output layer, ``norm`` in the name of every
  normalisation module, ``bias`` / ``*_bias`` for offsets; other kernels of three or more
  axes are ``conv``, the remaining matrices ``hidden``.

Activations and normalisations are picked by name from ``models/layers.py`` and the field checks
are worded by ``models/contract.py``, so a name or a message means the same in every model.
"""

import jax

from models.contract import Model
from models.dna import DNAConvNet
from models.gated_conv import GatedConvLM
from models.gnn import GNN, GraphTransformer
from models.gpt import GPT
from models.layers import DTYPES
from models.linear import Linear
from models.mlp import MLP
from models.vision import CNN, ResNet, ResNet18, ResNet20, ResNet50, ViT

__all__ = [
    "CNN", "DNAConvNet", "DTYPES", "GNN", "GPT", "GatedConvLM", "GraphTransformer", "Linear", "MLP",
    "Model", "ROLES", "ResNet", "ResNet18", "ResNet20", "ResNet50", "ViT", "available", "build",
    "param_roles",
]

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


def build(cfg, **fields):
  """Returns the Flax module named ``cfg.name`` built from the other fields of ``cfg``.

  ``fields``: further module fields that are not in ``cfg`` (``training`` sets the compute
  ``dtype`` and ``param_dtype`` from the config's top level this way); a field given both ways
  is refused.
  """
  kwargs = dict(cfg)
  twice = sorted(set(kwargs) & set(fields))
  if twice:
    raise ValueError(f"model.{twice[0]} is set by the config's top level; remove it from model")
  kwargs.update(fields)
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

