"""The Adam-SGD gap across modalities: where Adam beats SGD, and the crossover batch size.

    python train.py --config=configs/gap.py:mini --workdir=runs/gap        # minutes on a CPU
    python train.py --config=configs/gap.py:mini,smoke --workdir=/tmp/gap  # seconds, for tests
    python train.py --config=configs/gap.py:claims --workdir=runs/claims   # the study's knobs
    python train.py --config=configs/gap.py:full --workdir=runs/gap_full   # TFDS, accelerators

For each modality x architecture pair, batch sizes over powers of two at a fixed example budget
(steps = budget / batch; tokens = examples x sequence length); SGD with heavy-ball momentum beta
(no Nesterov, no weight decay) against Adam with tied betas b1 = b2 = beta; a log-spaced
learning-rate grid per optimizer; the global gradient norm clipped at 1; cosine to zero after a
linear warmup over 10% of the steps. ``experiments/protocols.py`` runs the grid, extends it where
the best rate sits at an edge, re-runs each best cell with more seeds, and writes the report.

``claims`` puts the study's knobs to the test at the mini scale: the language GPT on Zipf token
streams (GELU, softmax attention) against the same GPT with one knob changed (a uniform
vocabulary, ReLU, linear attention), each a pair of its own (``language-gpt.<knob>``). A knob is
a cell, never a grid axis: the analysis tells pairs apart by their cell.
``full`` is the paper-scale protocol on the TFDS sets (prepare them first; README, TFDS data).
"""

import ml_collections

from configs import modalities
from configs.base import base_config, parse_variants, set_protocol_run, set_sweep

MINI_PAIRS = (("language", "gpt"), ("language", "gated_conv"), ("vision", "vit"),
              ("vision", "cnn"))
FULL_PAIRS = (("language", "gpt"), ("language", "gated_conv"), ("vision", "vit"),
              ("vision", "resnet"), ("genomics", "gpt"), ("genomics", "cnn"),
              ("graphs", "transformer"), ("graphs", "gnn"))
FULL_DATA = {"language": "lm1b", "vision": "cifar10", "genomics": "genomics_ood",
             "graphs": "molpcba"}  # the TFDS set of each modality in ``full``
# ``claims``: the language GPT on Zipf token streams, and one knob changed at a time.
CLAIMS = {"zipf": {},  # the reference: Zipf unigram law, GELU, softmax attention
          "uniform": {"data.zipf_exponent": 0.0},  # Adam's edge under a uniform vocabulary?
          "relu": {"model.activation": "relu"},  # a smaller gap with ReLU than GELU?
          "linear": {"model.attention": "linear"}}  # the gap without softmax attention


def _cell(modality: str, arch: str, optimizer: str, beta: float, smoke: bool, full: bool,
          data: str = "", knobs: dict | None = None):
  """The pair's own config (on ``data``, with ``knobs`` set) with the protocol's optimizer,
  clipping and schedule."""
  variant = ",".join(filter(None, (modality, arch, data, "" if full and not smoke else "smoke")))
  c = modalities.get_config(variant)
  with c.unlocked():
    for key, value in (knobs or {}).items():
      section, _, field = key.partition(".")
      c[section][field] = value
    set_protocol_run(
        c, optimizer,  # adam | sgd
        kwargs=(dict(b1=beta, b2=beta, eps=1e-8) if optimizer == "adam"  # tied betas
                else dict(momentum=beta, nesterov=False)),  # heavy-ball momentum
        grad_clip_norm=1.0,  # the global gradient norm clipped at 1
        warmup_steps=0,  # the sweep's warmup_fraction sets 10% of each run's steps
        checkpoint_every=500 if full else 10**9)  # (and at the end)
    if smoke and "depth" in c.model:
      c.model.depth = 1  # the smallest model that is still the architecture
  return c


def get_config(arg: str = "mini"):
  variants = parse_variants(arg, ("mini", "full", "claims", "smoke"))
  full, claims, smoke = "full" in variants, "claims" in variants, "smoke" in variants
  if full and claims:
    raise ValueError("choose one of gap.py's full and claims, not both")
  c = base_config()
  # (pair name, modality, architecture, data, knobs)
  if claims:
    pairs = [(f"language-gpt.{knob}", "language", "gpt", "zipf", knobs)
             for knob, knobs in CLAIMS.items()]
  elif full:
    pairs = [(f"{m}-{a}", m, a, FULL_DATA[m], {}) for m, a in FULL_PAIRS]
  else:
    pairs = [(f"{m}-{a}", m, a, "", {})
             for m, a in ((("vision", "mlp"),) if smoke else MINI_PAIRS)]
  full = full and not smoke  # full,smoke: every pair on its TFDS set, at the smoke size
  betas = (0.9, 0.95, 0.99, 0.999) if full else (0.9,)  # SGD's momentum = Adam's b1 = b2
  batches = ((16, 32, 64, 128, 256, 512) if full else (8, 16) if smoke
             else (8, 16, 32))  # powers of two at a fixed budget
  grids = {  # log-spaced learning rates, a factor of about 3 apart
      "adam": (3e-4, 1e-3, 3e-3, 1e-2, 3e-2) if full else (1e-3, 1e-2) if smoke
              else (1e-3, 3e-3, 1e-2),
      "sgd": (1e-2, 3e-2, 0.1, 0.3, 1.0) if full else (3e-2, 0.3) if smoke
             else (3e-2, 0.1, 0.3),
  }
  cells, axes = {}, {}
  for pair, modality, arch, data, knobs in pairs:
    for beta in betas:
      for optimizer in ("adam", "sgd"):
        name = f"{pair}-beta{beta:g}-{optimizer}"
        cells[name] = _cell(modality, arch, optimizer, beta, smoke, full, data, knobs)
        axes[name] = {"optimizer.learning_rate": grids[optimizer]}
  set_sweep(
      c,
      grid={"train.global_batch": batches,  # examples per update
            "seed": (0,)},  # the grid's seed; the best cells get more (protocol.seeds)
      cells=cells,  # modality x architecture x beta x optimizer, each with its own rates
      cell_axes=axes,  # the learning-rate grid of each optimizer
      examples_budget=(2**17 if full else 128 if smoke else 1280),  # examples per run
      warmup_fraction=0.1)  # linear warmup over 10% of each run's steps
  c.protocol = ml_collections.ConfigDict()
  c.protocol.name = "gap"  # experiments/protocols.py: the gap study
  c.protocol.seeds = 2 if smoke else 3  # seeds of each best (optimizer, batch) cell
  c.protocol.edge_extensions = 1 if smoke else 2  # rates added beyond an edge, at most
  c.protocol.grid_factor = 10**0.5  # the step of an added rate (the grids' step)
  return c.lock()
