"""Language for the Adam-SGD gap study: a GPT or a gated-convolution LM, on bytes or tokens.

Used through ``configs/modalities.py:language,<arch>[,smoke][,sgd]``. The data default to
Python's standard library as bytes (offline everywhere); ``apply(..., data=...)`` picks one of
``DATA`` instead: ``zipf`` / ``uniform`` (generated Markov token streams whose unigram law is
the only difference; ``--config.data.zipf_exponent=S`` sets the law, 0 = uniform), or a TFDS
text set as bytes (``lm1b``, ``tiny_shakespeare``, ``c4``; set ``--config.data.data_dir``).
Architectural switches are one override each: ``--config.model.attention=linear``,
``--config.model.activation=relu``, ``--config.model.norm=rms``, ``--config.model.gate=gelu``.
"""

from configs.base import set_adam, set_budget

ARCHS = ("gpt", "gated_conv")
DATA = ("stdlib", "zipf", "uniform", "lm1b", "tiny_shakespeare", "c4")
# Peak learning rates for SGD with heavy-ball momentum 0.9 (configs/modalities.py `sgd`).
SGD_LEARNING_RATE = {"gpt": 0.5, "gated_conv": 0.5}

# TFDS text sets: the split to evaluate on (lm1b has no validation split).
_TFDS_EVAL_SPLIT = {"lm1b": "test", "tiny_shakespeare": "validation", "c4": "validation"}


def _data(c, data: str, seq_len: int, smoke: bool) -> int:
  """Fills ``c.data`` for ``data``; returns the vocabulary size the model must have."""
  if data == "stdlib":
    c.data.name = "stdlib_bytes"  # Python's standard-library source, as bytes
    c.data.seq_len = seq_len  # bytes per training sequence
    c.data.validation_every = 10  # files whose path CRC32 is divisible by this are validation
    c.data.eval_examples = 16 if smoke else 64  # validation windows
    return 256
  if data in ("zipf", "uniform"):
    c.data.name = "token_streams"  # Markov chain with an exact uniform / Zipf unigram law
    c.data.seq_len = seq_len  # tokens per training sequence
    c.data.vocab_size = 256 if smoke else 1024  # token ids (= frequency ranks)
    c.data.zipf_exponent = 1.0 if data == "zipf" else 0.0  # p(rank r) ∝ (r+1)^-s; 0 = uniform
    c.data.num_maps = 2  # interval couplings averaged into the transitions (more = harder)
    c.data.restart_prob = 0.1  # chance that the next token is drawn afresh from the law
    c.data.structure_seed = 0  # draws the chain and the evaluation set (not the run seed)
    c.data.eval_examples = 16 if smoke else 64  # evaluation sequences
    return c.data.vocab_size
  c.data.name = "tfds_text"  # a TFDS text set through tfds.data_source, as UTF-8 bytes
  c.data.dataset = data  # TFDS name
  c.data.data_dir = ""  # TFDS data_dir: a folder or gs:// bucket ("" = TFDS default)
  c.data.seq_len = seq_len  # bytes per training sequence (documents end with byte 0)
  c.data.train_split = "train"  # TFDS split the training stream packs
  c.data.eval_split = _TFDS_EVAL_SPLIT[data]  # TFDS split the evaluation windows come from
  c.data.text_feature = ""  # feature holding the text ("" = "text" or the only Text feature)
  c.data.docs_per_chunk = 512  # documents packed into one chunk of the stream
  c.data.max_chunk_bytes = 1 << 20  # a chunk stops taking documents at this many bytes
  c.data.examples_per_chunk = 128  # consecutive training windows drawn from one chunk
  c.data.eval_examples = 16 if smoke else 64  # evaluation windows
  return 256


def apply(c, arch: str, smoke: bool, data: str = "stdlib") -> None:
  """Fills ``c`` (a fresh ``base_config()``) for ``arch`` on ``data`` (one of ``DATA``)."""
  if arch not in ARCHS:
    raise ValueError(f"unknown language architecture {arch!r}: valid are {', '.join(ARCHS)}")
  if data not in DATA:
    raise ValueError(f"unknown language data {data!r}: valid are {', '.join(DATA)}")
  seq_len = 32 if smoke else 256
  vocab_size = _data(c, data, seq_len, smoke)

  c.model.name = arch  # models/gpt.py | models/gated_conv.py
  c.model.vocab_size = vocab_size  # must match the data's tokens
  c.model.width = 32 if smoke else 256  # residual stream width D
  c.model.depth = 2 if smoke else 4  # residual blocks
  if arch == "gpt":
    c.model.max_len = seq_len  # longest sequence the position table covers
    c.model.num_heads = 2 if smoke else 4  # attention heads (head size D / heads)
    c.model.mlp_ratio = 4  # MLP hidden width / D
    c.model.activation = "gelu"  # gelu | relu
    c.model.attention = "softmax"  # softmax | linear
    c.model.attn_chunks = 2 if smoke else 4  # causal query chunks (masked blocks skipped)
  else:
    c.model.kernel_size = 4  # causal convolution taps
    c.model.dilation_base = 2  # layer i dilates by base^i (receptive field 1 + 3 (2^depth - 1))
    c.model.expansion = 2  # gated width F / D
    c.model.gate = "sigmoid"  # sigmoid (GLU) | gelu | relu | silu
  c.model.norm = "layer"  # layer | rms | none
  c.model.tie_embeddings = False  # share the input embedding with the output head
  c.model.use_bias = False  # biases in the dense / convolution layers

  c.loss = "cross_entropy"  # next-token cross-entropy, in nats
  set_adam(
      c,
      learning_rate=3e-3,  # Adam's peak learning rate
      b2=0.95,  # Adam's second-moment decay (LM practice)
      grad_clip_norm=1.0,  # both methods clip the global gradient norm at 1
      warmup_steps=2 if smoke else 100,  # linear warmup length
      end_factor=0.1)  # final learning rate / peak
  set_budget(
      c,
      steps=20 if smoke else 2000,  # optimizer updates
      batch=16 if smoke else 32,  # sequences per update
      eval_batch=16 if smoke else 32,  # sequences per evaluation batch
      log_every=1 if smoke else 20,  # steps between metric lines
      eval_every=10 if smoke else 500,  # steps between evaluations (and at the end)
      checkpoint_every=10 if smoke else 500)  # steps between checkpoints
