"""Static facts about the datasets LiVT trains on, usable without any data on disk.

The dry run and the engine read sizes, shapes and normalization statistics from here, so
nothing in this module may touch the file system.
"""
import dataclasses
from typing import Optional

from livt_jax.data import longtail

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the rest of the code needs to know about a dataset.

  Attributes:
    name: registry name ('cifar10_lt', ...).
    num_classes: number of classes; None for 'image_folder' until the folder is read.
    train_size: LT training set size as published (for gamma 100 where gamma applies;
      use `lt_train_size` for other imbalance factors). None if unknown up front.
    test_size: size of the split we report on.
    image_shape: native (H, W, C); None where images vary in size.
    mean: per-channel mean in [0, 1], for normalization.
    std: per-channel std in [0, 1], for normalization.
    has_val: whether a separate validation split exists.
    tfds_name: the TFDS dataset the records come from (None for local folders).
    lt_n_max: for datasets we subsample ourselves, the images of the largest class; the
      LT subset is then a function of the imbalance factor.
    val_size: size of the validation split, if any.
  """
  name: str
  num_classes: Optional[int]
  train_size: Optional[int]
  test_size: Optional[int]
  image_shape: Optional[tuple[int, int, int]]
  mean: tuple[float, ...]
  std: tuple[float, ...]
  has_val: bool
  tfds_name: Optional[str]
  lt_n_max: Optional[int] = None
  val_size: Optional[int] = None

  @property
  def num_channels(self) -> int:
    return len(self.mean)


_INFOS = {
    info.name: info for info in [
        DatasetInfo(
            name='fashion_mnist_lt', num_classes=10, train_size=14_886, test_size=10_000,
            image_shape=(28, 28, 1), mean=(0.2860,), std=(0.3530,), has_val=False,
            tfds_name='fashion_mnist', lt_n_max=6000),
        DatasetInfo(
            name='cifar10_lt', num_classes=10, train_size=12_406, test_size=10_000,
            image_shape=(32, 32, 3), mean=(0.4914, 0.4822, 0.4465),
            std=(0.2470, 0.2435, 0.2616), has_val=False, tfds_name='cifar10', lt_n_max=5000),
        DatasetInfo(
            name='cifar100_lt', num_classes=100, train_size=10_847, test_size=10_000,
            image_shape=(32, 32, 3), mean=(0.5071, 0.4865, 0.4409),
            std=(0.2673, 0.2564, 0.2762), has_val=False, tfds_name='cifar100', lt_n_max=500),
        # ImageNet-LT (Liu et al., OLTR): test = the 50k ImageNet validation images, val = 20
        # training images per class.
        DatasetInfo(
            name='imagenet_lt', num_classes=1000, train_size=115_846, test_size=50_000,
            image_shape=None, mean=IMAGENET_MEAN, std=IMAGENET_STD, has_val=True,
            tfds_name='imagenet_lt', val_size=20_000),
        # iNaturalist 2018: the whole training set is the LT benchmark; we test on validation.
        DatasetInfo(
            name='inat18', num_classes=8142, train_size=437_513, test_size=24_426,
            image_shape=None, mean=IMAGENET_MEAN, std=IMAGENET_STD, has_val=False,
            tfds_name='i_naturalist2018'),
        # Places-LT: test = the 36.5k Places365 validation images, val = 20 training images per
        # class; records come from places365_small (256 x 256).
        DatasetInfo(
            name='places_lt', num_classes=365, train_size=62_500, test_size=36_500,
            image_shape=(256, 256, 3), mean=IMAGENET_MEAN, std=IMAGENET_STD, has_val=True,
            tfds_name='places365_small', val_size=7_300),
        DatasetInfo(
            name='image_folder', num_classes=None, train_size=None, test_size=None,
            image_shape=None, mean=IMAGENET_MEAN, std=IMAGENET_STD, has_val=False,
            tfds_name=None),
    ]
}

KNOWN_NAMES = tuple(_INFOS)


def get_info(name: str) -> DatasetInfo:
  """Returns the static info of a registered dataset.

  Raises:
    ValueError: for an unknown name (one line: the config field, the value, the known names).
  """
  if name not in _INFOS:
    raise ValueError(
        f'dataset.name={name!r} is not a known dataset; known names: {", ".join(KNOWN_NAMES)}')
  return _INFOS[name]


def lt_train_size(info: DatasetInfo, imbalance: float, val_per_class: int = 0) -> Optional[int]:
  """Training set size for an imbalance factor, without reading any data.

  Datasets we subsample ourselves (CIFAR-LT, Fashion-MNIST-LT) depend on the imbalance
  factor and on the validation images held out of each class (`longtail.lt_split`: a class
  keeps at most n_max - val_per_class); the fixed benchmarks (ImageNet-LT, iNat18, Places-LT)
  ignore both.
  """
  if info.lt_n_max is None:
    return info.train_size
  return sum(min(n, info.lt_n_max - val_per_class)
             for n in longtail.lt_class_sizes(info.lt_n_max, info.num_classes, imbalance))


def has_val_split(info: DatasetInfo, val_per_class: int) -> bool:
  """Whether `split='val'` exists: a published one, or one held out by `dataset.val_per_class`
  from the datasets we subsample ourselves."""
  return info.has_val or bool(info.lt_n_max and val_per_class > 0)
