"""Genomics for the Adam-SGD gap study: DNA (A, C, G, T, N) with a Transformer or a CNN.

Used through ``configs/modalities.py:genomics,<arch>[,<data>][,smoke][,sgd]``.

* ``gpt``: the decoder-only Transformer of ``models/gpt.py`` with a 5-symbol vocabulary,
  next-base prediction; planted motifs make parts of each sequence predictable.
* ``cnn``: the residual 1-D CNN of ``models/dna.py`` classifying which of 4 planted motifs
  (or none) a sequence holds: chance is 1/5.

The data default to generated sequences (``motifs``, offline everywhere); ``genomics_ood``
reads TFDS ``genomics_ood`` instead (250-base bacterial fragments, 10 in-distribution classes;
set ``--config.data.data_dir``) with the same task. Architectural
switches are one override each: ``--config.model.activation=relu``, ``--config.model.norm=rms``,
``--config.model.attention=linear`` (gpt), ``--config.model.pooling=mean`` (cnn).
"""

from configs.base import set_adam, set_budget

ARCHS = ("gpt", "cnn")
DATA = ("motifs", "genomics_ood")
# Peak learning rates for SGD with heavy-ball momentum 0.9 (configs/modalities.py `sgd`).
SGD_LEARNING_RATE = {"gpt": 0.3, "cnn": 0.05}


def _data(c, data: str, task: str, seq_len: int, smoke: bool) -> int:
  """Fills ``c.data``; returns the number of classes of a classification task."""
  if data == "motifs":
    c.data.name = "dna_motifs"  # uniform random DNA with planted motifs (generated)
    c.data.task = task  # classification (which motif) | next_token (next base)
    c.data.seq_len = seq_len  # bases per sequence (model input length)
    c.data.num_motifs = 4  # distinct motifs; classification has num_motifs + 1 classes
    c.data.motif_len = 8  # bases per motif
    c.data.copies = 1 if task == "classification" else 4  # motif occurrences per sequence
    c.data.mutation_rate = 0.1 if task == "classification" else 0.0  # planted base -> random
    c.data.n_rate = 0.01  # chance that any base reads N (unknown)
    c.data.motif_seed = 0  # draws the motifs: part of the task, not of the run seed
    c.data.eval_examples = 64 if smoke else 512  # evaluation sequences (fixed, seed-free)
    return c.data.num_motifs + 1
  c.data.name = "tfds_genomics_ood"  # TFDS genomics_ood via tfds.data_source + grain
  c.data.dataset = "genomics_ood"  # TFDS name
  c.data.data_dir = ""  # TFDS data_dir: a folder or gs:// bucket ("" = TFDS default)
  c.data.task = task  # classification (bacterial class) | next_token (next base)
  c.data.seq_len = seq_len  # bases per model input (fragments are 250; N-padded if shorter)
  c.data.num_classes = 10  # in-distribution classes; other labels (OOD) get weight 0
  c.data.train_split = "train"  # TFDS split of the training stream
  c.data.eval_split = "validation"  # in-distribution validation split
  c.data.eval_examples = 64 if smoke else 1024  # evaluation sequences
  return c.data.num_classes


def apply(c, arch: str, smoke: bool, data: str = "motifs") -> None:
  """Fills ``c`` (a fresh ``base_config()``) for ``arch`` on ``data`` (one of ``DATA``)."""
  if arch not in ARCHS:
    raise ValueError(f"unknown genomics architecture {arch!r}: valid are {', '.join(ARCHS)}")
  if data not in DATA:
    raise ValueError(f"unknown genomics data {data!r}: valid are {', '.join(DATA)}")
  task = "next_token" if arch == "gpt" else "classification"
  if data == "genomics_ood":
    seq_len = 249 if task == "next_token" else 250  # next_token needs one base more
  else:
    seq_len = 32 if smoke else (64 if arch == "gpt" else 128)
  num_classes = _data(c, data, task, seq_len, smoke)

  if arch == "gpt":
    c.model.name = "gpt"  # models/gpt.py: decoder-only Transformer
    c.model.vocab_size = 5  # A, C, G, T, N
    c.model.max_len = seq_len  # longest sequence the position table covers
    c.model.width = 32 if smoke else 64  # residual stream width D
    c.model.depth = 1 if smoke else 2  # transformer blocks
    c.model.num_heads = 2 if smoke else 4  # attention heads (head size D / heads)
    c.model.mlp_ratio = 4  # MLP hidden width / D
    c.model.activation = "gelu"  # gelu | relu
    c.model.attention = "softmax"  # softmax | linear
    c.model.norm = "layer"  # layer | rms | none
    c.model.tie_embeddings = False  # share the input embedding with the output head
    c.model.use_bias = False  # biases in the dense layers
    c.model.attn_chunks = 1 if smoke or seq_len % 4 else 4  # causal query chunks (1: quick compile)
  else:
    c.model.name = "dna_cnn"  # models/dna.py: residual 1-D CNN
    c.model.task = task  # classification | next_token (causal, dilated convolutions)
    c.model.num_classes = num_classes  # must match the data's classes
    c.model.vocab_size = 5  # A, C, G, T, N
    c.model.width = 16 if smoke else 64  # channels D
    c.model.depth = 2 if smoke else 3  # residual convolution blocks
    c.model.kernel_size = 9  # convolution taps (a motif is 8 bases)
    c.model.pool_size = 2  # classification: max pooling after each block (1 = none)
    c.model.pooling = "max"  # global pooling over positions: max (detects) | mean
    c.model.activation = "relu"  # relu | gelu
    c.model.norm = "layer"  # layer | rms | none

  c.loss = "cross_entropy"  # next-base or class cross-entropy, in nats
  set_adam(
      c,
      learning_rate=1e-2 if arch == "gpt" else 2e-3,  # Adam's peak learning rate
      grad_clip_norm=1.0,  # both methods clip the global gradient norm at 1
      warmup_steps=2 if smoke else 30,  # linear warmup length
      end_factor=0.1)  # final learning rate / peak
  set_budget(
      c,
      steps=20 if smoke else 400,  # optimizer updates
      batch=16 if smoke else 64,  # sequences per update
      eval_batch=32 if smoke else 128,  # sequences per evaluation batch
      log_every=1 if smoke else 20,  # steps between metric lines
      eval_every=20 if smoke else 100,  # steps between evaluations (and at the end)
      checkpoint_every=20 if smoke else 200)  # steps between checkpoints (and at the end)
