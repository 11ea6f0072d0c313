"""Vision settings for ``configs/modalities.py:vision,<arch>[,smoke][,sgd]``, on embedded data.

    python train.py --config=configs/modalities.py:vision,cnn --workdir=runs/vision_cnn
    python train.py --config=configs/modalities.py:vision,vit,smoke --workdir=/tmp/vit

The MLP reads MNIST-1D as flat 40-sample signals (generated locally: the benchmark where MLPs,
CNNs and transformers part ways on a CPU); the CNN, the ResNet and the ViT read scikit-learn's
8x8 digits as (8, 8, 1) images. Architectural switches are single fields
(``--config.model.activation=gelu``, ``--config.model.norm=none``,
``--config.model.pooling=mean``). ``use_tfds(c, "cifar10")`` swaps in a TFDS data set
(mnist, fashion_mnist, cifar10, cifar100, imagenet2012) with its usual augmentation.
"""

import ml_collections

from data.tfds_vision import CHANNEL_STATS

ARCHS = ("mlp", "cnn", "resnet", "vit")

SGD_LEARNING_RATE = {"mlp": 0.05, "cnn": 0.05, "resnet": 0.1, "vit": 0.02}
"""Peak learning rate of SGD with momentum 0.9, per architecture (the ``sgd`` variant)."""

_TFDS = {  # dataset: (classes, training augmentation, eval split, centre-crop fraction)
    "mnist": (10, "none", "test", 1.0),
    "fashion_mnist": (10, "none", "test", 1.0),
    "cifar10": (10, "crop_flip", "test", 1.0),
    "cifar100": (100, "crop_flip", "test", 1.0),
    "imagenet2012": (1000, "inception", "validation", 0.875),
}


def _digit_images(c) -> None:
  c.data.name = "digit_images"  # scikit-learn's bundled digits as (8, 8, 1) images
  c.data.test_fraction = 0.2  # held out (a fixed permutation) as the test set: 359 images
  c.model.num_classes = 10  # digits 0-9


def apply(c, arch: str, smoke: bool) -> None:
  """Fills the fresh ``configs.base.base_config()`` ``c`` for ``arch`` (one of ``ARCHS``)."""
  if arch not in ARCHS:
    raise ValueError(f"unknown vision architecture {arch!r}: valid are {', '.join(ARCHS)}")
  c.loss = "cross_entropy"  # integer class targets
  c.model.name = arch  # a model from models.available()
  if arch == "mlp":
    c.model.num_classes = 10  # MNIST-1D digits 0-9
    c.model.hidden = (64,) if smoke else (256, 256)  # hidden layer widths
    c.model.activation = "relu"  # relu | gelu | tanh
    c.data.name = "mnist1d"  # MNIST-1D, generated locally by the mnist1d package
    c.data.num_samples = 1000 if smoke else 5000  # signals generated (5000 = the published set)
    c.data.train_split = 0.8  # fraction of them used for training, the rest for test
    c.data.generator_seed = 42  # the generator's seed: 42 is the published data set
    c.data.channel_axis = False  # inputs (40,) for the MLP; (40, 1) for conv models
  elif arch == "cnn":
    _digit_images(c)
    c.model.features = (8, 16) if smoke else (32, 64)  # channels of the conv stages
    c.model.kernel_size = 3  # conv window along each spatial axis
    c.model.dense = (32,) if smoke else (128,)  # dense layer widths before the head
    c.model.activation = "relu"  # relu | gelu | silu
    c.model.norm = "batch"  # batch | layer | none after each conv
    c.model.pool = "max"  # max | avg 2x downsampling after each stage
    c.model.bn_momentum = 0.9  # BatchNorm running-average decay
  elif arch == "resnet":
    _digit_images(c)
    c.model.stage_sizes = (1, 1, 1) if smoke else (3, 3, 3)  # blocks per stage (3,3,3: ResNet-20)
    c.model.block = "basic"  # basic | bottleneck
    c.model.width = 16  # filters of the first stage, doubled per stage
    c.model.stem = "cifar"  # cifar (3x3 conv) | imagenet (7x7/2 conv + max pool)
    c.model.activation = "relu"  # relu | gelu | silu
    c.model.norm = "batch"  # batch | layer | none
    c.model.bn_momentum = 0.9  # BatchNorm running-average decay
    c.model.zero_init_residual = True  # each block's last norm scale starts at 0
  else:  # vit
    _digit_images(c)
    c.model.patch_size = 2  # 2x2 patches: 16 tokens from an 8x8 digit
    c.model.width = 32 if smoke else 64  # token width D
    c.model.depth = 2 if smoke else 4  # transformer blocks
    c.model.num_heads = 2 if smoke else 4  # attention heads (head size D / heads)
    c.model.mlp_ratio = 2 if smoke else 4  # MLP hidden width / D
    c.model.activation = "gelu"  # gelu | relu | silu
    c.model.norm = "layer"  # layer | rms | none (pre-norm blocks)
    c.model.pooling = "cls"  # cls (class token) | mean (average of the tokens)

  c.optimizer.learning_rate = {"mlp": 3e-3, "cnn": 3e-3, "resnet": 3e-3, "vit": 2e-3}[arch]  # Adam
  c.optimizer.kwargs.b1 = 0.9  # Adam's first-moment decay
  c.optimizer.kwargs.b2 = 0.999  # Adam's second-moment decay
  c.optimizer.kwargs.eps = 1e-8  # Adam's denominator offset
  c.optimizer.schedule.name = "warmup_cosine"  # linear warmup, cosine decay to end_factor
  c.optimizer.schedule.end_factor = 0.0  # decay to zero

  if smoke:  # seconds on a CPU
    c.optimizer.schedule.warmup_steps = 2  # short warmup
    c.train.steps = 60  # updates
    c.train.global_batch = 32  # examples per update
    c.train.eval_batch = 64  # examples per evaluation batch
    c.train.log_every = 1  # log every step, so the test sees the loss fall
    c.train.eval_every = 60  # evaluate at the end only
    c.train.checkpoint_every = 60  # checkpoint at the end only
  else:
    steps = {"mlp": 2000, "cnn": 300, "resnet": 500, "vit": 1000}[arch]
    c.optimizer.schedule.warmup_steps = steps // 20  # 5% warmup
    c.train.steps = steps  # updates
    c.train.global_batch = 128 if arch == "mlp" else 64  # examples per update
    c.train.eval_batch = 200 if arch == "mlp" else 120  # divides the test sets (1000, 359 + pad)
    c.train.log_every = 10  # log every this many steps
    c.train.eval_every = steps // 5  # five evaluations per run
    c.train.checkpoint_every = steps // 2  # a mid-run checkpoint and the final one


def use_tfds(c, dataset: str, *, image_size: int = 0, data_dir: str = "") -> None:
  """Replaces ``c.data`` with TFDS ``dataset`` and its usual augmentation; sets the classes.

  ``image_size=0`` keeps the native size (28 or 32); ImageNet defaults to 224.
  """
  if dataset not in _TFDS:
    raise ValueError(f"unknown vision TFDS dataset {dataset!r}: valid are {', '.join(_TFDS)}")
  num_classes, augment, eval_split, crop_fraction = _TFDS[dataset]
  mean, std = CHANNEL_STATS[dataset]
  c.data = ml_collections.ConfigDict()
  c.data.name = "tfds_vision"  # TFDS through tfds.data_source + grain, with augmentation
  c.data.dataset = dataset  # TFDS name
  c.data.data_dir = data_dir  # TFDS data_dir: a folder or gs:// bucket ("" = TFDS default)
  c.data.train_split = "train"  # TFDS split streamed for training
  c.data.eval_split = eval_split  # TFDS split evaluated
  c.data.eval_examples = 10000  # first examples of eval_split evaluated (held in memory)
  c.data.image_size = image_size or (224 if dataset == "imagenet2012" else 0)  # 0 = native
  c.data.augment = augment  # none | crop_flip (CIFAR) | inception (ImageNet)
  c.data.crop_padding = 4  # crop_flip: zero padding per side before the random crop
  c.data.min_crop_scale = 0.08  # inception: smallest crop area / image area
  c.data.center_crop_fraction = crop_fraction  # eval: centred crop side / shorter side
  c.data.mean = mean  # per-channel pixel mean in [0, 1], subtracted
  c.data.std = std  # per-channel pixel standard deviation, divided by
  c.model.num_classes = num_classes  # the data set's classes
