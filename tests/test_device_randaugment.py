"""RandAugment on the device (bft.randaug_on='device'): each op against PIL's, the host's draws,
the pipeline's batches, and the jitted step's preprocessing on a sharded batch."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from livt_jax import config_defaults
from livt_jax.data import augment
from livt_jax.data import device_augment
from livt_jax.data import device_randaugment
from livt_jax.data import pipeline
from livt_jax.data import randaugment
from livt_jax.data import registry

MEAN3, STD3 = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
LEVELS = (9.0, 3.7)
# The whole-number LUT ops match PIL exactly; the others may be off by one where PIL rounds
# float64 (AutoContrast's LUT, sample coordinates) and the device float32 or exact integers.
EXACT = {'Equalize', 'Invert', 'PosterizeIncreasing', 'SolarizeIncreasing', 'SolarizeAdd'}
MAX_MEAN_ERROR = 0.1  # mean |device - PIL| per op and image, in 0..255 levels (measured <= 0.03)

_rand_augment = jax.jit(device_randaugment.rand_augment)


def images(h, w, c, seed=0):
  """Noise, ramps with a checkerboard and stripes (channels differ), and a low-contrast image:
  every op changes each of them, and a wrong sign or level would show."""
  rs = np.random.default_rng(seed)
  y, x = np.mgrid[0:h, 0:w]
  ramps = np.stack([30 + 3.5 * x + 40 * ((x // 4 + y // 4) % 2), 40 + 3.0 * y + 25 * (x % 3 == 0),
                    60 + 90 * (x + y) / (w + h) + 20 * (y % 2)], -1)[..., :c]
  return [rs.integers(0, 256, (h, w, c), dtype=np.uint8), ramps.round().astype(np.uint8),
          rs.integers(50, 150, (h, w, c), dtype=np.uint8)]


def pil_op(x, name, level, sign, fill):
  return augment.from_pil(randaugment.apply_op(augment.to_pil(x), name, level, sign, fill))


def fill_of(channels):
  return randaugment.fill_color(MEAN3, 'L' if channels == 1 else 'RGB')


@pytest.mark.parametrize('shape', [(32, 32, 3), (40, 24, 3), (32, 32, 1), (40, 24, 1)])
def test_each_op_matches_pil(shape):
  h, w, c = shape
  xs, fill = images(h, w, c), fill_of(c)
  cases = [(name, level, sign, i) for name in randaugment.OP_NAMES for level in LEVELS
           for sign in (1.0, -1.0) for i in range(len(xs))]
  params = np.array([[[randaugment.OP_NAMES.index(n), level, sign]] for n, level, sign, _ in cases],
                    np.float32)
  out = np.asarray(_rand_augment(np.stack([xs[i] for *_, i in cases]), params, fill))
  errors, changed, sign_shows = {}, {}, {}
  for k, (name, level, sign, i) in enumerate(cases):
    ref = pil_op(xs[i], name, level, sign, fill).astype(int)
    diff = np.abs(out[k].astype(int) - ref)
    errors.setdefault(name, []).append((diff.mean(), diff.max()))
    # The images discriminate: the op changes one at least, and the other sign differs.
    key = (name, level, sign)
    changed[key] = max(changed.get(key, 0), np.abs(ref - xs[i]).mean())
    other = pil_op(xs[i], name, level, -sign, fill).astype(int)
    sign_shows[key] = max(sign_shows.get(key, 0), np.abs(out[k] - other).mean())
  for (name, level, sign), change in changed.items():
    if name == 'ColorIncreasing' and c == 1:  # no saturation to change: the identity
      assert change == 0
      continue
    assert change > 1, (name, level, sign)
    if name in randaugment.SIGNED:
      assert sign_shows[name, level, sign] > 1, (name, level, sign)
  for name, errs in errors.items():
    mean, worst = max(e[0] for e in errs), max(e[1] for e in errs)
    assert mean <= MAX_MEAN_ERROR, (name, mean)
    assert worst <= (0 if name in EXACT else 1), (name, worst)


def test_ops_in_sequence_skipped_ops_and_float_input():
  xs, fill = images(24, 24, 3, seed=1), fill_of(3)
  draws = [[(13, 7.0, 1.0), (1, 9.0, 1.0)], [(-1, 0.0, 1.0), (10, 9.5, -1.0)],
           [(-1, 0.0, 1.0), (-1, 0.0, 1.0)]]
  params = np.array(draws, np.float32)
  out = np.asarray(_rand_augment(np.stack(xs), params, fill))
  for x, row, got in zip(xs, draws, out):
    ref = x
    for op, level, sign in row:
      if op >= 0:
        ref = pil_op(ref, randaugment.OP_NAMES[op], level, sign, fill)
    assert np.abs(got.astype(int) - ref).max() <= 1
  np.testing.assert_array_equal(out[2], xs[2])  # no op applied
  # Float images holding 0..255 give the same values, as float32.
  as_float = _rand_augment(np.stack(xs).astype(np.float32), params, fill)
  assert as_float.dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(as_float), out.astype(np.float32))


def bft_cfg(on_device, erase=0.0, size=16):
  return augment.TrainAugment(image_size=size, mean=MEAN3, std=STD3, randaug_num_ops=2,
                              randaug_on_device=on_device, random_erase_prob=erase)


def test_host_draws_are_the_host_modes_ops():
  image = images(30, 26, 3, seed=2)[0]
  for seed in range(12):
    host_rng, dev_rng = np.random.default_rng(seed), np.random.default_rng(seed)
    host = augment.train_transform(image, host_rng, bft_cfg(False))
    cropped = augment.train_transform(image, dev_rng, bft_cfg(True))
    params = augment.randaug_params(dev_rng, bft_cfg(True))
    again = np.random.default_rng(seed)
    augment.train_transform(image, again, bft_cfg(True))
    np.testing.assert_array_equal(augment.randaug_params(again, bft_cfg(True)), params)
    assert params.shape == (2, 3) and params.dtype == np.float32
    assert host_rng.random() == dev_rng.random()  # both generators consumed alike
    ref = cropped
    for op, level, sign in params:
      if op >= 0:
        ref = pil_op(ref, randaugment.OP_NAMES[int(op)], float(level), float(sign), fill_of(3))
    assert np.abs(ref.astype(int) - host).max() <= 1  # the level travels as float32


def test_randaug_on_resolves_by_platform():
  bft = config_defaults.get_base_config().bft
  assert bft.randaug_on == 'auto'
  assert [pipeline.randaug_on_device(bft, p) for p in ('cpu', 'gpu', 'tpu')] == [
      False, True, True]
  assert pipeline.randaug_on_device(bft) == (jax.default_backend() != 'cpu')
  for where, expected in (('host', False), ('device', True)):
    bft.randaug_on = where
    assert pipeline.randaug_on_device(bft, 'gpu') == expected
  bft.randaug_on = 'gpu'
  with pytest.raises(ValueError, match="randaug_on='gpu'"):
    pipeline.randaug_on_device(bft)


class Photos:
  """Records of 20x20 noise + ramps, label i."""

  def __len__(self):
    return 48

  def __getitem__(self, i):
    return {'image': images(20, 20, 3, seed=i)[i % 2], 'label': i % 10}


INFO = dataclasses.replace(registry.get_info('cifar10_lt'), mean=MEAN3, std=STD3,
                           image_shape=(20, 20, 3))


def bft_batch(randaug_on, erase=0.25, seed=0):
  stage_config = config_defaults.get_base_config().bft
  stage_config.update(image_size=16, randaug_on=randaug_on, random_erase_prob=erase)
  it = pipeline.train_iterator(Photos(), stage='bft', stage_config=stage_config,
                               dataset_info=INFO, global_batch_size=16, seed=seed)
  batch = next(it)
  it.close()
  return batch


def test_device_mode_batch_and_preprocess():
  host, dev = bft_batch('host'), bft_batch('device')
  assert set(host) == {'image', 'label', 'erase_box', 'erase_seed'}
  assert set(dev) == set(host) | {'randaug'}
  assert dev['randaug'].shape == (16, 2, 3) and dev['randaug'].dtype == np.float32
  ops = dev['randaug'][..., 0]
  assert ((ops >= -1) & (ops < 15)).all() and (ops >= 0).any()
  for key in ('label', 'erase_box', 'erase_seed'):  # the same records and erasing
    np.testing.assert_array_equal(dev[key], host[key])
  np.testing.assert_array_equal(dev['randaug'], bft_batch('device')['randaug'])
  out = jax.jit(lambda b: device_augment.preprocess(b, MEAN3, STD3))(dev)
  assert set(out) == {'image', 'label'}
  assert out['image'].shape == (16, 16, 16, 3) and out['image'].dtype == jnp.float32
  # Without erasing, the device's result is the host mode's batch, normalised (to rounding).
  host, dev = bft_batch('host', erase=0.0), bft_batch('device', erase=0.0)
  out = np.asarray(device_augment.preprocess(dev, MEAN3, STD3)['image'])
  expected = np.asarray(device_augment.normalize(host['image'], MEAN3, STD3))
  in_levels = np.abs(out - expected) * np.array(STD3) * 255
  assert in_levels.max() <= 1.01 and in_levels.mean() < 0.05
  assert not np.array_equal(dev['image'], host['image'])  # RandAugment did change images
  with pytest.raises(ValueError, match='needs the uint8 images'):
    device_augment.preprocess(dict(dev, image=dev['image'].astype(np.float32)), MEAN3, STD3)


def test_sharded_preprocess_equals_one_device():
  batch = bft_batch('device', seed=3)
  fn = jax.jit(lambda b: device_augment.preprocess(b, MEAN3, STD3))
  one = fn(jax.device_put(batch, jax.devices()[0]))
  mesh = Mesh(np.array(jax.devices()), ('data',))
  assert mesh.size == 8
  sharded = jax.device_put(batch, NamedSharding(mesh, PartitionSpec('data')))
  many = fn(sharded)
  assert many['image'].sharding.is_equivalent_to(NamedSharding(mesh, PartitionSpec('data')), 4)
  np.testing.assert_array_equal(np.asarray(many['image']), np.asarray(one['image']))
