"""Training / eval pipelines: process slices, determinism, endless epochs, eval padding."""
import dataclasses

import numpy as np
import pytest

from livt_jax import config_defaults
from livt_jax.data import pipeline
from livt_jax.data import registry

N = 103  # Not a multiple of any batch size used here, so remainders are exercised.


class IndexSource:
  """Record i: a 10x12 image whose pixels encode i, label i (so batches reveal records)."""

  def __len__(self):
    return N

  def __getitem__(self, i):
    image = np.full((10, 12, 3), i % 256, np.uint8)
    image[:5] = (7 * i) % 256
    return {'image': image, 'label': i}


INFO = dataclasses.replace(registry.get_info('cifar10_lt'), num_classes=N,
                           image_shape=(10, 12, 3))


def stage_config(stage, image_size=8):
  c = config_defaults.get_base_config()[stage]
  c.image_size = image_size
  return c


def take(iterator, n):
  return [next(iterator) for _ in range(n)]


def train_iter(stage='bft', process_index=0, process_count=1, global_batch=16, threads=2,
               seed=0):
  return pipeline.train_iterator(
      IndexSource(), stage=stage, stage_config=stage_config(stage), dataset_info=INFO,
      global_batch_size=global_batch, seed=seed, process_index=process_index,
      process_count=process_count, read_threads=threads)


def test_batch_shapes_and_types():
  batch = next(train_iter())
  # uint8 on the wire: a quarter of float32's host-to-device bytes.
  assert batch['image'].shape == (16, 8, 8, 3) and batch['image'].dtype == np.uint8
  assert batch['label'].shape == (16,) and batch['label'].dtype == np.int32
  # BFT erases (prob 0.25): each image's box and noise seed travel with it.
  assert batch['erase_box'].shape == (16, 4) and batch['erase_box'].dtype == np.int32
  assert batch['erase_seed'].shape == (16,) and batch['erase_seed'].dtype == np.uint32
  erased = batch['erase_box'][:, 2] > 0
  assert np.all(batch['erase_seed'][~erased] == 0)
  assert set(next(train_iter(stage='mgp'))) == {'image', 'label'}
  assert pipeline.steps_per_epoch(N, 16) == 6


def test_processes_disjoint_and_complete_per_epoch():
  steps = pipeline.steps_per_epoch(N, 16)
  single = take(train_iter(global_batch=16), 2 * steps)
  per_process = [take(train_iter(process_index=p, process_count=4), 2 * steps)
                 for p in range(4)]
  for epoch in range(2):
    seen = []
    for b in range(epoch * steps, (epoch + 1) * steps):
      rows = [per_process[p][b]['label'] for p in range(4)]
      for p in range(4):
        assert len(rows[p]) == 4
      # Process p holds rows [4p, 4p + 4) of the same global batch as one process reads.
      np.testing.assert_array_equal(np.concatenate(rows), single[b]['label'])
      np.testing.assert_array_equal(
          np.concatenate([per_process[p][b]['image'] for p in range(4)]), single[b]['image'])
      seen += list(single[b]['label'])
    # Disjoint, and all but the dropped remainder (N mod 16 records) of the epoch.
    assert len(seen) == len(set(seen)) == steps * 16
  epoch0 = np.concatenate([b['label'] for b in single[:steps]])
  epoch1 = np.concatenate([b['label'] for b in single[steps:]])
  assert not np.array_equal(epoch0, epoch1)  # Reshuffled each epoch.


def test_every_record_once_per_epoch_when_batch_divides():
  class Even(IndexSource):

    def __len__(self):
      return 96

  seen = []
  for p in range(3):
    it = pipeline.train_iterator(Even(), stage='mgp', stage_config=stage_config('mgp'),
                                 dataset_info=INFO, global_batch_size=24, seed=1,
                                 process_index=p, process_count=3)
    seen += [int(x) for b in take(it, 4) for x in b['label']]
  assert sorted(seen) == list(range(96))


def test_deterministic_across_thread_counts_and_resumable():
  one = take(train_iter(threads=1), 8)
  two = take(train_iter(threads=2), 8)
  for a, b in zip(one, two):
    np.testing.assert_array_equal(a['label'], b['label'])
    np.testing.assert_array_equal(a['image'], b['image'])
  it = train_iter()
  take(it, 3)
  state = it.get_state()
  expected = take(it, 4)
  resumed = train_iter()
  resumed.set_state(state)
  for a, b in zip(expected, take(resumed, 4)):
    np.testing.assert_array_equal(a['image'], b['image'])
  other_seed = next(train_iter(seed=1))
  assert not np.array_equal(other_seed['label'], one[0]['label'])


def test_batch_not_divisible_and_too_small():
  with pytest.raises(ValueError, match='multiple of the process count 3'):
    train_iter(global_batch=16, process_count=3)
  with pytest.raises(ValueError, match='fewer than one global batch'):
    train_iter(global_batch=128)
  with pytest.raises(ValueError, match='stage'):
    pipeline.train_iterator(IndexSource(), stage='mae', stage_config=stage_config('mgp'),
                            dataset_info=INFO, global_batch_size=16, seed=0)


@pytest.mark.parametrize('process_count', [1, 2, 4])
def test_eval_covers_once_with_padding(process_count):
  global_batch = 24
  assert pipeline.num_eval_batches(N, global_batch) == 5
  per_process = []
  for p in range(process_count):
    batches = pipeline.eval_batches(IndexSource(), dataset_info=INFO, image_size=8,
                                    global_batch_size=global_batch, process_index=p,
                                    process_count=process_count)
    assert len(batches) == 5
    per_process.append(list(batches))
    assert len(per_process[-1]) == 5
  labels, masks, images = [], [], []
  for b in range(5):
    labels.append(np.concatenate([pp[b]['label'] for pp in per_process]))
    masks.append(np.concatenate([pp[b]['mask'] for pp in per_process]))
    images.append(np.concatenate([pp[b]['image'] for pp in per_process]))
  labels, masks = np.concatenate(labels), np.concatenate(masks)
  assert masks.dtype == np.float32 and masks.sum() == N
  assert (masks == 0).sum() == 5 * global_batch - N == 17
  np.testing.assert_array_equal(labels[masks == 1], np.arange(N))  # In order, once each.
  assert np.all(masks[N:] == 0) and np.all(labels[N:] == 0)
  assert np.all(np.concatenate(images)[N:] == 0)
  # Same preprocessed pixels whatever the process count.
  expected = pipeline.eval_batches(IndexSource(), dataset_info=INFO, image_size=8,
                                   global_batch_size=global_batch)
  np.testing.assert_array_equal(np.concatenate(images)[:24], next(iter(expected))['image'])


def test_eval_is_reiterable():
  batches = pipeline.eval_batches(IndexSource(), dataset_info=INFO, image_size=8,
                                  global_batch_size=50)
  first = [b['label'] for b in batches]
  second = [b['label'] for b in batches]
  for a, b in zip(first, second):
    np.testing.assert_array_equal(a, b)


def test_train_augment_config_by_stage():
  mgp = pipeline.train_augment_config('mgp', stage_config('mgp'), INFO)
  bft = pipeline.train_augment_config('bft', stage_config('bft'), INFO)
  assert mgp.randaug_num_ops == 0 and mgp.random_erase_prob == 0 and mgp.crop_scale_min == 0.2
  assert (bft.randaug_num_ops, bft.randaug_magnitude, bft.randaug_magnitude_std) == (2, 9, 0.5)
  assert bft.random_erase_prob == 0.25 and bft.crop_scale_min == 0.08


def test_record_generator_depends_on_the_record_only():
  rngs = pipeline.RecordGenerators(seed=3, stage_id=2)
  first = rngs(5, 17).random(6)
  rngs(0, 0).random(100)  # other records drawn in between change nothing
  np.testing.assert_array_equal(pipeline.RecordGenerators(3, 2)(5, 17).random(6), first)
  np.testing.assert_array_equal(rngs(5, 17).random(6), first)
  for other in [rngs(5, 18), rngs(6, 17), pipeline.RecordGenerators(3, 1)(5, 17),
                pipeline.RecordGenerators(4, 2)(5, 17)]:
    assert not np.any(other.random(6) == first)


def test_record_generators_first_draws_look_uniform():
  rngs = pipeline.RecordGenerators(seed=0, stage_id=1)
  # Neighbouring keys (consecutive records) must still give independent-looking draws.
  draws = np.array([rngs(0, i).random() for i in range(20000)])
  counts, _ = np.histogram(draws, bins=10, range=(0, 1))
  chi2 = ((counts - 2000) ** 2 / 2000).sum()
  assert chi2 < 27.9  # 99.9th percentile of chi-square with 9 degrees of freedom
  assert abs(np.corrcoef(draws[:-1], draws[1:])[0, 1]) < 0.03


def test_record_generator_rejects_keys_out_of_range():
  with pytest.raises(ValueError, match='2\\*\\*32'):
    pipeline.RecordGenerators(0, 1)(2**32, 0)
