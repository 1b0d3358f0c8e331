"""Throughput of the training input pipeline (images/s), MGP vs BFT augmentations.

  python -m livt_jax.data.benchmark [--batch_size=128 --num_batches=20 --read_threads=2 \
      --workers=0]

Two inputs: Fashion-MNIST-LT at 28 px (in memory), and a generated image folder of photo-like
JPEGs of ImageNet's sizes (decode + crop + resize from disk, as for ImageNet-LT).
"""
import os
import tempfile
import time

from absl import app
from absl import flags
import numpy as np
from PIL import Image

from livt_jax import config_defaults
from livt_jax.data import pipeline
from livt_jax.data import sources

_BATCH = flags.DEFINE_integer('batch_size', 128, 'Global batch size.')
_BATCHES = flags.DEFINE_integer('num_batches', 20, 'Timed batches per setting.')
_THREADS = flags.DEFINE_integer('read_threads', 2, 'grain reader threads.')
_WORKERS = flags.DEFINE_integer('workers', 0, 'grain worker processes (config.dataset.workers).')
_JPEGS = flags.DEFINE_integer('jpeg_images', 400, 'Images in the generated JPEG folder.')


def natural_image(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
  """uint8 [H, W, 3] with a photo's 1/f amplitude spectrum and correlated colour channels.

  Saved as JPEG (quality 90) a 500x375 one takes ~110 KB, as an average ImageNet photo does,
  so entropy decoding costs what it costs on real data (smooth images decode much faster).
  """
  fy = np.fft.fftfreq(height)[:, None]
  fx = np.fft.rfftfreq(width)[None, :]
  freq = np.sqrt(fx ** 2 + fy ** 2)
  freq[0, 0] = 1.0
  spectra = (rng.normal(size=(3,) + freq.shape) + 1j * rng.normal(size=(3,) + freq.shape)) / freq
  spectra[:, 0, 0] = 0.0
  planes = np.fft.irfft2(spectra, s=(height, width)).transpose(1, 2, 0)
  mix = np.array([[1.0, 0.8, 0.6], [0.8, 1.0, 0.8], [0.6, 0.8, 1.0]])
  planes = planes @ (mix / mix.sum(0))
  return np.clip(128 + 48 * planes / planes.std(), 0, 255).astype(np.uint8)


def write_jpeg_folder(root: str, num_images: int, num_classes: int = 10, seed: int = 0,
                      long_side: int = 500) -> list[str]:
  """train/ and test/ class folders of photo-like JPEGs, ImageNet's shapes scaled to long_side.

  The long side is `long_side` (ImageNet's typical 500; iNaturalist 2018's 800), the short
  side 0.6-0.8 of it, landscape or portrait. Returns the train files.
  """
  rng = np.random.default_rng(seed)
  written = []
  for split, n in (('train', num_images), ('test', num_classes)):
    for i in range(n):
      class_dir = os.path.join(root, split, f'class_{i % num_classes:02d}')
      os.makedirs(class_dir, exist_ok=True)
      short = int(long_side * rng.uniform(0.6, 0.8))
      width, height = (long_side, short) if rng.random() < 0.7 else (short, long_side)
      path = os.path.join(class_dir, f'{i:05d}.jpg')
      Image.fromarray(natural_image(rng, width, height)).save(path, quality=90)
      if split == 'train':
        written.append(path)
  return written


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
    write_jpeg_folder(root, _JPEGS.value)
    config.dataset.name = 'image_folder'
    config.dataset.data_dir = root
    folder = sources.load_source(config.dataset, 'train')
    for stage, what in (('mgp', 'decode+crop+flip'),
                        ('bft', 'decode+crop+flip+RandAugment+erasing')):
      print(f'image_folder JPEG 224px {stage} ({what}): '
            f'{measure(folder, stage, 224):8.0f} img/s')


if __name__ == '__main__':
  app.run(main)
