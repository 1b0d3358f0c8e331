"""RandAugment on the device: the ops of `randaugment.py` applied to a batch, from host draws.

The host draws each record's ops, levels and signs from the record's generator
(`randaugment.draw_params`); here every op is computed for the whole batch and each image keeps
the result of the op it drew (jnp.where), so the function jits and shards over the batch. The
arithmetic follows PIL on uint8: per-(image, channel) 256-entry LUTs for the point ops, float32
blends truncated as in `Image.blend`, the SMOOTH filter for Sharpness (border kept), and PIL's
affine bicubic (Geometry.c: cubic a = -1, edge pixels repeated, truncated) with the fill colour
where the sample point falls outside the image. Where PIL computes in float64 (AutoContrast's
LUT, sample coordinates, the level arithmetic), float32 or exact integers stand in, so an
occasional value is off by one.

Layout: the ops work on planar int32 images [B, C, H, W], whose minor dimensions are the image's
rows and columns. A TPU stores arrays in (8, 128) tiles of the two minor dimensions, so
channels-last intermediates ([B, H, W, C], and the bicubic warp's [B, H, W, 4, C] taps) were
padded ~40-100x: with libtpu 0.0.42.1, 64 images of 224 px per v5e chip needed 13.8 GiB of
temporaries for two ops channels-last, 0.70 GiB planar (`tests/test_augment_memory.py` bounds it).
"""
import math

import jax
import jax.numpy as jnp

from livt_jax.data import randaugment

_OP = {name: i for i, name in enumerate(randaugment.OP_NAMES)}
_GEOMETRIC = ('Rotate', 'ShearX', 'ShearY', 'TranslateXRel', 'TranslateYRel')
_SMOOTH = (1.0, 1.0, 1.0, 1.0, 5.0, 1.0, 1.0, 1.0, 1.0)  # ImageFilter.SMOOTH, divisor 13


def _scaled(level, top, per=10.0):
  """level * top / per with whole-number top and per (top / per of the level scale 0..10):
  multiplied first, so a whole-number product is exact and the result rounded once."""
  return level * top / per


def _blend(degenerate, image, alpha):
  """`Image.blend(degenerate, image, alpha)` on uint8 values: float32, truncated and clipped."""
  out = degenerate.astype(jnp.float32) + alpha * (image - degenerate).astype(jnp.float32)
  return jnp.clip(jnp.trunc(out), 0, 255).astype(jnp.int32)


def _luma(x):
  """int32 planar [B, C, H, W] -> [B, 1, H, W]: PIL's 'RGB' -> 'L' (fixed point, rounded)."""
  if x.shape[1] == 1:
    return x
  return (x[:, :1] * 19595 + x[:, 1:2] * 38470 + x[:, 2:] * 7471 + 0x8000) >> 16


def _autocontrast_lut(x, v):
  lo, hi = x.min((2, 3))[..., None], x.max((2, 3))[..., None]  # [B, C, 1]
  # PIL: int(v * 255 / (hi - lo) - lo * 255 / (hi - lo)) in float64; exact integers here.
  stretched = jnp.clip((v - lo) * 255 // jnp.maximum(hi - lo, 1), 0, 255)
  return jnp.where(hi > lo, stretched, v)


def _equalize_lut(x, v):
  b, c, h, w = x.shape
  hist = jax.vmap(lambda p: jnp.bincount(p, length=256))(x.reshape(b * c, h * w))
  hist = hist.reshape(b, c, 256)
  top = jnp.take_along_axis(hist, x.max((2, 3))[..., None], -1)  # pixels at the top value
  step = (h * w - top) // 255
  below = jnp.cumsum(hist, -1) - hist
  lut = jnp.minimum((step // 2 + below) // jnp.maximum(step, 1), 255)
  flat = ((hist > 0).sum(-1, keepdims=True) <= 1) | (step == 0)
  return jnp.where(flat, v, lut)


def _point_lut(x, op, level, alpha):
  """The per-(image, channel) LUT [B, C, 256] of the point ops; identity for the others."""
  v = jnp.arange(256, dtype=jnp.int32)
  level = level[:, None, None]
  shift = 8 - (4 - jnp.floor(_scaled(level, 4)).astype(jnp.int32))  # keeps 8 - shift bits
  threshold = 256 - jnp.floor(_scaled(level, 256)).astype(jnp.int32)
  add = jnp.floor(_scaled(level, 110)).astype(jnp.int32)
  luma = _luma(x)
  count = luma.shape[2] * luma.shape[3]
  mean = (2 * luma.sum((1, 2, 3)) + count) // (2 * count)  # int(mean + 0.5)
  alpha = alpha[:, None, None]
  candidates = {
      'AutoContrast': lambda: _autocontrast_lut(x, v),
      'Equalize': lambda: _equalize_lut(x, v),
      'Invert': lambda: 255 - v,
      'PosterizeIncreasing': lambda: (v >> shift) << shift,
      'SolarizeIncreasing': lambda: jnp.where(v < threshold, v, 255 - v),
      'SolarizeAdd': lambda: jnp.where(v < 128, jnp.minimum(v + add, 255), v),
      'ContrastIncreasing': lambda: _blend(mean[:, None, None], v, alpha),
      'BrightnessIncreasing': lambda: _blend(jnp.zeros_like(v), v, alpha),
  }
  lut = jnp.broadcast_to(v, (x.shape[0], x.shape[1], 256))
  for name, make in candidates.items():
    lut = jnp.where((op == _OP[name])[:, None, None], make(), lut)
  return lut


def _apply_lut(x, lut):
  """Planar [B, C, H, W] through its image's and channel's row of `lut` [B, C, 256]."""
  b, c, h, w = x.shape
  return jnp.take_along_axis(lut, x.reshape(b, c, h * w), axis=2).reshape(x.shape)


def _smooth(x):
  """ImageFilter.SMOOTH as PIL's 3x3 filter on uint8: float32, + 0.5, truncated; border kept."""
  k = [w / 13.0 for w in _SMOOTH]
  f = x.astype(jnp.float32)
  h, w = x.shape[2:]

  def row(r, kernel):  # one kernel row over the interior columns, PIL's summation order
    return (f[:, :, r:r + h - 2, 0:w - 2] * kernel[0] + f[:, :, r:r + h - 2, 1:w - 1] * kernel[1]
            + f[:, :, r:r + h - 2, 2:w] * kernel[2])

  total = 0.5 + row(2, k[0:3]) + row(1, k[3:6]) + row(0, k[6:9])
  inner = jnp.clip(jnp.trunc(total), 0, 255).astype(jnp.int32)
  return x.at[:, :, 1:-1, 1:-1].set(inner)


def _affine_matrix(op, level, sign, height, width):
  """[B, 6] (a, b, c, d, e, f): output pixel centre (x, y) samples (ax + by + c, dx + ey + f)."""
  zero, one = jnp.zeros_like(level), jnp.ones_like(level)
  # Rotate: Image.rotate's matrix about the centre; a positive angle turns counter-clockwise.
  t = -sign * _scaled(level, 30.0) * (math.pi / 180.0)
  cx, cy = width / 2.0, height / 2.0
  cos, sin = jnp.cos(t), jnp.sin(t)
  shear = sign * _scaled(level, 3.0, 100.0)  # 0.3 at level 10
  move_x, move_y = (sign * _scaled(level, 45.0 * n, 1000.0) for n in (width, height))
  matrices = {
      'Rotate': (cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy),
      'ShearX': (one, shear, zero, zero, one, zero),
      'ShearY': (one, zero, zero, shear, one, zero),
      'TranslateXRel': (one, zero, move_x, zero, one, zero),  # 0.45 of the side at level 10
      'TranslateYRel': (one, zero, zero, zero, one, move_y),
  }
  matrix = jnp.stack((one, zero, zero, zero, one, zero), -1)
  for name, m in matrices.items():
    matrix = jnp.where((op == _OP[name])[:, None], jnp.stack(m, -1), matrix)
  return matrix


def _cubic(v1, v2, v3, v4, d):
  """PIL Geometry.c's BICUBIC: cubic convolution with a = -1 at fraction d past v2."""
  p2 = v3 - v1
  p3 = 2 * (v1 - v2) + v3 - v4
  p4 = -v1 + v2 - v3 + v4
  return v2 + d * (p2 + d * (p3 + d * p4))


def _affine(x, matrix, fill):
  """Bicubic affine resampling of int32 planar [B, C, H, W]; `fill` ([C]) outside the input.

  Each of the 16 taps is one gather along the flattened H * W axis of each (image, channel)
  plane, with one index per output pixel shared by the channels: indices [B, 1, H * W]. (A
  gather of [H, W, 4] index tiles from channels-last images cost ~190 MB per 224-px image on a
  TPU, whose tiles pad a minor dimension of 3 or 4 to 128.)
  """
  b, c, h, w = x.shape
  yc = jnp.arange(h, dtype=jnp.float32)[:, None] + 0.5
  xc = jnp.arange(w, dtype=jnp.float32)[None, :] + 0.5
  a, b_, c_, d, e, f = (matrix[:, i, None, None] for i in range(6))
  # The sample point minus the output pixel's centre, kept apart from the pixel index so that
  # float32 rounds the (small) shift only: its fraction is what the bicubic weights see.
  du, dv = (a - 1) * xc + b_ * yc + c_, d * xc + (e - 1) * yc + f  # [B, H, W]
  inside = (xc + du >= 0) & (xc + du < w) & (yc + dv >= 0) & (yc + dv < h)
  fu, fv = jnp.floor(du), jnp.floor(dv)
  dx, dy = (frac.reshape(b, 1, h * w) for frac in (du - fu, dv - fv))
  x0 = jnp.arange(w)[None, :] + fu.astype(jnp.int32)  # floor(sample x - 0.5)
  y0 = jnp.arange(h)[:, None] + fv.astype(jnp.int32)
  planes = x.astype(jnp.float32).reshape(b, c, h * w)

  def across(i):  # source row y0 + i - 1 interpolated along x; edge pixels repeated
    row = jnp.clip(y0 + (i - 1), 0, h - 1) * w
    taps = (jnp.take_along_axis(planes, (row + jnp.clip(x0 + j, 0, w - 1)).reshape(b, 1, h * w),
                                axis=2) for j in range(-1, 3))
    return _cubic(*taps, dx)

  # One source row at a time (a loop, not 16 gathers XLA would schedule side by side): the
  # temporaries hold 4 gathered taps and the 4 interpolated rows, not 16 taps.
  rows = jax.lax.map(across, jnp.arange(4))
  value = _cubic(*rows, dy).reshape(b, c, h, w)
  value = jnp.clip(jnp.trunc(value), 0, 255).astype(jnp.int32)
  return jnp.where(inside[:, None], value, fill[:, None, None])


def _one_op(x, op, level, sign, fill):
  # The enhance ops' factor 1 + sign * 0.09 * level, in [0.1, 1.9], rounded once as PIL's
  # float64 factor is when Image.blend takes it as a float32.
  alpha = (100.0 + sign * (9.0 * level)) / 100.0
  out = _apply_lut(x, _point_lut(x, op, level, alpha))
  pick = lambda name: (op == _OP[name])[:, None, None, None]
  out = jnp.where(pick('ColorIncreasing'), _blend(_luma(x), x, alpha[:, None, None, None]), out)
  out = jnp.where(pick('SharpnessIncreasing'),
                  _blend(_smooth(x), x, alpha[:, None, None, None]), out)
  geometric = jnp.isin(op, jnp.array([_OP[n] for n in _GEOMETRIC]))[:, None, None, None]
  matrix = _affine_matrix(op, level, sign, x.shape[2], x.shape[3])
  return jnp.where(geometric, _affine(x, matrix, fill), out)


def rand_augment(images: jax.Array, params: jax.Array, fill) -> jax.Array:
  """Applies each image's drawn RandAugment ops, in order.

  Args:
    images: [B, H, W, C] (C = 1 or 3), uint8 or float holding 0..255 values.
    params: float32 [B, num_ops, 3] from `randaugment.draw_params`: (op index or -1 for no
      op, level in [0, 10], sign +1 / -1).
    fill: the fill colour of the geometric ops, one 0..255 value or one per channel
      (`randaugment.fill_color`).

  Returns:
    The augmented images, dtype of `images`, values 0..255 (whole numbers).
  """
  x = jnp.clip(jnp.round(images.astype(jnp.float32)), 0, 255).astype(jnp.int32)
  fill = jnp.broadcast_to(jnp.asarray(fill, jnp.int32), (x.shape[-1],))
  x = x.transpose(0, 3, 1, 2)  # planar: see the module docstring
  for k in range(params.shape[1]):
    op = params[:, k, 0].astype(jnp.int32)
    x = _one_op(x, op, params[:, k, 1], params[:, k, 2], fill)
  return x.transpose(0, 2, 3, 1).astype(images.dtype)
