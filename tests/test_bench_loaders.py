"""The torch-free parts of the side-by-side loader benchmark (`benchmarks.loaders`)."""
import os

import numpy as np

from benchmarks import loaders


def test_folder_of_copies_and_our_batches(tmp_path):
  loaders.write_folder(str(tmp_path), 30, long_side=64, unique=7, num_classes=3)
  files = sorted(os.path.join(d, f) for d, _, fs in os.walk(tmp_path / 'train') for f in fs)
  assert len(files) == 30
  assert len({open(f, 'rb').read() for f in files}) == 7  # pylint: disable=consider-using-with
  batches, stop = loaders.livt_batches(str(tmp_path), 'bft', image_size=16, batch_size=8,
                                       workers=0)
  batch = next(batches)
  stop()
  assert batch['image'].shape == (8, 16, 16, 3) and batch['image'].dtype == np.uint8
  assert set(batch) == {'image', 'label', 'erase_box', 'erase_seed'}
  # The RandAugment-on-device row: the host only draws the ops.
  batches, stop = loaders.livt_batches(str(tmp_path), 'bft', image_size=16, batch_size=8,
                                       workers=0, randaug_on='device')
  batch = next(batches)
  stop()
  assert set(batch) == {'image', 'label', 'erase_box', 'erase_seed', 'randaug'}
  assert batch['randaug'].shape == (8, 2, 3)


def test_time_batches_counts_warmup_apart_and_cpu_of_the_work():
  taken = []

  def batches():
    while True:
      np.linalg.svd(np.ones((160, 160)) + len(taken))  # some CPU work per batch
      taken.append(1)
      yield len(taken)

  rate, per_cpu, others = loaders.time_batches(batches(), batch_size=4, warmup=3, timed=5)
  assert len(taken) == 8
  assert rate > 0 and per_cpu is not None and per_cpu > 0
  assert others is not None and others >= 0


def test_table_has_scaling_and_no_ratio_between_different_work():
  results = [
      loaders.Result('livt_jax', 'bft', 1, 100.0, 200.0, 0.1),
      loaders.Result('livt_jax', 'bft', 2, 190.0, 190.0, 0.1),
      loaders.Result('torch_uint8', 'bft', 1, 50.0, 100.0, 0.1),
      loaders.Result('torch_uint8', 'bft', 2, 80.0, 95.0, 0.1),
      loaders.Result('livt_jax_ra_device', 'bft', 1, 140.0, 280.0, 0.1),
  ]
  lines = loaders.format_table(results).splitlines()
  assert lines[0] == ('| stage | pipeline | 1w img/s (img/CPU-s) | 2w img/s (img/CPU-s) | '
                      '1->2 w wall (CPU-normalised) |')
  assert lines[2] == '| bft | livt_jax | 100 (200) | 190 (190) | 1.90x (1.90x) |'
  assert lines[3] == '| bft | livt_jax_ra_device | 140 (280) | - | - |'
  assert lines[4] == '| bft | torch_uint8 | 50 (100) | 80 (95) | 1.60x (1.90x) |'
  assert len(lines) == 5  # no torch_float rows measured, none printed


def test_best_of_rounds_keeps_each_rows_best_rates():
  rounds = [loaders.Result('livt_jax', 'mgp', 1, 100.0, 150.0, 0.5),
            loaders.Result('livt_jax', 'mgp', 1, 90.0, 160.0, 0.2),
            loaders.Result('livt_jax', 'mgp', 2, 170.0, None, None)]
  best = {(r.pipeline, r.stage, r.workers): r for r in loaders.best_of(rounds)}
  assert len(best) == 2
  one = best[('livt_jax', 'mgp', 1)]
  assert (one.images_per_s, one.images_per_cpu_s, one.others_load) == (100.0, 160.0, 0.2)
  assert best[('livt_jax', 'mgp', 2)].images_per_cpu_s is None
  assert rounds[0].images_per_cpu_s == 150.0  # inputs unchanged
