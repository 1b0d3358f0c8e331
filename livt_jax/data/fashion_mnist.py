"""Fashion-MNIST from IDX files (Debian `dataset-fashion-mnist`), with a TFDS fallback."""
import gzip
import zlib
from typing import Optional

import numpy as np

from livt_jax.runtime import paths


# Where `apt-get install -y dataset-fashion-mnist` puts the files. A module constant so
# tests can point it elsewhere.
SYSTEM_IDX_DIR = '/usr/share/datasets/fashion-mnist'

CLASS_NAMES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt',
               'Sneaker', 'Bag', 'Ankle boot')

_FILES = {
    'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
    'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'),
}
_IDX_MAGIC = {2049: 1, 2051: 3}  # labels: 1 dim, images: 3 dims (both uint8 data)


def _find(directory: str, stem: str) -> Optional[str]:
  for name in (stem, stem + '.gz'):
    path = paths.join(directory, name)
    if paths.is_file(path):
      return path
  return None


def read_idx(path: str) -> np.ndarray:
  """Reads one uint8 IDX file (optionally gzipped); ValueError naming the file if malformed."""
  try:
    data = paths.as_path(path).read_bytes()
    if path.endswith('.gz'):
      data = gzip.decompress(data)
  except (OSError, EOFError, zlib.error) as e:
    raise ValueError(f'fashion_mnist_lt: cannot read IDX file {path} ({e}); re-install '
                     '`dataset-fashion-mnist` or replace the file') from e
  if len(data) < 8:
    raise ValueError(f'fashion_mnist_lt: IDX file {path} is truncated; replace the file')
  magic = int.from_bytes(data[:4], 'big')
  if magic not in _IDX_MAGIC:
    raise ValueError(f'fashion_mnist_lt: {path} is not a uint8 IDX file (magic {magic}); '
                     'replace the file')
  ndim = _IDX_MAGIC[magic]
  header = 4 + 4 * ndim
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim))
  if len(data) != header + int(np.prod(shape)):
    raise ValueError(f'fashion_mnist_lt: IDX file {path} has {len(data) - header} bytes of '
                     f'data, its header says {shape}; the file is truncated: replace it')
  return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def find_idx_dir(data_dir: Optional[str]) -> Optional[str]:
  """The first of (data_dir, the Debian dir) holding all four IDX files, else None."""
  for directory in ([data_dir] if data_dir else []) + [SYSTEM_IDX_DIR]:
    if all(_find(directory, stem) for pair in _FILES.values() for stem in pair):
      return directory
  return None


def load_idx_split(directory: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """Images uint8 [N, 28, 28, 1] and labels [N] of 'train' or 'test'."""
  images = read_idx(_find(directory, _FILES[split][0]))
  labels = read_idx(_find(directory, _FILES[split][1]))
  if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
    raise ValueError(f'fashion_mnist_lt: {directory} {split}: images {images.shape} do not '
                     f'match labels {labels.shape}')
  return images[..., None], labels.astype(np.int32)


def missing_error(data_dir: Optional[str], tfds_reason: str) -> FileNotFoundError:
  looked = [d for d in (data_dir, SYSTEM_IDX_DIR) if d]
  return FileNotFoundError(
      f'fashion_mnist_lt: no IDX files (train/t10k-*-ubyte[.gz]) in {", ".join(looked)} and '
      f'no TFDS fashion_mnist ({tfds_reason}); run `apt-get install -y dataset-fashion-mnist`'
      ' or set dataset.data_dir to a TFDS dir holding fashion_mnist as array_record')



def check_labels(labels: np.ndarray, directory: str, split: str) -> None:
  """ValueError naming the IDX label file if a label is not a class id 0..9."""
  bad = np.flatnonzero(labels >= len(CLASS_NAMES))
  if len(bad):
    raise ValueError(
        f'fashion_mnist_lt: {_find(directory, _FILES[split][1])}: {len(bad)} labels outside '
        f'[0, {len(CLASS_NAMES)}) (first: label {int(labels[bad[0]])} of record {int(bad[0])}); '
        'the file is corrupt or not Fashion-MNIST: re-install `dataset-fashion-mnist` or '
        'replace it')
