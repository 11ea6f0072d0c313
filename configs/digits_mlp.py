"""An MLP classifying scikit-learn's bundled 8x8 digits, with SGD + Nesterov momentum.

    python train.py --config=configs/digits_mlp.py --workdir=runs/digits
    python train.py --config=configs/digits_mlp.py:smoke --workdir=/tmp/digits
    # the same model on TFDS MNIST (needs `tfds build mnist --file_format=array_record`):
    python train.py --config=configs/digits_mlp.py:mnist --workdir=runs/mnist \
        --config.data.data_dir=~/tensorflow_datasets
"""

import ml_collections

from configs.base import base_config, parse_variants


def get_config(arg: str = ""):
  variants = parse_variants(arg, ("mnist", "smoke"))
  c = base_config()
  c.model.name = "mlp"
  c.model.num_classes = 10
  c.model.hidden = (128, 128)  # hidden layer widths
  c.model.activation = "relu"  # relu | gelu | tanh

  c.data.name = "digits"  # scikit-learn's bundled 8x8 digits
  c.data.test_fraction = 0.2  # held out (a fixed permutation) as the test set

  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.1
  c.optimizer.kwargs.momentum = 0.9
  c.optimizer.kwargs.nesterov = True
  c.optimizer.weight_decay = 1e-4  # L2 on hidden and head kernels (not biases)
  c.optimizer.schedule.name = "warmup_cosine"
  c.optimizer.schedule.warmup_steps = 20
  c.optimizer.schedule.end_factor = 0.0

  c.train.steps = 500
  c.train.global_batch = 64
  c.train.eval_batch = 128
  c.train.log_every = 10
  c.train.eval_every = 100
  c.train.checkpoint_every = 100

  if "mnist" in variants:  # the TFDS path: tfds.data_source + grain
    c.data = ml_collections.ConfigDict()
    c.data.name = "tfds_images"
    c.data.dataset = "mnist"  # TFDS name
    c.data.data_dir = ""  # TFDS data_dir: a folder or gs:// bucket ("" = TFDS default)
    c.data.eval_examples = 1024  # test examples evaluated
  if "smoke" in variants:
    c.optimizer.schedule.warmup_steps = 2
    c.train.steps = 20
    c.train.global_batch = 32
    c.train.eval_batch = 64
    c.train.log_every = 1
    c.train.eval_every = 10
    c.train.checkpoint_every = 5
  return c.lock()
