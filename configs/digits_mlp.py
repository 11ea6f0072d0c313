"""An MLP classifying scikit-learn's bundled 8x8 digits, with SGD + Nesterov momentum.

    python train.py --config=configs/digits_mlp.py --workdir=runs/digits
    python train.py --config=configs/digits_mlp.py:smoke --workdir=/tmp/digits
    # the same model on TFDS MNIST (needs `tfds build mnist --file_format=array_record`):
    python train.py --config=configs/digits_mlp.py:mnist --workdir=runs/mnist \
        --config.data.data_dir=~/tensorflow_datasets
"""

import ml_collections

from configs.base import base_config, parse_variants, set_budget, set_optimizer


def get_config(arg: str = ""):
  variants = parse_variants(arg, ("mnist", "smoke"))
  smoke = "smoke" in variants  # a variant that runs in seconds, for tests
  c = base_config()
  c.model.name = "mlp"  # models/mlp.py
  c.model.num_classes = 10  # digits 0-9
  c.model.hidden = (128, 128)  # hidden layer widths
  c.model.activation = "relu"  # relu | gelu | tanh

  c.data.name = "digits"  # scikit-learn's bundled 8x8 digits
  c.data.test_fraction = 0.2  # held out (a fixed permutation) as the test set

  set_optimizer(
      c, "sgd",  # SGD with Nesterov momentum
      learning_rate=0.1,  # peak learning rate
      momentum=0.9,  # heavy-ball momentum
      nesterov=True,  # Nesterov's look-ahead form
      weight_decay=1e-4,  # L2 on hidden and head kernels (not biases)
      grad_clip_norm=0.0,  # no clipping
      schedule="warmup_cosine",  # linear warmup, cosine decay
      warmup_steps=2 if smoke else 20,  # warmup length
      end_factor=0.0)  # decay to zero
  set_budget(
      c,
      steps=20 if smoke else 500,  # optimizer updates
      batch=32 if smoke else 64,  # images per update
      eval_batch=64 if smoke else 128,  # images per evaluation batch
      log_every=1 if smoke else 10,  # steps between metric lines
      eval_every=10 if smoke else 100,  # steps between evaluations (and at the end)
      checkpoint_every=5 if smoke else 100)  # steps between checkpoints (and at the end)

  if "mnist" in variants:  # the TFDS path: tfds.data_source + grain
    c.data = ml_collections.ConfigDict()
    c.data.name = "tfds_images"  # TFDS image classification, no augmentation
    c.data.dataset = "mnist"  # TFDS name
    c.data.data_dir = ""  # TFDS data_dir: a folder or gs:// bucket ("" = TFDS default)
    c.data.eval_examples = 1024  # test examples evaluated
  return c.lock()
