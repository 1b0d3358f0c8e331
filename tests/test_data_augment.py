"""Host augmentations: crops, RandAugment ops on RGB and grayscale, erasing, eval resize."""
import math

import numpy as np
import pytest
from PIL import Image

from livt_jax.data import augment
from livt_jax.data import randaugment

MEAN3, STD3 = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def rgb(h=40, w=30, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_random_resized_crop_box_within_bounds_and_scale():
  rng = np.random.default_rng(0)
  for _ in range(200):
    left, top, right, bottom = augment.random_resized_crop_box(
        30, 40, rng, (0.2, 1.0), (3 / 4, 4 / 3))
    assert 0 <= left < right <= 30 and 0 <= top < bottom <= 40
    assert (right - left) * (bottom - top) >= 0.2 * 1200 * 0.9
  # Impossible constraints fall back to the centred crop within the ratio range.
  assert augment.random_resized_crop_box(100, 10, rng, (0.99, 1.0), (1.0, 1.0)) == (
      45, 0, 55, 10)


@pytest.mark.parametrize('channels', [1, 3])
def test_train_transform_shapes_and_determinism(channels):
  image = rgb()[..., :channels]
  mean, std = MEAN3[:channels], STD3[:channels]
  cfg = augment.TrainAugment(image_size=16, mean=mean, std=std, crop_scale_min=0.08,
                             randaug_num_ops=2, random_erase_prob=0.25)
  a = augment.train_transform(image, np.random.default_rng(5), cfg)
  b = augment.train_transform(image, np.random.default_rng(5), cfg)
  assert a.shape == (16, 16, channels) and a.dtype == np.uint8  # normalised on device
  np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- RandAugment ops vs NumPy
LEVEL = 9.0  # timm's rand-m9


def textured(h=40, w=40):
  """A smooth ramp per channel plus a checkerboard / stripes: every op has something to change.

  The channels differ (so colour ops act) and cover only part of 0..255 (so AutoContrast and
  Equalize have something to stretch); both signs of a geometric op give different images.
  """
  y, x = np.mgrid[0:h, 0:w]
  r = 30 + 3.5 * x + 40 * ((x // 4 + y // 4) % 2)
  g = 40 + 3.0 * y + 25 * (x % 3 == 0)
  b = 60 + 150 * ((x + y) / (w + h - 2)) ** 2 + 20 * (y % 2)
  return np.stack([r, g, b], -1).round().astype(np.uint8)


def _luma(x):
  """ITU-R 601-2 luma, rounded as PIL's 'RGB' -> 'L' conversion."""
  if x.shape[-1] == 1:
    return x[..., 0].astype(np.float64)
  return np.round(x.astype(np.float64) @ np.array([0.299, 0.587, 0.114]))


def _cubic_weights(d, a=-1.0):
  """Cubic-convolution weights of the 4 neighbours at offsets -1, 0, 1, 2 for a fraction d.

  a = -1 is PIL's affine/rotate bicubic (Geometry.c); its resize uses a = -0.5.
  """
  t = np.abs(np.stack([1 + d, d, 1 - d, 2 - d]))
  return np.where(t <= 1, (a + 2) * t**3 - (a + 3) * t**2 + 1,
                  np.where(t < 2, a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a, 0.0))


def affine_reference(x, src_of, fill):
  """out[y, x] = bicubic sample of x at src_of(output pixel centre), `fill` where it is outside.

  x: uint8 [H, W, C]; src_of maps output pixel centres (xc, yc) to input coordinates, in the
  continuous frame where pixel (i, j) spans [j, j + 1] x [i, i + 1].
  """
  h, w = x.shape[:2]
  yc, xc = np.mgrid[0:h, 0:w] + 0.5
  sx, sy = src_of(xc, yc)
  inside = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
  fx, fy = sx - 0.5, sy - 0.5
  x0, y0 = np.floor(fx), np.floor(fy)
  wx, wy = _cubic_weights(fx - x0), _cubic_weights(fy - y0)
  out = np.zeros((h, w, x.shape[2]))
  for i in range(4):
    rows = np.clip(y0 - 1 + i, 0, h - 1).astype(int)
    for j in range(4):
      cols = np.clip(x0 - 1 + j, 0, w - 1).astype(int)
      out += (wy[i] * wx[j])[..., None] * x[rows, cols]
  out = np.clip(np.trunc(out), 0, 255)
  return np.where(inside[..., None], out, np.reshape(fill, (1, 1, -1)))


def _smooth3x3(x):
  """PIL's ImageFilter.SMOOTH ([[1,1,1],[1,5,1],[1,1,1]] / 13); the 1-pixel border is copied."""
  x = x.astype(np.float64)
  h, w = x.shape[:2]
  k = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]]) / 13
  out = x.copy()
  out[1:-1, 1:-1] = sum(k[i, j] * x[i:h - 2 + i, j:w - 2 + j] for i in range(3)
                        for j in range(3))
  return out


def _equalize(x):
  """Histogram equalisation per channel: value v -> 255 * (#pixels below v) / (N - #at the top),
  in PIL's integer form (step = (N - #top) // 255), capped at 255."""
  out = np.empty_like(x)
  for c in range(x.shape[-1]):
    v = x[..., c]
    hist = np.bincount(v.ravel(), minlength=256)
    step = (v.size - hist[v.max()]) // 255
    below = np.concatenate([[0], np.cumsum(hist)[:-1]])
    out[..., c] = np.minimum((step // 2 + below) // step, 255)[v]
  return out


def op_references(name, x, fill, level):
  """Expected outputs of op `name` at `level` (one per sign for signed ops), as float64.

  Written from timm's definitions of the rand-m*-inc1 ops, not from randaugment.py.
  """
  h, w, _ = x.shape
  frac = level / 10.0
  xf = x.astype(np.float64)
  if name in ('Rotate', 'ShearX', 'ShearY', 'TranslateXRel', 'TranslateYRel'):
    refs = []
    for sign in (1, -1):
      if name == 'Rotate':  # counter-clockwise (as displayed) about the centre, 30 deg at 10
        t = math.radians(sign * 30 * frac)
        src = lambda u, v, t=t: (w / 2 + math.cos(t) * (u - w / 2) - math.sin(t) * (v - h / 2),
                                 h / 2 + math.sin(t) * (u - w / 2) + math.cos(t) * (v - h / 2))
      elif name == 'ShearX':  # x' = x + s y, s = 0.3 at 10
        src = lambda u, v, s=sign * 0.3 * frac: (u + s * v, v)
      elif name == 'ShearY':
        src = lambda u, v, s=sign * 0.3 * frac: (u, v + s * u)
      elif name == 'TranslateXRel':  # content moves left by 45% of the width at 10 (sign +)
        src = lambda u, v, t=sign * 0.45 * frac * w: (u + t, v)
      else:
        src = lambda u, v, t=sign * 0.45 * frac * h: (u, v + t)
      refs.append(affine_reference(x, src, fill))
    return refs
  if name.endswith('Increasing') and name[:-len('Increasing')] in (
      'Color', 'Contrast', 'Brightness', 'Sharpness'):
    kind = name[:-len('Increasing')]
    if kind == 'Brightness':
      degenerate = np.zeros_like(xf)                    # blend with black
    elif kind == 'Contrast':
      degenerate = np.full_like(xf, int(_luma(x).mean() + 0.5))  # with the mean grey
    elif kind == 'Color':
      degenerate = np.broadcast_to(_luma(x)[..., None], xf.shape)  # with the greyscale image
    else:
      degenerate = _smooth3x3(x)                        # with the smoothed image
    return [np.clip(degenerate + f * (xf - degenerate), 0, 255)
            for f in (1 + 0.9 * frac, 1 - 0.9 * frac)]  # factor in [0.1, 1.9]
  if name == 'AutoContrast':  # each channel's min..max stretched to 0..255
    lo, hi = xf.min((0, 1)), xf.max((0, 1))
    return [(xf - lo) * 255 / (hi - lo)]
  if name == 'Equalize':
    return [_equalize(x).astype(np.float64)]
  if name == 'Invert':
    return [255 - xf]
  if name == 'PosterizeIncreasing':  # keeps 4 - int(4 * level / 10) high bits
    bits = 4 - int(frac * 4)
    return [(x & np.uint8((0xFF << (8 - bits)) & 0xFF)).astype(np.float64)]
  if name == 'SolarizeIncreasing':  # inverts pixels >= 256 - int(256 * level / 10)
    return [np.where(x >= 256 - int(frac * 256), 255 - xf, xf)]
  if name == 'SolarizeAdd':  # adds int(110 * level / 10) to pixels < 128, saturating
    return [np.where(x < 128, np.minimum(xf + int(frac * 110), 255), xf)]
  raise AssertionError(f'no reference for op {name}')


# Largest difference allowed from the reference: 0 for the LUT ops, rounding for blends and
# bicubic sampling (PIL truncates; the smoothing filter rounds).
TOLERANCE = {'Invert': 0, 'PosterizeIncreasing': 0, 'SolarizeIncreasing': 0, 'SolarizeAdd': 0,
             'Equalize': 0, 'SharpnessIncreasing': 1.5}


def _apply(name, x, mode, level, seed=0):
  img = augment.to_pil(x) if mode == 'L' else Image.fromarray(x)
  fill = randaugment.fill_color(MEAN3, mode)
  out = randaugment.OPS[name](img, level, np.random.default_rng(seed), fill)
  assert out.size == img.size and out.mode == mode
  return augment.from_pil(out).astype(np.float64), fill


def _image(mode):
  x = textured()
  return augment.from_pil(Image.fromarray(x).convert('L')) if mode == 'L' else x


def test_op_names_are_timms_increasing_set():
  assert set(randaugment.OP_NAMES) == {
      'AutoContrast', 'Equalize', 'Invert', 'Rotate', 'PosterizeIncreasing',
      'SolarizeIncreasing', 'SolarizeAdd', 'ColorIncreasing', 'ContrastIncreasing',
      'BrightnessIncreasing', 'SharpnessIncreasing', 'ShearX', 'ShearY', 'TranslateXRel',
      'TranslateYRel'}
  assert randaugment.fill_color(MEAN3, 'RGB') == tuple(int(round(255 * m)) for m in MEAN3)
  assert randaugment.fill_color(MEAN3, 'L') == 128
  assert randaugment.fill_color((0.2,), 'RGB') == (51, 51, 51)


@pytest.mark.parametrize('mode', ['L', 'RGB'])
@pytest.mark.parametrize('name', randaugment.OP_NAMES)
def test_each_randaugment_op_matches_its_definition(name, mode):
  x = _image(mode)
  if name == 'ColorIncreasing' and mode == 'L':  # no saturation to change
    for seed in range(4):
      np.testing.assert_array_equal(_apply(name, x, mode, LEVEL, seed)[0], x)
    return
  fill = randaugment.fill_color(MEAN3, mode)
  refs = op_references(name, x, fill, LEVEL)
  for ref in refs:  # the test image is one the op must change, whichever the sign
    assert np.mean(np.abs(ref - x)) > 3, name
  tol = TOLERANCE.get(name, 1)
  # Signed ops take their sign from the rng: over a few seeds, each sign's image appears,
  # and every output is one of them (at the magnitude's size, e.g. 27 degrees for m9).
  seen = set()
  for seed in range(8 if len(refs) > 1 else 1):
    out, _ = _apply(name, x, mode, LEVEL, seed)
    errors = [np.max(np.abs(out - ref)) for ref in refs]
    best = int(np.argmin(errors))
    assert errors[best] <= tol, (name, mode, errors)
    seen.add(best)
  assert seen == set(range(len(refs))), (name, mode, seen)


@pytest.mark.parametrize('mode', ['L', 'RGB'])
def test_randaugment_op_extremes(mode):
  x = _image(mode)
  # Posterize at 10 keeps 0 bits (timm semantics): all black; at 0 it keeps 4.
  np.testing.assert_array_equal(_apply('PosterizeIncreasing', x, mode, 10.0)[0], 0)
  np.testing.assert_array_equal(_apply('PosterizeIncreasing', x, mode, 0.0)[0], x & 0xF0)
  # AutoContrast reaches both ends of 0..255 in every channel; Equalize flattens the histogram.
  out = _apply('AutoContrast', x, mode, LEVEL)[0]
  assert (out.min((0, 1)) == 0).all() and (out.max((0, 1)) == 255).all()
  out = _apply('Equalize', x, mode, LEVEL)[0]
  for c in range(x.shape[-1]):
    uniform = np.linspace(0, 255, x[..., c].size)
    dev_in = np.abs(np.sort(x[..., c].ravel()) - uniform).max()
    dev_out = np.abs(np.sort(out[..., c].ravel()) - uniform).max()
    assert dev_out < 16 and dev_out < dev_in / 3
  # Translation by a whole number of pixels moves the content exactly: at 10, 45% of 40 = 18 px.
  for sign_out in [_apply('TranslateXRel', x, mode, 10.0, seed)[0] for seed in range(4)]:
    moved_left = np.array_equal(sign_out[:, :22], x[:, 18:])
    moved_right = np.array_equal(sign_out[:, 18:], x[:, :22])
    assert moved_left != moved_right
    filled = sign_out[:, 22:] if moved_left else sign_out[:, :18]
    np.testing.assert_array_equal(filled, np.broadcast_to(
        np.reshape(randaugment.fill_color(MEAN3, mode), (1, 1, -1)), filled.shape))
  # Solarize at 10 inverts every pixel; SolarizeAdd at 10 adds 110 below 128.
  np.testing.assert_array_equal(_apply('SolarizeIncreasing', x, mode, 10.0)[0], 255 - x)
  out = _apply('SolarizeAdd', x, mode, 10.0)[0]
  np.testing.assert_array_equal(out, np.where(x < 128, np.minimum(x + 110.0, 255), x))


IDENTITY_AT_LEVEL_ZERO = {
    'Rotate', 'ShearX', 'ShearY', 'TranslateXRel', 'TranslateYRel', 'ColorIncreasing',
    'ContrastIncreasing', 'BrightnessIncreasing', 'SharpnessIncreasing', 'SolarizeIncreasing',
    'SolarizeAdd'}


@pytest.mark.parametrize('mode', ['L', 'RGB'])
def test_rand_augment_magnitude_zero_and_prob_zero(mode):
  x = _image(mode)
  img = augment.to_pil(x)
  fill = randaugment.fill_color(MEAN3, mode)
  # Level 0 is the weakest op: the identity for geometric and enhance ops (0 degrees, shear 0,
  # factor 1) and for the solarizes; Posterize keeps 4 bits; the level-free ops still act.
  for name in randaugment.OP_NAMES:
    out = _apply(name, x, mode, 0.0)[0]
    ref = op_references(name, x, fill, 0.0)[0]
    assert np.max(np.abs(out - ref)) <= TOLERANCE.get(name, 1), name
    assert np.array_equal(out, x) == (name in IDENTITY_AT_LEVEL_ZERO), name
  # Through rand_augment with magnitude 0 and std 0, every applied op runs at level 0: the
  # output is the input or one of the 4 ops that act at level 0, the input for ~11/15 draws.
  allowed = [x] + [op_references(n, x, fill, 0.0)[0]
                   for n in ('PosterizeIncreasing', 'AutoContrast', 'Equalize', 'Invert')]
  unchanged = 0
  for seed in range(60):
    out = augment.from_pil(randaugment.rand_augment(
        img, np.random.default_rng(seed), num_ops=1, magnitude=0.0, magnitude_std=0.0,
        prob=1.0, fill=fill))
    errors = [np.max(np.abs(out - a)) for a in allowed]
    assert min(errors) <= 1, (seed, errors)
    unchanged += errors[0] == 0
  assert 0.55 < unchanged / 60 < 0.9, unchanged
  # prob 0: no op is applied, whatever the magnitude.
  for seed in range(5):
    out = randaugment.rand_augment(img, np.random.default_rng(seed), num_ops=3, prob=0.0,
                                   magnitude=10.0, fill=fill)
    np.testing.assert_array_equal(augment.from_pil(out), x)
  # The default rand-m9-mstd0.5 with 2 ops at p = 0.5: P(no op applied) = 1/4.
  changed = sum(not np.array_equal(augment.from_pil(randaugment.rand_augment(
      img, np.random.default_rng(s), num_ops=2, fill=fill)), x) for s in range(40))
  assert 22 <= changed <= 38


def test_mgp_transform_is_a_resized_crop_maybe_flipped():
  # R is a ramp along x, G along y, B constant: from the output one can read back where the
  # crop came from and whether it was flipped. (Normalisation is on the device: test below.)
  h, w, size = 48, 64, 16
  yy, xx = np.mgrid[0:h, 0:w]
  image = np.stack([40 + 3 * xx, 40 + 4 * yy, np.full_like(xx, 100)], -1).astype(np.uint8)
  cfg = augment.TrainAugment(image_size=size, mean=MEAN3, std=STD3, crop_scale_min=0.2)
  flips, widths = 0, []
  for seed in range(40):
    out = augment.train_transform(image, np.random.default_rng(seed), cfg)
    assert out.shape == (size, size, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 2], 100)  # the constant channel stays constant
    pixels = out.astype(np.float64)
    r, g = pixels[..., 0], pixels[..., 1]
    assert np.ptp(r, axis=0).max() <= 1 and np.ptp(g, axis=1).max() <= 1
    assert r.min() >= 40 - 1 and r.max() <= 40 + 3 * (w - 1) + 1
    assert g.min() >= 40 - 1 and g.max() <= 40 + 4 * (h - 1) + 1
    row, col = r.mean(0), g.mean(1)
    assert (np.diff(row) > 0).all() or (np.diff(row) < 0).all()  # flipped or not, monotone
    assert (np.diff(col) > 0).all()  # never flipped vertically
    flipped = row[0] > row[-1]
    flips += flipped
    # Input coordinates (pixel centres at i + 0.5) of the output pixels, read off the ramps:
    # evenly spaced over a box [left, right) x [top, bottom) inside the image.
    box = []
    for ramp, slope, extent in ((row[::-1] if flipped else row, 3, w), (col, 4, h)):
      coord = (ramp - 40) / slope + 0.5
      step, start = np.polyfit(np.arange(size) + 0.5, coord, 1)
      assert np.abs(start + step * (np.arange(size) + 0.5) - coord).max() < 0.5
      box += [start, start + step * size]
      assert -0.5 <= start and start + step * size <= extent + 0.5, (seed, start, step)
    # A whole-pixel box of 20%..100% of the area, aspect ratio 3/4..4/3.
    np.testing.assert_allclose(box, np.round(box), atol=0.3)
    crop_w, crop_h = box[1] - box[0], box[3] - box[2]
    assert 0.2 * 0.95 <= crop_w * crop_h / (w * h) <= 1.02, (seed, box)
    assert 3 / 4 * 0.95 <= crop_w / crop_h <= 4 / 3 * 1.05, (seed, box)
    widths.append(crop_w)
  assert 10 <= flips <= 30  # hflip_prob 0.5
  assert np.ptp(widths) > 10  # the crop size varies


@pytest.mark.parametrize('channels', [1, 3])
def test_native_size_full_crop_is_the_image_or_its_mirror(channels):
  # Crop scale 1.0 at the native size: the transform skips PIL; the pixels must be those of the
  # PIL path (a bicubic resize onto the same grid is the identity) and the draws the same: scale
  # (1, 1) draws no box, so the flip is the generator's first draw.
  image = rgb(28, 28, seed=3)[..., :channels]
  cfg = augment.TrainAugment(image_size=28, mean=MEAN3[:channels], std=STD3[:channels],
                             crop_scale_min=1.0)
  flips = 0
  for seed in range(20):
    rng = np.random.default_rng(seed)
    out = augment.train_transform(image, rng, cfg)
    expect = np.random.default_rng(seed)
    flipped = expect.random() < cfg.hflip_prob
    np.testing.assert_array_equal(out, image[:, ::-1] if flipped else image)
    assert out.dtype == np.uint8 and out.flags.c_contiguous and not np.shares_memory(out, image)
    assert rng.random() == expect.random()  # the generator is left where the PIL path leaves it
    flips += flipped
  assert 4 <= flips <= 16


def test_crop_scale_one_is_the_whole_image_without_draws():
  # Square or within the aspect range: the whole image; 2:1 (outside 3/4..4/3): the widest
  # centred crop within the range, as torchvision's fallback. No draw in either case.
  ratio = (3 / 4, 4 / 3)
  for (w, h), box in {(28, 28): (0, 0, 28, 28), (32, 27): (0, 0, 32, 27),
                      (40, 20): (6, 0, 33, 20)}.items():
    rng = np.random.default_rng(0)
    assert augment.random_resized_crop_box(w, h, rng, (1.0, 1.0), ratio) == box
    assert rng.random() == np.random.default_rng(0).random()


def test_erase_box_distribution():
  boxes = [augment.erase_box(32, np.random.default_rng(s), 1.0) for s in range(200)]
  areas = np.array([b[2] * b[3] for b, _ in boxes]) / 32 ** 2
  assert np.all(areas > 0) and 0.015 <= areas.min() and areas.max() <= 0.36  # 2%..1/3, rounded
  for (top, left, h, w), _ in boxes:
    assert 0 <= top and top + h <= 32 and 0 <= left and left + w <= 32
  assert len({int(seed) for _, seed in boxes}) == 200  # a noise seed per record
  none, seed = augment.erase_box(32, np.random.default_rng(0), 0.0)
  assert not none.any() and seed == 0
  rate = np.mean([augment.erase_box(32, np.random.default_rng(s), 0.25)[0][2] > 0
                  for s in range(400)])
  assert 0.18 < rate < 0.32


def test_device_normalize_and_erase_match_numpy():
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from livt_jax.data import device_augment  # pylint: disable=g-import-not-at-top
  images = np.stack([rgb(12, 12, seed=s) for s in range(3)])
  expected = (images / 255.0 - np.array(MEAN3)) / np.array(STD3)  # float64 reference
  boxes = np.array([[2, 3, 4, 5], [0, 0, 0, 0], [0, 0, 12, 12]], np.int32)
  seeds = np.array([7, 0, 9], np.uint32)
  out = np.asarray(device_augment.preprocess(
      {'image': jnp.asarray(images), 'erase_box': boxes, 'erase_seed': seeds,
       'label': np.zeros(3)}, MEAN3, STD3)['image'])
  inside = np.zeros((3, 12, 12), bool)
  inside[0, 2:6, 3:8] = True
  inside[2] = True
  np.testing.assert_allclose(out[~inside], expected[~inside], rtol=1e-6, atol=1e-6)
  noise = out[inside]
  assert not np.allclose(noise, expected[inside], atol=0.1)
  assert abs(noise.mean()) < 0.15 and abs(noise.std() - 1) < 0.15  # N(0, 1) per pixel
  again = device_augment.random_erase(jnp.zeros((3, 12, 12, 3)), boxes, seeds)
  np.testing.assert_array_equal(np.asarray(again)[inside], noise)  # the seed decides the noise


def test_eval_transform_small_and_large():
  small = rgb(28, 28)[..., :1]
  out = augment.eval_transform(small, 28)
  np.testing.assert_array_equal(out, small)  # No resampling.
  assert augment.eval_transform(rgb(32, 32), 48).shape == (48, 48, 3)
  # Large: shorter side to 224 / 0.875 = 256, then the centre 224 x 224.
  big = np.zeros((300, 400, 3), np.uint8)
  big[:, 200:] = 255
  out = augment.eval_transform(big, 224)
  assert out.shape == (224, 224, 3) and out.dtype == np.uint8
  assert out[:, :100].max() < 3 and out[:, 124:].min() > 252
  # Above 224 px the crop fraction is 1.0 (LiVT): 300x400 -> 288x384, centre 288x288, so an
  # edge at x = 100 -> 96 in the resized image lands at 96 - 48 = 48 of the crop (with 0.875
  # it would land at ~35).
  off_centre = np.zeros((300, 400, 3), np.uint8)
  off_centre[:, 100:] = 255
  out = augment.eval_transform(off_centre, 288)
  assert out.shape == (288, 288, 3)
  assert out[:, :45].max() < 3 and out[:, 51:].min() > 252
