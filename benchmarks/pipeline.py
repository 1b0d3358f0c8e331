"""Throughput of the training input pipeline (images/s), MGP vs BFT augmentations.

  python -m benchmarks.pipeline [--batch_size=128 --num_batches=20 --read_threads=2 \
      --workers=0]

Two inputs: Fashion-MNIST-LT at 28 px (in memory), and a generated image folder of photo-like
JPEGs of ImageNet's sizes (decode + crop + resize from disk, as for ImageNet-LT).
"""
import os
import tempfile
import time

from absl import app
from absl import flags

from livt_jax import config_defaults
from benchmarks import jpegs
from livt_jax.data import pipeline
from livt_jax.data import sources

_BATCH = flags.DEFINE_integer('batch_size', 128, 'Global batch size.')
_BATCHES = flags.DEFINE_integer('num_batches', 20, 'Timed batches per setting.')
_THREADS = flags.DEFINE_integer('read_threads', 2, 'grain reader threads.')
_WORKERS = flags.DEFINE_integer('workers', 0, 'grain worker processes (config.dataset.workers).')
_JPEGS = flags.DEFINE_integer('jpeg_images', 400, 'Images in the generated JPEG folder.')


def measure(source, stage: str, image_size: int) -> float:
  config = config_defaults.get_base_config()
  stage_config = config[stage]
  stage_config.image_size = image_size
  it = pipeline.train_iterator(
      source, stage=stage, stage_config=stage_config, dataset_info=source.info,
      global_batch_size=_BATCH.value, seed=0, read_threads=_THREADS.value,
      prefetch_buffer=max(2, _THREADS.value), workers=_WORKERS.value)
  for _ in range(2 + 2 * _WORKERS.value):  # Warm-up: threads and workers start, permutation.
    next(it)
  start = time.perf_counter()
  for _ in range(_BATCHES.value):
    next(it)
  rate = _BATCHES.value * _BATCH.value / (time.perf_counter() - start)
  it.close()
  return rate


def main(argv):
  del argv
  config = config_defaults.get_base_config()
  config.dataset.name = 'fashion_mnist_lt'
  fashion = sources.load_source(config.dataset, 'train')
  print(f'read_threads={_THREADS.value} workers={_WORKERS.value} batch={_BATCH.value} '
        f'cpus={os.cpu_count()} (uint8 output; normalisation and erasing run on the device)')
  for stage, what in (('mgp', 'crop+flip'), ('bft', 'crop+flip+RandAugment+erasing')):
    print(f'fashion_mnist_lt 28px  {stage} ({what}): {measure(fashion, stage, 28):8.0f} img/s')
  with tempfile.TemporaryDirectory() as root:
    jpegs.write_jpeg_folder(root, _JPEGS.value)
    config.dataset.name = 'image_folder'
    config.dataset.data_dir = root
    folder = sources.load_source(config.dataset, 'train')
    for stage, what in (('mgp', 'decode+crop+flip'),
                        ('bft', 'decode+crop+flip+RandAugment+erasing')):
      print(f'image_folder JPEG 224px {stage} ({what}): '
            f'{measure(folder, stage, 224):8.0f} img/s')


if __name__ == '__main__':
  app.run(main)
