"""A small GPT learning Python's standard library byte by byte, with AdamW.

    python train.py --config=configs/quickstart.py --workdir=runs/quickstart
    python train.py --config=configs/quickstart.py:smoke --workdir=/tmp/qs  # seconds, for tests
"""

from configs.base import base_config, parse_variants, set_budget, set_optimizer


def get_config(arg: str = ""):
  smoke = "smoke" in parse_variants(arg, ("smoke",))  # a tiny variant that runs in seconds
  c = base_config()
  c.model.name = "gpt"  # models/gpt.py: decoder-only Transformer
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

  set_optimizer(
      c, "adamw",  # Adam with decoupled weight decay
      learning_rate=3e-3,  # peak learning rate
      b1=0.9,  # first-moment decay
      b2=0.95,  # second-moment decay (LM practice)
      eps=1e-8,  # denominator floor
      weight_decay=0.1,  # decoupled, on the embedding, hidden and head matrices
      grad_clip_norm=1.0,  # clip the global gradient norm at 1
      schedule="warmup_cosine",  # linear warmup, cosine decay
      warmup_steps=2 if smoke else 30,  # warmup length
      end_factor=0.1)  # final learning rate / peak
  set_budget(
      c,
      steps=20 if smoke else 300,  # optimizer updates
      batch=16,  # sequences per update
      eval_batch=16,  # sequences per evaluation batch
      log_every=1 if smoke else 10,  # steps between metric lines
      eval_every=10 if smoke else 100,  # steps between evaluations (and at the end)
      checkpoint_every=5 if smoke else 100)  # steps between checkpoints (and at the end)

  if smoke:  # a model and windows small enough for seconds on a CPU
    c.model.max_len = 32  # = data.seq_len
    c.model.width = 32  # residual stream width D
    c.model.depth = 2  # transformer blocks
    c.model.num_heads = 2  # attention heads
    c.model.attn_chunks = 2  # causal query chunks
    c.data.seq_len = 32  # bytes per training sequence
    c.data.eval_examples = 16  # validation windows
  return c.lock()
