"""A small GPT learning Python's standard library byte by byte, with AdamW.

    python train.py --config=configs/quickstart.py --workdir=runs/quickstart
    python train.py --config=configs/quickstart.py:smoke --workdir=/tmp/qs  # seconds, for tests
"""

from configs.base import base_config, parse_variants


def get_config(arg: str = ""):
  variants = parse_variants(arg, ("smoke",))
  c = base_config()
  c.model.name = "gpt"
  c.model.vocab_size = 256  # bytes
  c.model.max_len = 256  # longest sequence the position table covers
  c.model.width = 256  # residual stream width D
  c.model.depth = 4  # transformer blocks
  c.model.num_heads = 4  # attention heads (head size D / heads)
  c.model.mlp_ratio = 4  # MLP hidden width / D
  c.model.activation = "gelu"  # gelu | relu
  c.model.attention = "softmax"  # softmax | linear
  c.model.norm = "layer"  # layer | rms | none
  c.model.tie_embeddings = False  # share the input embedding with the output head
  c.model.use_bias = False  # biases in the dense layers
  c.model.attn_chunks = 4  # causal query chunks (fully masked blocks are skipped)

  c.data.name = "stdlib_bytes"  # Python's standard-library source, as bytes
  c.data.seq_len = 256  # bytes per training sequence
  c.data.validation_every = 10  # files whose path CRC32 is divisible by this are validation
  c.data.eval_examples = 64  # validation windows

  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 3e-3
  c.optimizer.kwargs.b1 = 0.9
  c.optimizer.kwargs.b2 = 0.95
  c.optimizer.kwargs.eps = 1e-8
  c.optimizer.weight_decay = 0.1
  c.optimizer.grad_clip_norm = 1.0
  c.optimizer.schedule.name = "warmup_cosine"
  c.optimizer.schedule.warmup_steps = 30
  c.optimizer.schedule.end_factor = 0.1

  c.train.steps = 300
  c.train.global_batch = 16
  c.train.eval_batch = 16
  c.train.log_every = 10
  c.train.eval_every = 100
  c.train.checkpoint_every = 100

  if "smoke" in variants:  # a tiny variant that runs in seconds
    c.model.max_len = 32
    c.model.width = 32
    c.model.depth = 2
    c.model.num_heads = 2
    c.model.attn_chunks = 2
    c.data.seq_len = 32
    c.data.eval_examples = 16
    c.optimizer.schedule.warmup_steps = 2
    c.train.steps = 20
    c.train.global_batch = 16
    c.train.eval_batch = 16
    c.train.log_every = 1
    c.train.eval_every = 10
    c.train.checkpoint_every = 5
  return c.lock()
