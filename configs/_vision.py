"""Vision for the Adam-SGD gap study: an MLP, a CNN, a ResNet or a ViT, on images or signals.

    python train.py --config=configs/modalities.py:vision,cnn --workdir=runs/vision_cnn
    python train.py --config=configs/modalities.py:vision,vit,smoke --workdir=/tmp/vit
    python train.py --config=configs/modalities.py:vision,resnet,cifar10 --workdir=runs/c10 \
        --config.data.data_dir=~/tensorflow_datasets

By default (offline, seconds to a minute on a CPU) the MLP reads MNIST-1D as flat 40-sample
signals (generated locally: the benchmark where MLPs, CNNs and transformers part ways on a
CPU) and the CNN, the ResNet and the ViT read scikit-learn's digits as (8, 8, 1) images.
``apply(..., data=...)`` picks one of ``DATA`` instead: ``digits``, ``mnist1d`` (as (40, 1)
signals for the conv models and the ViT) or a TFDS set with its usual augmentation (``mnist``,
``fashion_mnist``, ``cifar10``, ``cifar100`` at their native size; ``imagenet2012`` at
``data.image_size``: 224, or 32 in the smoke variant). On ImageNet the ResNet becomes a
ResNet-50 (bottleneck blocks, 7x7 stem); elsewhere it is a ResNet-20. Architectural switches
are one field each (``--config.model.activation=gelu``, ``--config.model.norm=none``,
``--config.model.pooling=mean``, ``--config.model.block=bottleneck``).
"""

from configs.base import set_adam, set_budget
from data.tfds_vision import CHANNEL_STATS

ARCHS = ("mlp", "cnn", "resnet", "vit")
DATA = ("digits", "mnist1d", "mnist", "fashion_mnist", "cifar10", "cifar100", "imagenet2012")
# Peak learning rates for SGD with heavy-ball momentum 0.9 (configs/modalities.py `sgd`).
SGD_LEARNING_RATE = {"mlp": 0.05, "cnn": 0.05, "resnet": 0.1, "vit": 0.02}
# Peak learning rates for Adam.
_ADAM_LEARNING_RATE = {"mlp": 3e-3, "cnn": 3e-3, "resnet": 3e-3, "vit": 2e-3}

_TFDS = {  # dataset: (classes, training augmentation, eval split, centre-crop fraction)
    "mnist": (10, "none", "test", 1.0),
    "fashion_mnist": (10, "none", "test", 1.0),
    "cifar10": (10, "crop_flip", "test", 1.0),
    "cifar100": (100, "crop_flip", "test", 1.0),
    "imagenet2012": (1000, "inception", "validation", 0.875),
}
_TFDS_SCHEDULE = {  # dataset: (global batch, steps): MNIST 10, CIFAR 100, ImageNet 90 epochs
    "mnist": (128, 4690), "fashion_mnist": (128, 4690), "cifar10": (128, 39100),
    "cifar100": (128, 39100), "imagenet2012": (256, 450000),
}


def _tfds_data(c, dataset: str, smoke: bool) -> None:
  """TFDS ``dataset`` through tfds.data_source + grain, with its usual augmentation."""
  num_classes, augment, eval_split, crop_fraction = _TFDS[dataset]
  mean, std = CHANNEL_STATS[dataset]
  c.data.name = "tfds_vision"  # TFDS image classification with augmentation
  c.data.dataset = dataset  # TFDS name
  c.data.data_dir = ""  # TFDS data_dir: a folder or gs:// bucket ("" = TFDS default)
  c.data.train_split = "train"  # TFDS split streamed for training
  c.data.eval_split = eval_split  # TFDS split evaluated
  c.data.eval_examples = 5000 if dataset == "imagenet2012" else 10000  # held in memory
  if dataset == "imagenet2012":
    c.data.image_size = 32 if smoke else 224  # side of the crops the model sees
  else:
    c.data.image_size = 0  # side the images are resized to (0 = native: 28 or 32)
  c.data.augment = augment  # none | crop_flip (CIFAR) | inception (ImageNet)
  c.data.crop_padding = 4  # crop_flip: zero padding per side before the random crop
  c.data.min_crop_scale = 0.08  # inception: smallest crop area / image area
  c.data.center_crop_fraction = crop_fraction  # eval: centred crop side / shorter side
  c.data.mean = mean  # per-channel pixel mean in [0, 1], subtracted
  c.data.std = std  # per-channel pixel standard deviation, divided by
  c.model.num_classes = num_classes  # the data set's classes


def _data(c, data: str, arch: str, smoke: bool) -> None:
  if data == "digits":
    c.data.name = "digit_images"  # scikit-learn's bundled digits as (8, 8, 1) images
    c.data.test_fraction = 0.2  # held out (a fixed permutation) as the test set: 359 images
    c.model.num_classes = 10  # digits 0-9
  elif data == "mnist1d":
    c.data.name = "mnist1d"  # MNIST-1D, generated locally by the mnist1d package
    c.data.num_samples = 1000 if smoke else 5000  # signals generated (5000 = the published set)
    c.data.train_split = 0.8  # fraction of them used for training, the rest for test
    c.data.generator_seed = 42  # the generator's seed: 42 is the published data set
    c.data.channel_axis = arch != "mlp"  # inputs (40,) for the MLP, (40, 1) for the others
    c.model.num_classes = 10  # digits 0-9
  else:
    _tfds_data(c, data, smoke)


def apply(c, arch: str, smoke: bool, data: str = "") -> None:
  """Fills ``c`` (a fresh ``base_config()``) for ``arch`` on ``data`` (one of ``DATA``).

  ``data=""`` is the architecture's embedded default: MNIST-1D for the MLP, digits otherwise.
  """
  if arch not in ARCHS:
    raise ValueError(f"unknown vision architecture {arch!r}: valid are {', '.join(ARCHS)}")
  data = data or ("mnist1d" if arch == "mlp" else "digits")
  if data not in DATA:
    raise ValueError(f"unknown vision data {data!r}: valid are {', '.join(DATA)}")
  imagenet = data == "imagenet2012"
  c.loss = "cross_entropy"  # integer class targets
  c.model.name = arch  # a model from models.available()
  _data(c, data, arch, smoke)
  if arch == "mlp":
    c.model.hidden = (64,) if smoke else (256, 256)  # hidden layer widths
    c.model.activation = "relu"  # relu | gelu | tanh
  elif arch == "cnn":
    c.model.features = (8, 16) if smoke else (32, 64)  # channels of the conv stages
    c.model.kernel_size = 3  # conv window along each spatial axis
    c.model.dense = (32,) if smoke else (128,)  # dense layer widths before the head
    c.model.activation = "relu"  # relu | gelu | silu
    c.model.norm = "batch"  # batch | layer | none after each conv
    c.model.pool = "max"  # max | avg 2x downsampling after each stage
    c.model.bn_momentum = 0.9  # BatchNorm running-average decay
  elif arch == "resnet":
    if smoke:
      c.model.stage_sizes = (1, 1, 1)  # residual blocks per stage
    else:
      c.model.stage_sizes = (3, 4, 6, 3) if imagenet else (3, 3, 3)  # ResNet-50 | ResNet-20
    c.model.block = "bottleneck" if imagenet and not smoke else "basic"  # basic | bottleneck
    c.model.width = 64 if imagenet and not smoke else 16  # first stage's filters (x2 per stage)
    c.model.stem = "imagenet" if imagenet else "cifar"  # cifar: 3x3 | imagenet: 7x7/2 + pool
    c.model.activation = "relu"  # relu | gelu | silu
    c.model.norm = "batch"  # batch | layer | none
    c.model.bn_momentum = 0.9  # BatchNorm running-average decay
    c.model.zero_init_residual = True  # each block's last norm scale starts at 0
  else:  # vit
    # tokens: 16 per digit, 10 per MNIST-1D signal, 49 / 64 for MNIST / CIFAR, 196 for ImageNet
    patch = {"digits": 2, "mnist1d": 4, "imagenet2012": 4 if smoke else 16}.get(data, 4)
    c.model.patch_size = patch  # patch side along every spatial axis
    c.model.width = 32 if smoke else 64  # token width D
    c.model.depth = 2 if smoke else 4  # transformer blocks
    c.model.num_heads = 2 if smoke else 4  # attention heads (head size D / heads)
    c.model.mlp_ratio = 2 if smoke else 4  # MLP hidden width / D
    c.model.activation = "gelu"  # gelu | relu | silu
    c.model.norm = "layer"  # layer | rms | none (pre-norm blocks)
    c.model.pooling = "cls"  # cls (class token) | mean (average of the tokens)

  if smoke:  # seconds on a CPU
    batch, steps = 32, 60
  elif data in _TFDS_SCHEDULE:
    batch, steps = _TFDS_SCHEDULE[data]
  else:  # embedded data: a minute or less on a CPU
    batch = 128 if data == "mnist1d" else 64
    steps = {"mlp": 2000, "cnn": 300, "resnet": 500, "vit": 1000}[arch]
  set_adam(
      c,
      learning_rate=_ADAM_LEARNING_RATE[arch],  # Adam's peak learning rate
      grad_clip_norm=0.0,  # no clipping
      warmup_steps=2 if smoke else steps // 20,  # a short warmup; 5% of the run
      end_factor=0.0)  # decay to zero
  set_budget(
      c,
      steps=steps,  # updates
      batch=batch,  # examples per update
      eval_batch=64 if smoke else 120 if data == "digits" else 200,  # last batch padded
      log_every=1 if smoke else 10,  # smoke: every step, so the test sees the loss fall
      eval_every=steps if smoke else steps // 5,  # smoke: at the end only; else 5 per run
      checkpoint_every=steps if smoke else steps // 5)  # with each evaluation
