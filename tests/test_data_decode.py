"""Reduced-scale JPEG decoding for random-resized crops (`decode.py`): the same random draws,
close to the full decode, exact where no reduction applies, identical for any worker count."""
import dataclasses
import io

import numpy as np
from PIL import Image

from livt_jax import config_defaults
from benchmarks import jpegs
from livt_jax.data import augment
from livt_jax.data import decode
from livt_jax.data import pipeline
from livt_jax.data import sources


def _encoded(width, height, fmt='JPEG', seed=0):
  pixels = jpegs.natural_image(np.random.default_rng(seed), width, height)
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, fmt, **({'quality': 90} if fmt == 'JPEG' else {}))
  return buffer.getvalue()


def test_reduction_keeps_both_crop_sides_at_least_the_output():
  assert decode.reduction((0, 0, 500, 449), 224) == 2
  assert decode.reduction((10, 0, 457, 1000), 224) == 1  # 447 wide: 1/2 would give 223.5
  assert decode.reduction((0, 0, 900, 900), 224) == 4
  assert decode.reduction((0, 0, 2000, 1800), 224) == 8
  assert decode.reduction((0, 0, 100, 100), 224) == 1  # upsampling crop


def test_encoded_crop_same_draws_close_to_full_decode_exact_without_reduction():
  data = _encoded(800, 600)
  full = decode.EncodedImage(data).decode()
  assert full.shape == (600, 800, 3)
  cfg = augment.TrainAugment(image_size=64, mean=(0.5,) * 3, std=(0.5,) * 3)
  reduced = 0
  for seed in range(24):
    rng_full, rng_lazy = np.random.default_rng(seed), np.random.default_rng(seed)
    expected = augment.train_transform(full, rng_full, cfg)
    got = augment.train_transform(decode.EncodedImage(data), rng_lazy, cfg)
    # Both consumed the same draws: the rest of the record's randomness is unchanged.
    assert rng_full.random() == rng_lazy.random()
    box = augment.random_resized_crop_box(800, 600, np.random.default_rng(seed), (0.08, 1.0),
                                          cfg.crop_ratio)
    scale = decode.reduction(box, 64)
    img, mapped = decode.EncodedImage(data).decode_for_crop(box, 64)
    assert img.size == (-(-800 // scale), -(-600 // scale))
    np.testing.assert_allclose(mapped, np.asarray(box) / scale)
    assert min(mapped[2] - mapped[0], mapped[3] - mapped[1]) >= 64
    if scale == 1:
      np.testing.assert_array_equal(got, expected)
    else:
      reduced += 1
      # 1-4 levels here; a box off by 2 reduced pixels is 16-26 levels off.
      assert np.abs(got.astype(np.int16) - expected).mean() < 5.0
  assert reduced >= 8


def test_png_and_small_crops_decode_in_full():
  data = _encoded(300, 200, fmt='PNG')
  img, box = decode.EncodedImage(data).decode_for_crop((0, 0, 300, 200), 32)
  assert img.size == (300, 200) and box == (0, 0, 300, 200)
  np.testing.assert_array_equal(np.asarray(img), decode.EncodedImage(data).decode())


class _DecodedOnly:
  """The same files, decoded in full before the crop (the pipeline before decode.py)."""

  def __init__(self, source):
    self._source = source

  def __len__(self):
    return len(self._source)

  def __getitem__(self, index):
    return self._source[index]


def _iterator(source, workers, info):
  stage_config = config_defaults.get_base_config().bft
  stage_config.image_size = 32
  return pipeline.train_iterator(source, stage='bft', stage_config=stage_config,
                                 dataset_info=info, global_batch_size=16, seed=0,
                                 read_threads=1, workers=workers)


def test_pipeline_decodes_reduced_same_batches_for_any_worker_count(tmp_path):
  jpegs.write_jpeg_folder(str(tmp_path), 48, num_classes=4, long_side=256)
  config = config_defaults.get_base_config()
  config.dataset.name = 'image_folder'
  config.dataset.data_dir = str(tmp_path)
  source = sources.load_source(config.dataset, 'train')
  iterators = [_iterator(source, 0, source.info), _iterator(source, 2, source.info),
               _iterator(_DecodedOnly(source), 0, source.info)]
  batches = [[next(it) for _ in range(4)] for it in iterators]
  for it in iterators:
    it.close()
  differs = 0
  for lazy, workers, full in zip(*batches):
    for key in lazy:
      np.testing.assert_array_equal(lazy[key], workers[key])
    for key in ('label', 'erase_box', 'erase_seed'):
      np.testing.assert_array_equal(lazy[key], full[key])
    diff = np.abs(lazy['image'].astype(np.int16) - full['image'])
    assert diff.mean() < 5.0
    differs += int(np.any(diff > 0))
  assert differs > 0  # the reduced decode was used


def test_tfds_records_reach_the_crop_encoded(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from livt_jax.data import registry  # pylint: disable=g-import-not-at-top
  from livt_jax.data import source_base  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()
  images = [jpegs.natural_image(np.random.default_rng(i), 320, 240) for i in range(3)]
  features = tfds.features.FeaturesDict({
      'image': tfds.features.Image(shape=(None, None, 3), encoding_format='jpeg'),
      'label': tfds.features.ClassLabel(num_classes=2)})
  tfds.dataset_builders.store_as_tfds_dataset(
      name='livt_jpegs', version='1.0.0', features=features,
      split_datasets={'train': [(str(i), {'image': im, 'label': i % 2})
                                for i, im in enumerate(images)]},
      data_dir=str(tmp_path), file_format='array_record')
  builder = tfds.builder_from_directory(str(tmp_path / 'livt_jpegs' / '1.0.0'))
  base = builder.as_data_source(split='train')
  info = dataclasses.replace(registry.get_info('image_folder'), num_classes=2)
  source = source_base.RecordSource(base, np.array([2, 0]), info=info, split='train',
                                    labels=np.array([0, 0]), class_names=['a', 'b'],
                                    origin='fake')
  record = source.record_for_crop(0)
  assert isinstance(record['image'], decode.EncodedImage)
  assert record['image'].size == (320, 240) and record['label'] == 0
  # The same pixels as TFDS's own decoding (both PIL here), and as the record read whole.
  np.testing.assert_array_equal(record['image'].decode(), source[0]['image'])
  cfg = augment.TrainAugment(image_size=64, mean=(0.5,) * 3, std=(0.5,) * 3)
  for seed in range(6):
    got = augment.train_transform(record['image'], np.random.default_rng(seed), cfg)
    expected = augment.train_transform(source[0]['image'], np.random.default_rng(seed), cfg)
    assert np.abs(got.astype(np.int16) - expected).mean() < 5.0


def test_benchmarked_decoders_give_the_same_crop(tmp_path):
  # bench.decoders times each decoder on the same boxes: each must produce that box's crop
  # (a swapped box axis or a wrong scale shows as a large difference), not merely run.
  from benchmarks import decoders  # pylint: disable=g-import-not-at-top
  paths = jpegs.write_jpeg_folder(str(tmp_path), 6, long_side=320)
  files = [open(p, 'rb').read() for p in paths]  # pylint: disable=consider-using-with
  boxes = decoders.crop_boxes(files, seed=3)
  available = {n: f for n, f in decoders.variants().items() if not isinstance(f, str)}
  assert {'pil_full', 'pil_draft', 'tf_crop'} <= set(available)
  for data, box in zip(files, boxes):
    reference = decoders.pil_full(data, box, 64).astype(np.int16)
    for name, fn in available.items():
      out = fn(data, box, 64)
      assert out.shape == (64, 64, 3) and out.dtype == np.uint8, name
      assert np.abs(out - reference).mean() < 8, (name, box)  # a reduced decode: ~4
