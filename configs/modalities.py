"""Each modality x architecture pair of the Adam-SGD gap study, on embedded data by default.

    python train.py --config=configs/modalities.py:<modality>,<arch>[,<data>][,smoke][,sgd] \
        --workdir=DIR

e.g. ``:language,gpt``, ``:vision,resnet,smoke``, ``:genomics,cnn,smoke,sgd``,
``:graphs,gnn``, ``:language,gated_conv,zipf``. ``smoke`` is the seconds-long variant; ``sgd``
swaps Adam for SGD with momentum 0.9 at the pair's SGD learning rate; ``<data>`` picks one of
the modality's data sets (its ``DATA``; by default an embedded one). Architectural switches
are plain overrides (``--config.model.activation=relu``, ``--config.model.attention=linear``).
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
  datasets = getattr(module, "DATA", ())
  unknown = flags - set(_FLAGS) - set(datasets)
  if unknown:
    raise ValueError(f"unknown config variant {', '.join(sorted(unknown))}: valid are "
                     f"{', '.join(_FLAGS + datasets)}")
  chosen = flags & set(datasets)
  if len(chosen) > 1:
    raise ValueError(f"choose one data set of {modality}, not {', '.join(sorted(chosen))}")
  c = base_config()
  if chosen:
    module.apply(c, arch, "smoke" in flags, data=chosen.pop())
  else:
    module.apply(c, arch, "smoke" in flags)
  # Both methods' hyperparameters sit in the config; each method takes its own.
  c.optimizer.kwargs.momentum = 0.9  # SGD's heavy-ball momentum
  c.optimizer.kwargs.nesterov = False  # SGD: plain heavy ball
  if "sgd" in flags:
    c.optimizer.name = "sgd"  # SGD with the momentum above, in place of Adam
    c.optimizer.learning_rate = module.SGD_LEARNING_RATE[arch]  # the pair's SGD peak rate
  return c.lock()
