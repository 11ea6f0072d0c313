"""TFDS image classification with the usual augmentations: MNIST, Fashion-MNIST, CIFAR, ImageNet.

Images are read with ``tfds.data_source`` (array_record random access; no TensorFlow) through
grain's ``MapDataset``; cropping and resizing are done in NumPy and Pillow. Training example
``i`` of the stream is example ``i mod n`` of epoch ``i // n``'s shuffle (grain reshuffles
each epoch), augmented with ``np.random.default_rng((seed, i))``: the batch at any position,
crops and flips included, is a function of ``(seed, position)``, so a resumed run is exact.

Augmentations (``augment``):

* ``none``: the evaluation transform (below) for training too.
* ``crop_flip``: the CIFAR recipe: zero-pad ``crop_padding`` pixels per side, take a random
  crop of the original size, flip horizontally with probability 1/2.
* ``inception``: the ImageNet recipe: a random crop covering ``[min_crop_scale, 1]`` of the
  area with aspect ratio in ``[3/4, 4/3]``, resized to ``image_size``, and a random flip.

Evaluation takes the centred square of side ``center_crop_fraction`` x the shorter side and
resizes it to ``image_size`` (0.875 is the usual ImageNet "resize to 256, crop 224"; 1.0 with
square images is a plain resize); ``image_size=0`` keeps images at their native, fixed size.
Pixels are scaled to [0, 1] and normalised per channel by ``mean`` and ``std``.
"""

import math

import numpy as np

from data.source import check_choice, check_int, check_number
from data.tfds_source import TfdsSource
from plain_numbers import is_number

AUGMENTS = ("none", "crop_flip", "inception")

CHANNEL_STATS = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet2012": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
"""Per-channel pixel mean and standard deviation (in [0, 1]) of each training set."""


def _resize(image_HxWxC: np.ndarray, box: tuple[float, float, float, float], size: int):
  """The region ``box`` = (left, top, right, bottom) of the image, resized to size x size."""
  from PIL import Image
  h, w = image_HxWxC.shape[:2]
  if box == (0, 0, w, h) and h == w == size:
    return image_HxWxC
  gray = image_HxWxC.shape[-1] == 1
  pil = Image.fromarray(image_HxWxC[..., 0] if gray else image_HxWxC)
  out = np.asarray(pil.resize((size, size), Image.BILINEAR, box=box))
  return out[..., None] if gray else out


def _check_channel_stats(key: str, value, *, positive: bool) -> None:
  """``value`` is None (the data set's known statistics), a number, or a list of numbers."""
  values = value if isinstance(value, (list, tuple)) else (value,)
  if value is None or (values and all(is_number(v) and math.isfinite(v) and (v > 0 or not positive)
                                      for v in values)):
    return
  if positive:
    need, example = "positive", "(0.247, 0.243, 0.261)"
  else:
    need, example = "finite", "(0.49, 0.48, 0.45)"
  raise ValueError(f"data.{key}={value!r} must be None, a number or one {need} number per "
                   f"channel: set data.{key} to e.g. {example} (None = the data set's own)")


class TfdsVision(TfdsSource):
  """Image classification from TFDS with per-example augmentation (see the module docstring)."""

  def __init__(self, *, dataset: str, data_dir: str, seed: int, image_size: int = 0,
               augment: str = "none", crop_padding: int = 4, min_crop_scale: float = 0.08,
               center_crop_fraction: float = 1.0, mean=None, std=None,
               train_split: str = "train", eval_split: str = "test",
               eval_examples: int = 10000):
    check_choice("augment", augment, AUGMENTS)
    check_number("min_crop_scale", min_crop_scale, low=0.0, high=1.0, low_open=True,
                 hint=" (smallest crop area / image area)")
    check_number("center_crop_fraction", center_crop_fraction, low=0.0, high=1.0,
                 low_open=True, hint=" (centred crop side / shorter side)")
    check_int("image_size", image_size, low=0, hint=" (0 = native size)")
    check_int("crop_padding", crop_padding, low=0)
    if augment == "inception" and image_size == 0:
      raise ValueError("data.augment='inception' resizes its random crops: set data.image_size")
    _check_channel_stats("mean", mean, positive=False)
    _check_channel_stats("std", std, positive=True)
    if (mean is None or std is None) and dataset not in CHANNEL_STATS:
      raise ValueError(f"data.mean={mean!r} and data.std={std!r}: set data.mean and data.std "
                       f"for TFDS {dataset!r} (known: {', '.join(sorted(CHANNEL_STATS))})")
    super().__init__(dataset=dataset, data_dir=data_dir, seed=seed, train_split=train_split,
                     eval_split=eval_split, eval_examples=eval_examples)
    features = self._train_source.dataset_info.features
    native = tuple(features["image"].shape)
    channels = native[-1]
    if image_size == 0 and None in native[:2]:
      raise ValueError(f"data.image_size=0 keeps the native size, but TFDS {dataset!r} images "
                       f"have variable size {native}: set data.image_size to the side the model "
                       f"should see (e.g. 224)")
    mean = CHANNEL_STATS[dataset][0] if mean is None else mean
    std = CHANNEL_STATS[dataset][1] if std is None else std
    self.mean = np.asarray(mean, np.float32).reshape(-1)
    self.std = np.asarray(std, np.float32).reshape(-1)
    if len(self.mean) not in (1, channels) or len(self.std) not in (1, channels):
      raise ValueError(f"data.mean={mean!r} and data.std={std!r} need 1 or {channels} values: "
                       f"{dataset!r} images have shape {native}: set data.mean and data.std "
                       f"to one value or one per channel")
    self.seed, self.image_size, self.augment = seed, image_size, augment
    self.crop_padding, self.min_crop_scale = crop_padding, min_crop_scale
    self.center_crop_fraction = center_crop_fraction
    side = image_size or native[0]
    self.info.update({"num_classes": int(features["label"].num_classes),
                      "input_shape": [side, image_size or native[1], channels],
                      "augment": augment})

  def _center(self, image_HxWxC: np.ndarray) -> np.ndarray:
    """The evaluation view: the centred square crop resized to ``image_size`` (0: as is)."""
    if not self.image_size:
      return image_HxWxC
    h, w = image_HxWxC.shape[:2]
    side = min(h, w) * self.center_crop_fraction
    top, left = (h - side) / 2, (w - side) / 2
    return _resize(image_HxWxC, (left, top, left + side, top + side), self.image_size)

  def _random_resized_crop(self, image_HxWxC: np.ndarray, rng: np.random.Generator):
    """Inception-style crop (Szegedy et al., 2015), as torchvision's RandomResizedCrop."""
    h, w = image_HxWxC.shape[:2]
    for _ in range(10):
      area = h * w * rng.uniform(self.min_crop_scale, 1.0)
      aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
      cw, ch = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
      if 0 < cw <= w and 0 < ch <= h:
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        return _resize(image_HxWxC, (left, top, left + cw, top + ch), self.image_size)
    return _resize(image_HxWxC, (0, 0, w, h), self.image_size)

  def _normalise(self, image_HxWxC: np.ndarray) -> np.ndarray:
    scaled = image_HxWxC.astype(np.float32) / 255.0
    return (scaled - self.mean[None, None]) / self.std[None, None]

  def _train_example(self, index: int, example) -> dict[str, np.ndarray]:
    image = np.asarray(example["image"])
    rng = np.random.default_rng((self.seed, index))
    if self.augment == "inception":
      image = self._random_resized_crop(image, rng)
    else:
      image = self._center(image)
    if self.augment == "crop_flip":
      p = self.crop_padding
      h, w = image.shape[:2]
      padded = np.pad(image, ((p, p), (p, p), (0, 0)))
      top, left = int(rng.integers(0, 2 * p + 1)), int(rng.integers(0, 2 * p + 1))
      image = padded[top:top + h, left:left + w]
    if self.augment != "none" and rng.random() < 0.5:
      image = image[:, ::-1]
    return {"inputs": self._normalise(image), "targets": np.asarray(example["label"], np.int32)}

  def _prepare(self, example) -> dict[str, np.ndarray]:
    return {"inputs": self._normalise(self._center(np.asarray(example["image"]))),
            "targets": np.asarray(example["label"], np.int32)}
