"""RandAugment with timm's `rand-m9-mstd0.5-inc1` semantics, on PIL images, numpy-seeded.

Re-implemented (not imported) because timm needs torch; the behaviour follows timm's
`auto_augment.py` as used by MAE / LiVT fine-tuning:
  * the 15 "increasing" ops (a larger magnitude is always a stronger distortion);
  * `num_ops` ops drawn uniformly with replacement, each applied with probability 0.5;
  * per applied op, magnitude ~ N(m, mstd) clipped to [0, 10];
  * signed ops (rotate, shear, translate, enhance) flip sign with probability 0.5;
  * geometric ops fill with the dataset mean colour and resample bicubically (timm uses
    the training interpolation, bicubic for MAE fine-tuning).
Single-channel ('L') images: every op is defined; ColorIncreasing is the identity, as
there is no saturation to change.
"""
from typing import Callable, Sequence, Union

import numpy as np
from PIL import Image
from PIL import ImageEnhance
from PIL import ImageOps

_MAX_LEVEL = 10.0
_RESAMPLE = Image.Resampling.BICUBIC
Fill = Union[int, tuple[int, ...]]


def _signed(value: float, rng: np.random.Generator) -> float:
  return -value if rng.random() < 0.5 else value


def _affine(img: Image.Image, matrix: tuple, fill: Fill) -> Image.Image:
  return img.transform(img.size, Image.Transform.AFFINE, matrix, resample=_RESAMPLE,
                       fillcolor=fill)


def _rotate(img, level, rng, fill):
  return img.rotate(_signed(level / _MAX_LEVEL * 30.0, rng), resample=_RESAMPLE,
                    fillcolor=fill)


def _shear_x(img, level, rng, fill):
  return _affine(img, (1, _signed(level / _MAX_LEVEL * 0.3, rng), 0, 0, 1, 0), fill)


def _shear_y(img, level, rng, fill):
  return _affine(img, (1, 0, 0, _signed(level / _MAX_LEVEL * 0.3, rng), 1, 0), fill)


def _translate_x(img, level, rng, fill):
  pixels = _signed(level / _MAX_LEVEL * 0.45, rng) * img.size[0]
  return _affine(img, (1, 0, pixels, 0, 1, 0), fill)


def _translate_y(img, level, rng, fill):
  pixels = _signed(level / _MAX_LEVEL * 0.45, rng) * img.size[1]
  return _affine(img, (1, 0, 0, 0, 1, pixels), fill)


def _enhance(enhancer: Callable) -> Callable:
  def op(img, level, rng, fill):
    del fill
    factor = 1.0 + _signed(level / _MAX_LEVEL * 0.9, rng)  # In [0.1, 1.9].
    return enhancer(img).enhance(factor)
  return op


def _posterize(img, level, rng, fill):
  del rng, fill
  bits = 4 - int(level / _MAX_LEVEL * 4)  # Increasing: fewer bits as the level grows.
  if bits >= 8:
    return img
  # Our own LUT: Pillow >= 11 rejects bits=0, which timm reaches at level 10 (all black).
  mask = ~(2 ** (8 - bits) - 1) & 0xFF
  return img.point([i & mask for i in range(256)] * len(img.getbands()))


def _solarize(img, level, rng, fill):
  del rng, fill
  return ImageOps.solarize(img, 256 - int(level / _MAX_LEVEL * 256))


def _solarize_add(img, level, rng, fill, threshold=128):
  del rng, fill
  add = int(level / _MAX_LEVEL * 110)
  lut = [min(255, i + add) if i < threshold else i for i in range(256)]
  return img.point(lut * len(img.getbands()))


def _no_level(fn: Callable) -> Callable:
  def op(img, level, rng, fill):
    del level, rng, fill
    return fn(img)
  return op


OPS = {
    'AutoContrast': _no_level(ImageOps.autocontrast),
    'Equalize': _no_level(ImageOps.equalize),
    'Invert': _no_level(ImageOps.invert),
    'Rotate': _rotate,
    'PosterizeIncreasing': _posterize,
    'SolarizeIncreasing': _solarize,
    'SolarizeAdd': _solarize_add,
    'ColorIncreasing': _enhance(ImageEnhance.Color),
    'ContrastIncreasing': _enhance(ImageEnhance.Contrast),
    'BrightnessIncreasing': _enhance(ImageEnhance.Brightness),
    'SharpnessIncreasing': _enhance(ImageEnhance.Sharpness),
    'ShearX': _shear_x,
    'ShearY': _shear_y,
    'TranslateXRel': _translate_x,
    'TranslateYRel': _translate_y,
}
OP_NAMES = tuple(OPS)


def fill_color(mean: Sequence[float], mode: str) -> Fill:
  """timm's `img_mean` fill: the dataset mean as 0..255 ints, one per band of `mode`."""
  values = tuple(min(255, round(255 * m)) for m in mean)
  if mode == 'L':
    return values[0]
  return values if len(values) == 3 else values * 3


def rand_augment(img: Image.Image, rng: np.random.Generator, *, num_ops: int = 2,
                 magnitude: float = 9.0, magnitude_std: float = 0.5, prob: float = 0.5,
                 fill: Fill = 128) -> Image.Image:
  """Applies RandAugment to a PIL image ('L' or 'RGB').

  Args:
    img: input image.
    rng: the per-record generator (all randomness comes from it).
    num_ops: ops drawn per image (with replacement).
    magnitude: mean level in [0, 10].
    magnitude_std: std of the per-op level (0 = fixed; inf = uniform in [0, magnitude]).
    prob: probability that each drawn op is applied.
    fill: colour of pixels uncovered by geometric ops.

  Returns:
    The augmented image, same size and mode.
  """
  for name in rng.choice(OP_NAMES, size=num_ops, replace=True):
    if rng.random() > prob:
      continue
    level = magnitude
    if magnitude_std == float('inf'):
      level = rng.uniform(0.0, magnitude)
    elif magnitude_std > 0:
      level = rng.normal(magnitude, magnitude_std)
    level = float(np.clip(level, 0.0, _MAX_LEVEL))
    img = OPS[str(name)](img, level, rng, fill)
  return img
