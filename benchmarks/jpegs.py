"""Photo-like JPEG folders for the input-pipeline benchmarks and tests (no flags, no torch)."""
import os

import numpy as np
from PIL import Image


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
