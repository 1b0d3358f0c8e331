"""Per-example host augmentation (numpy / PIL), seeded by the per-record generator.

MGP (Table 9): RandomResizedCrop + horizontal flip. BFT: the same + RandAugment, and the box and
noise seed of random erasing. The output stays uint8: normalisation and erasing (on the
normalised image, timm 'pixel' mode) run on the device (`device_augment.py`), as do Mixup /
CutMix (`mixup.py`) and, with `randaug_on_device`, RandAugment from the draws made here.
Interpolation is bicubic throughout, as in MAE's pre-training and fine-tuning transforms.
"""
import dataclasses
import math
from typing import Optional, Union

import numpy as np
from PIL import Image

from livt_jax.data import decode
from livt_jax.data import randaugment

_RESAMPLE = Image.Resampling.BICUBIC
# Native images at most this large (CIFAR, Fashion-MNIST) are resized directly at eval time;
# larger ones get the usual resize-shorter-side + center crop.
SMALL_IMAGE_MAX = 64
EVAL_CROP_PCT = 0.875


@dataclasses.dataclass(frozen=True)
class TrainAugment:
  """Settings of the training transform of one stage."""
  image_size: int
  mean: tuple[float, ...]
  std: tuple[float, ...]
  crop_scale_min: float = 0.08
  crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
  hflip_prob: float = 0.5
  randaug_num_ops: int = 0  # 0 disables RandAugment (MGP).
  randaug_magnitude: float = 9.0
  randaug_magnitude_std: float = 0.5
  randaug_on_device: bool = False  # the host only draws the ops (`randaug_params`)
  random_erase_prob: float = 0.0


def _check_shape(image: np.ndarray):
  if image.ndim != 3 or image.shape[-1] not in (1, 3):
    raise ValueError(f'expected an image of shape [H, W, 1|3], got {image.shape}')


def to_pil(image: np.ndarray) -> Image.Image:
  """uint8 [H, W, 1|3] -> PIL 'L' / 'RGB'."""
  _check_shape(image)
  return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def from_pil(img: Image.Image) -> np.ndarray:
  array = np.asarray(img)
  return array[..., None] if array.ndim == 2 else array


def random_resized_crop_box(width: int, height: int, rng: np.random.Generator,
                            scale: tuple[float, float],
                            ratio: tuple[float, float]) -> tuple[int, int, int, int]:
  """torchvision's RandomResizedCrop box (left, top, right, bottom): 10 tries, then centre.

  Scale (1, 1) draws nothing and takes the fallback at once: the whole image when its aspect is
  within `ratio` (torchvision's tries, whose area is the whole image's, succeed only near aspect
  1, and then crop about a pixel row or column at most from a non-square image).
  """
  area = width * height
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(10 if scale[0] < 1.0 else 0):
    target_area = area * rng.uniform(scale[0], scale[1])
    aspect = math.exp(rng.uniform(*log_ratio))
    w = int(round(math.sqrt(target_area * aspect)))
    h = int(round(math.sqrt(target_area / aspect)))
    if 0 < w <= width and 0 < h <= height:
      top = int(rng.integers(0, height - h + 1))
      left = int(rng.integers(0, width - w + 1))
      return left, top, left + w, top + h
  # Fallback: the largest centred crop within the ratio range.
  in_ratio = width / height
  if in_ratio < ratio[0]:
    w, h = width, int(round(width / ratio[0]))
  elif in_ratio > ratio[1]:
    w, h = int(round(height * ratio[1])), height
  else:
    w, h = width, height
  left, top = (width - w) // 2, (height - h) // 2
  return left, top, left + w, top + h


def erase_box(image_size: int, rng: np.random.Generator, prob: float,
              min_area: float = 0.02, max_area: float = 1 / 3,
              min_aspect: float = 0.3) -> tuple[np.ndarray, np.uint32]:
  """timm RandomErasing's box (one box): ((top, left, height, width), noise seed).

  Drawn here from the record's generator; the noise is drawn and applied on the device
  (`device_augment.random_erase`). Height 0: no erasing.
  """
  box = np.zeros(4, np.int32)
  if prob <= 0 or rng.random() >= prob:
    return box, np.uint32(0)
  area = image_size * image_size
  log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))
  for _ in range(10):
    target_area = rng.uniform(min_area, max_area) * area
    aspect = math.exp(rng.uniform(*log_aspect))
    h = int(round(math.sqrt(target_area * aspect)))
    w = int(round(math.sqrt(target_area / aspect)))
    if w < image_size and h < image_size:
      top = int(rng.integers(0, image_size - h + 1))
      left = int(rng.integers(0, image_size - w + 1))
      box[:] = (top, left, h, w)
      break
  return box, np.uint32(rng.integers(0, 2**32))


def randaug_params(rng: np.random.Generator, cfg: TrainAugment) -> np.ndarray:
  """float32 [num_ops, 3]: the RandAugment draws `device_randaugment` applies.

  Called after `train_transform` with the same generator, it takes the values that
  `train_transform` would have taken for RandAugment on the host (same ops, levels, signs).
  """
  return randaugment.draw_params(rng, num_ops=cfg.randaug_num_ops,
                                 magnitude=cfg.randaug_magnitude,
                                 magnitude_std=cfg.randaug_magnitude_std)


def train_transform(image: Union[np.ndarray, decode.EncodedImage], rng: np.random.Generator,
                    cfg: TrainAugment) -> np.ndarray:
  """uint8 [H, W, C] -> uint8 [S, S, C]: crop, flip, RandAugment (normalised on device).

  With `cfg.randaug_on_device`, RandAugment is left out here (see `randaug_params`).

  `image` may also be an `EncodedImage` (a file not yet decoded): the crop box is drawn from
  its header's size, as for the decoded image, and a JPEG is decoded at the smallest scale
  that keeps the box at least S pixels wide and high (`EncodedImage.decode_for_crop`).
  """
  encoded = isinstance(image, decode.EncodedImage)
  if not encoded:
    _check_shape(image)
  width, height = image.size if encoded else (image.shape[1], image.shape[0])
  box = random_resized_crop_box(width, height, rng, (cfg.crop_scale_min, 1.0), cfg.crop_ratio)
  host_randaug = cfg.randaug_num_ops > 0 and not cfg.randaug_on_device
  if (not encoded and not host_randaug and box == (0, 0, width, height)
      and width == height == cfg.image_size):
    # Nothing to resample (e.g. crop scale 1.0 at the native size): skip PIL, same pixels.
    flip = rng.random() < cfg.hflip_prob
    return np.array(image[:, ::-1] if flip else image)
  if encoded:
    img, box = image.decode_for_crop(box, cfg.image_size)
  else:
    img = to_pil(image)
  # Crop and resize in one resampling pass.
  img = img.resize((cfg.image_size, cfg.image_size), _RESAMPLE, box=box)
  if rng.random() < cfg.hflip_prob:
    img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
  if host_randaug:
    img = randaugment.rand_augment(
        img, rng, num_ops=cfg.randaug_num_ops, magnitude=cfg.randaug_magnitude,
        magnitude_std=cfg.randaug_magnitude_std,
        fill=randaugment.fill_color(cfg.mean, img.mode))
  return from_pil(img)


def eval_transform(image: np.ndarray, image_size: int,
                   native_size: Optional[int] = None) -> np.ndarray:
  """Deterministic eval preprocessing: uint8 [H, W, C] -> uint8 [S, S, C] (normalised on
  device).

  Small native images (<= SMALL_IMAGE_MAX px, e.g. 28 or 32) are resized straight to
  `image_size` (nothing to crop away); larger ones have their shorter side resized to
  image_size / 0.875 (image_size itself above 224 px, as LiVT) and are center-cropped.

  Args:
    image: uint8 [H, W, C].
    image_size: output side S.
    native_size: the dataset's native side if fixed (decides small vs large); defaults to
      this image's larger side.
  """
  height, width = image.shape[:2]
  native = native_size or max(height, width)
  if native <= SMALL_IMAGE_MAX:
    if (height, width) != (image_size, image_size):
      image = from_pil(to_pil(image).resize((image_size, image_size), _RESAMPLE))
    return image
  img = to_pil(image)
  # LiVT's eval transform: crop fraction 0.875 up to 224 px, 1.0 above (no margin cut away).
  short = int(image_size / (EVAL_CROP_PCT if image_size <= 224 else 1.0))
  if width <= height:
    size = (short, max(short, int(round(height * short / width))))
  else:
    size = (max(short, int(round(width * short / height))), short)
  img = img.resize(size, _RESAMPLE)
  left, top = (size[0] - image_size) // 2, (size[1] - image_size) // 2
  img = img.crop((left, top, left + image_size, top + image_size))
  return from_pil(img)
