"""Random-access record sources: what every dataset loader returns.

A source is a grain random-access data source (`__len__`, `__getitem__`) whose records are
`{'image': uint8 [H, W, C], 'label': int}`. Labels live in memory as an array, so class
counts and LT bookkeeping never have to decode an image.
"""
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from livt_jax.data import registry

SPLITS = ('train', 'val', 'test')


class Source:
  """Base class: labels in memory, images fetched by `_image(index)`.

  Attributes:
    info: the dataset's `DatasetInfo` (sizes filled in from the data for 'image_folder').
    split: 'train', 'val' or 'test'.
    labels: int32 [N], the label of every record of this split.
    num_classes: number of classes of the dataset.
    class_names: one name per class id.
    split_class_counts: per-class record counts of this split.
    class_counts: per-class counts of the training subset; set on the train source only
      (None elsewhere, so evaluation cannot silently group classes by test counts).
  """

  def __init__(self, *, info: registry.DatasetInfo, split: str, labels: np.ndarray,
               class_names: Sequence[str]):
    self.info = info
    self.split = split
    self.labels = np.asarray(labels, dtype=np.int32)
    self.num_classes = int(info.num_classes)
    self.class_names = [str(n) for n in class_names]
    if len(self.class_names) != self.num_classes:
      raise ValueError(f'{info.name}: {len(self.class_names)} class names for '
                       f'{self.num_classes} classes')
    if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= self.num_classes):
      raise ValueError(f'{info.name} {split}: labels outside [0, {self.num_classes})')
    self.split_class_counts = np.bincount(self.labels, minlength=self.num_classes)
    self.class_counts: Optional[np.ndarray] = (
        self.split_class_counts if split == 'train' else None)

  def __len__(self) -> int:
    return len(self.labels)

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    return {'image': self._image(index), 'label': int(self.labels[index])}

  def _image(self, index: int) -> np.ndarray:
    raise NotImplementedError

  def __repr__(self) -> str:
    return f'{type(self).__name__}({self.info.name}, split={self.split}, n={len(self)})'


class ArraySource(Source):
  """All images in memory (small datasets such as Fashion-MNIST)."""

  def __init__(self, images: np.ndarray, **kwargs):
    super().__init__(**kwargs)
    if images.ndim != 4 or images.dtype != np.uint8 or len(images) != len(self.labels):
      raise ValueError(f'images must be uint8 [N, H, W, C] with N = {len(self.labels)}, '
                       f'got {images.dtype} {images.shape}')
    self.images = images

  def _image(self, index: int) -> np.ndarray:
    return self.images[index]


class RecordSource(Source):
  """A fixed subset of an underlying random-access source (e.g. `tfds.data_source`).

  `record_indices[i]` is the underlying record of our record i: LT subsets and OLTR split
  files become one index array computed once.
  """

  def __init__(self, base, record_indices: np.ndarray, **kwargs):
    super().__init__(**kwargs)
    self.base = base
    self.record_indices = np.asarray(record_indices, dtype=np.int64)
    if len(self.record_indices) != len(self.labels):
      raise ValueError('record_indices and labels differ in length')

  def _image(self, index: int) -> np.ndarray:
    image = np.asarray(self.base[int(self.record_indices[index])]['image'])
    return image[..., None] if image.ndim == 2 else image


class FileSource(Source):
  """Images decoded with PIL from files on disk (image folders)."""

  def __init__(self, paths: Sequence[str], **kwargs):
    super().__init__(**kwargs)
    self.paths = list(paths)
    if len(self.paths) != len(self.labels):
      raise ValueError('paths and labels differ in length')

  def _image(self, index: int) -> np.ndarray:
    path = self.paths[index]
    # A corrupt file stops the run with its name rather than being skipped: skipping would
    # silently change the class counts the balanced loss is built on.
    try:
      with Image.open(path) as img:
        return np.asarray(img.convert('RGB'))
    except (OSError, SyntaxError, ValueError) as e:
      raise ValueError(f'{self.info.name}: cannot decode image {path} ({e}); '
                       'remove or replace the file') from e
