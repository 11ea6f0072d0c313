"""Each modality x architecture pair of the Adam-SGD gap study, on embedded data by default.

    python train.py --config=configs/modalities.py:<modality>,<arch>[,smoke][,sgd] --workdir=DIR

e.g. ``:language,gpt``, ``:vision,resnet,smoke``, ``:genomics,cnn,smoke,sgd``,
``:graphs,gnn``. ``smoke`` is the seconds-long variant; ``sgd`` swaps Adam for SGD with
momentum 0.9 at the pair's SGD learning rate. Architectural switches are plain overrides
(``--config.model.activation=relu``, ``--config.model.attention=linear``).
Each modality's settings live in ``configs/_<modality>.py``.
"""

import importlib

from configs.base import base_config

MODALITIES = ("language", "vision", "genomics", "graphs", "theory")
_FLAGS = ("smoke", "sgd")


def get_config(arg: str = ""):
  parts = [p for p in arg.split(",") if p]
  if len(parts) < 2:
    raise ValueError(f"give :<modality>,<arch>[,smoke][,sgd] with modality one of "
                     f"{', '.join(MODALITIES)}")
  modality, arch, flags = parts[0], parts[1], set(parts[2:])
  if modality not in MODALITIES:
    raise ValueError(f"unknown modality {modality!r}: valid are {', '.join(MODALITIES)}")
  module = importlib.import_module(f"configs._{modality}")
  if arch not in module.ARCHS:
    raise ValueError(f"unknown architecture {arch!r} for {modality}: valid are "
                     f"{', '.join(module.ARCHS)}")
  if flags - set(_FLAGS):
    raise ValueError(f"unknown config variant {', '.join(sorted(flags - set(_FLAGS)))}: "
                     f"valid are {', '.join(_FLAGS)}")
  c = base_config()
  c.optimizer.name = "adam"
  module.apply(c, arch, "smoke" in flags)
  # Both methods' hyperparameters sit in the config; each method takes its own.
  c.optimizer.kwargs.momentum = 0.9  # SGD's heavy-ball momentum
  c.optimizer.kwargs.nesterov = False  # SGD: plain heavy ball
  if "sgd" in flags:
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = module.SGD_LEARNING_RATE[arch]
  return c.lock()
