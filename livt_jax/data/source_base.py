"""Random-access record sources: what every dataset loader returns.

A source is a grain random-access data source (`__len__`, `__getitem__`) whose records are
`{'image': uint8 [H, W, C], 'label': int}`. Labels live in memory as an array, so class
counts and LT bookkeeping never have to decode an image.
"""
import copy
from typing import Optional, Sequence

import numpy as np

from livt_jax.runtime import paths
from livt_jax.data import decode
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
    origin: where the records come from (a file, a folder, a TFDS dir), for messages.
  """

  def __init__(self, *, info: registry.DatasetInfo, split: str, labels: np.ndarray,
               class_names: Sequence[str], origin: Optional[str] = None):
    self.info = info
    self.split = split
    self.labels = np.asarray(labels, dtype=np.int32)
    self.num_classes = int(info.num_classes)
    self.class_names = [str(n) for n in class_names]
    self.origin = origin
    where = f' ({origin})' if origin else ''
    if len(self.class_names) != self.num_classes:
      raise ValueError(f'{info.name}{where}: {len(self.class_names)} class names for '
                       f'{self.num_classes} classes')
    bad = np.flatnonzero((self.labels < 0) | (self.labels >= self.num_classes))
    if len(bad):
      raise ValueError(
          f'{info.name} {split}{where}: {len(bad)} labels outside [0, {self.num_classes}) '
          f'(first: label {int(self.labels[bad[0]])} of record {int(bad[0])}); the labels must '
          f'be class ids 0..{self.num_classes - 1}: fix or replace the label data, or use the '
          'dataset the labels belong to')
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

  def record_for_crop(self, index: int) -> dict:
    """The record with its image still encoded where the base is a TFDS source of RGB
    `tfds.features.Image`s (JPEG / PNG bytes, decoded by the training crop: JPEG at reduced
    scale); else the decoded record."""
    if not hasattr(self, '_encoded'):  # computed once (a race only computes it twice)
      self._encoded = _encoded_twin(self.base)
    encoded = self._encoded
    if encoded is None:
      return self[index]
    index = int(index)
    record = int(self.record_indices[index])
    return {'image': decode.EncodedImage(encoded[record]['image'],
                                         name=f'record {record} of {self.origin}',
                                         dataset=self.info.name),
            'label': int(self.labels[index])}


def _encoded_twin(base):
  """A TFDS data source's copy that returns the encoded bytes of its 3-channel 'image'
  feature (tfds SkipDecoding), reading the same files; None for anything else."""
  twin = None
  info = getattr(base, 'dataset_info', None)
  if getattr(base, 'decoders', ()) is None and info is not None:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    feature = info.features['image'] if 'image' in info.features else None
    if isinstance(feature, tfds.features.Image) and feature.shape[-1] == 3:
      twin = copy.copy(base)
      twin.decoders = {'image': tfds.decode.SkipDecoding()}
  return twin


class FileSource(Source):
  """Images decoded with PIL from files on disk (image folders)."""

  def __init__(self, paths: Sequence[str], **kwargs):
    super().__init__(**kwargs)
    self.paths = list(paths)
    if len(self.paths) != len(self.labels):
      raise ValueError('paths and labels differ in length')

  def _read(self, index: int) -> decode.EncodedImage:
    path = self.paths[index]
    # A corrupt file stops the run with its name rather than being skipped: skipping would
    # silently change the class counts the balanced loss is built on. The error is a
    # ValueError raised in a grain reader thread; grain re-raises it unchanged in the
    # training loop, so the user sees this one line.
    try:
      data = paths.as_path(path).read_bytes()
    except Exception as e:  # pylint: disable=broad-except
      # OSError locally; cloud back-ends raise their own types.
      raise ValueError(f'{self.info.name}: cannot read image {path} ({type(e).__name__}: '
                       f'{_first_line(e)}); check that the file is there and readable, or '
                       'delete it') from e
    return decode.EncodedImage(data, name=path, dataset=self.info.name)

  def _image(self, index: int) -> np.ndarray:
    return self._read(index).decode()

  def record_for_crop(self, index: int) -> dict:
    """The record with its image still encoded (`decode.EncodedImage`): the training crop
    decodes only what it needs (JPEG at reduced scale)."""
    index = int(index)
    return {'image': self._read(index), 'label': int(self.labels[index])}


def _first_line(error: Exception) -> str:
  text = str(error)
  return text.splitlines()[0] if text else ''


def check_every_class_trained(source: Source, what_to_do: str) -> None:
  """Raises ValueError naming the classes of a train source that have no image.

  The balanced losses use log(pi_y) of every class (minus infinity for an empty class), and
  a class without a training image cannot be learned by any loss.
  """
  counts = np.asarray(source.class_counts)
  empty = np.flatnonzero(counts == 0)
  if not len(empty):
    return
  names = ', '.join(f'{int(c)} {source.class_names[c]!r}' for c in empty[:5])
  more = f' and {len(empty) - 5} more' if len(empty) > 5 else ''
  where = f' ({source.origin})' if source.origin else ''
  raise ValueError(
      f'{source.info.name} train{where}: {len(empty)} of {source.num_classes} classes have no '
      f'training image: {names}{more}; every class needs at least one (the balanced losses '
      f'use log of its share): {what_to_do}')
