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
`draw_params` takes the same draws without applying them, for `device_randaugment`.
"""
from typing import Callable, Optional, Sequence, Union

import numpy as np
from PIL import Image
from PIL import ImageEnhance
from PIL import ImageOps

_MAX_LEVEL = 10.0
_RESAMPLE = Image.Resampling.BICUBIC
Fill = Union[int, tuple[int, ...]]


def _affine(img: Image.Image, matrix: tuple, fill: Fill) -> Image.Image:
  return img.transform(img.size, Image.Transform.AFFINE, matrix, resample=_RESAMPLE,
                       fillcolor=fill)


# Ops as fn(img, level, sign, fill); sign is +1 or -1 (always +1 for the unsigned ops).
def _rotate(img, level, sign, fill):
  return img.rotate(sign * (level / _MAX_LEVEL * 30.0), resample=_RESAMPLE, fillcolor=fill)


def _shear_x(img, level, sign, fill):
  return _affine(img, (1, sign * (level / _MAX_LEVEL * 0.3), 0, 0, 1, 0), fill)


def _shear_y(img, level, sign, fill):
  return _affine(img, (1, 0, 0, sign * (level / _MAX_LEVEL * 0.3), 1, 0), fill)


def _translate_x(img, level, sign, fill):
  pixels = sign * (level / _MAX_LEVEL * 0.45) * img.size[0]
  return _affine(img, (1, 0, pixels, 0, 1, 0), fill)


def _translate_y(img, level, sign, fill):
  pixels = sign * (level / _MAX_LEVEL * 0.45) * img.size[1]
  return _affine(img, (1, 0, 0, 0, 1, pixels), fill)


def _enhance(enhancer: Callable) -> Callable:
  def op(img, level, sign, fill):
    del fill
    factor = 1.0 + sign * (level / _MAX_LEVEL * 0.9)  # In [0.1, 1.9].
    return enhancer(img).enhance(factor)
  return op


def _posterize(img, level, sign, fill):
  del sign, fill
  bits = 4 - int(level / _MAX_LEVEL * 4)  # Increasing: fewer bits as the level grows.
  if bits >= 8:
    return img
  # Our own LUT: Pillow >= 11 rejects bits=0, which timm reaches at level 10 (all black).
  mask = ~(2 ** (8 - bits) - 1) & 0xFF
  return img.point([i & mask for i in range(256)] * len(img.getbands()))


def _solarize(img, level, sign, fill):
  del sign, fill
  return ImageOps.solarize(img, 256 - int(level / _MAX_LEVEL * 256))


def _solarize_add(img, level, sign, fill, threshold=128):
  del sign, fill
  add = int(level / _MAX_LEVEL * 110)
  lut = [min(255, i + add) if i < threshold else i for i in range(256)]
  return img.point(lut * len(img.getbands()))


def _no_level(fn: Callable) -> Callable:
  def op(img, level, sign, fill):
    del level, sign, fill
    return fn(img)
  return op


_OPS_WITH_SIGN = {
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
OP_NAMES = tuple(_OPS_WITH_SIGN)
# Ops whose sign flips with probability 0.5 (one draw from the generator, after the level).
SIGNED = frozenset({'Rotate', 'ShearX', 'ShearY', 'TranslateXRel', 'TranslateYRel',
                    'ColorIncreasing', 'ContrastIncreasing', 'BrightnessIncreasing',
                    'SharpnessIncreasing'})


def _draw_sign(name: str, rng: np.random.Generator) -> float:
  return -1.0 if name in SIGNED and rng.random() < 0.5 else 1.0


def _with_drawn_sign(name: str) -> Callable:
  def op(img, level, rng, fill):
    return _OPS_WITH_SIGN[name](img, level, _draw_sign(name, rng), fill)
  return op


# name -> fn(img, level, rng, fill): the sign of a signed op drawn from rng.
OPS = {name: _with_drawn_sign(name) for name in OP_NAMES}


def apply_op(img: Image.Image, name: str, level: float, sign: float, fill: Fill) -> Image.Image:
  """Op `name` at `level` with an explicit sign (+1 / -1; ignored by the unsigned ops)."""
  return _OPS_WITH_SIGN[name](img, level, sign, fill)


def fill_color(mean: Sequence[float], mode: str) -> Fill:
  """timm's `img_mean` fill: the dataset mean as 0..255 ints, one per band of `mode`."""
  values = tuple(min(255, round(255 * m)) for m in mean)
  if mode == 'L':
    return values[0]
  return values if len(values) == 3 else values * 3


def _draws(rng: np.random.Generator, num_ops: int, magnitude: float, magnitude_std: float,
           prob: float) -> list[Optional[tuple[str, float, float]]]:
  """Per drawn op: (name, level, sign), or None where it is not applied (timm's draw order)."""
  draws = []
  for name in rng.choice(OP_NAMES, size=num_ops, replace=True):
    name = str(name)
    if rng.random() > prob:
      draws.append(None)
      continue
    level = magnitude
    if magnitude_std == float('inf'):
      level = rng.uniform(0.0, magnitude)
    elif magnitude_std > 0:
      level = rng.normal(magnitude, magnitude_std)
    level = float(np.clip(level, 0.0, _MAX_LEVEL))
    draws.append((name, level, _draw_sign(name, rng)))
  return draws


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
  for draw in _draws(rng, num_ops, magnitude, magnitude_std, prob):
    if draw is not None:
      img = apply_op(img, *draw, fill)
  return img


def draw_params(rng: np.random.Generator, *, num_ops: int = 2, magnitude: float = 9.0,
                magnitude_std: float = 0.5, prob: float = 0.5) -> np.ndarray:
  """The draws of `rand_augment` without applying them, for `device_randaugment`.

  Takes the same values from `rng` as `rand_augment` with these arguments, so a generator
  leaves both in the same state.

  Returns:
    float32 [num_ops, 3]: (index in OP_NAMES, or -1 where the op is not applied; level in
    [0, 10]; sign +1 / -1, +1 for unsigned ops).
  """
  params = np.tile(np.array([-1, 0, 1], np.float32), (num_ops, 1))
  for i, draw in enumerate(_draws(rng, num_ops, magnitude, magnitude_std, prob)):
    if draw is not None:
      name, level, sign = draw
      params[i] = (OP_NAMES.index(name), level, sign)
  return params
