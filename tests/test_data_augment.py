"""Host augmentations: crops, RandAugment ops on RGB and grayscale, erasing, eval resize."""
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
  assert a.shape == (16, 16, channels) and a.dtype == np.float32
  np.testing.assert_array_equal(a, b)


def test_mgp_transform_is_crop_flip_normalize():
  # A constant image stays constant under crop + flip, so the output is the normalized value.
  image = np.full((20, 20, 3), 100, np.uint8)
  cfg = augment.TrainAugment(image_size=8, mean=MEAN3, std=STD3, crop_scale_min=0.2)
  out = augment.train_transform(image, np.random.default_rng(0), cfg)
  expected = (100 / 255 - np.array(MEAN3)) / np.array(STD3)
  np.testing.assert_allclose(out, np.broadcast_to(expected, out.shape), atol=1e-5)


@pytest.mark.parametrize('mode', ['L', 'RGB'])
@pytest.mark.parametrize('name', randaugment.OP_NAMES)
def test_each_randaugment_op(name, mode):
  img = Image.fromarray(rgb(24, 24)).convert(mode)
  fill = randaugment.fill_color(MEAN3, mode)
  out = randaugment.OPS[name](img, 9.0, np.random.default_rng(0), fill)
  assert out.size == img.size and out.mode == mode
  if name == 'ColorIncreasing' and mode == 'L':
    np.testing.assert_array_equal(np.asarray(out), np.asarray(img))  # No colour to change.
  # Level 10 posterize keeps 0 bits (timm semantics): an all-black image.
  if name == 'PosterizeIncreasing':
    black = randaugment.OPS[name](img, 10.0, np.random.default_rng(0), fill)
    assert np.asarray(black).max() == 0


def test_rand_augment_magnitude_zero_prob_zero_is_identity():
  img = Image.fromarray(rgb(16, 16))
  out = randaugment.rand_augment(img, np.random.default_rng(0), num_ops=3, prob=0.0)
  np.testing.assert_array_equal(np.asarray(out), np.asarray(img))
  changed = sum(
      not np.array_equal(np.asarray(randaugment.rand_augment(
          img, np.random.default_rng(s), num_ops=2)), np.asarray(img)) for s in range(20))
  assert changed >= 10  # Ops fire with p = 0.5 each: most images change.


def test_random_erase_pixel_mode():
  image = np.zeros((32, 32, 3), np.float32)
  assert augment.random_erase(image, np.random.default_rng(0), 0.0) is image
  erased = [augment.random_erase(image, np.random.default_rng(s), 1.0) for s in range(20)]
  fractions = [np.mean(np.any(e != 0, axis=-1)) for e in erased]
  assert all(0.015 <= f <= 0.34 for f in fractions)
  noise = np.concatenate([e[e != 0] for e in erased])
  assert abs(noise.mean()) < 0.1 and abs(noise.std() - 1) < 0.1  # N(0, 1) per pixel.
  rate = np.mean([np.any(augment.random_erase(image, np.random.default_rng(s), 0.25))
                  for s in range(400)])
  assert 0.18 < rate < 0.32


def test_eval_transform_small_and_large():
  small = rgb(28, 28)[..., :1]
  out = augment.eval_transform(small, 28, (0.5,), (0.5,))
  np.testing.assert_allclose(out, (small / 255 - 0.5) / 0.5, atol=1e-6)  # No resampling.
  assert augment.eval_transform(rgb(32, 32), 48, MEAN3, STD3).shape == (48, 48, 3)
  # Large: shorter side to 224 / 0.875 = 256, then the centre 224 x 224.
  big = np.zeros((300, 400, 3), np.uint8)
  big[:, 200:] = 255
  out = augment.eval_transform(big, 224, (0, 0, 0), (1, 1, 1))
  assert out.shape == (224, 224, 3)
  assert out[:, :100].max() < 0.01 and out[:, 124:].min() > 0.99
