"""OLTR split files (Liu et al. 2019): `<Prefix>_LT_{train,val,test}.txt`, lines `path label`.

ImageNet-LT and Places-LT are defined by these lists over the full ImageNet-2012 / Places365
sets. We map each listed path onto the TFDS record with the same file name once, giving an
index array over the underlying array_record data.
"""
from typing import Optional, Sequence

import numpy as np

from livt_jax.runtime import paths

# Leading folders that differ between the OLTR lists and TFDS file names; they carry no
# identity (e.g. 'train/n01440764/n01440764_190.JPEG' vs TFDS 'n01440764_190.JPEG').
_SPLIT_FOLDERS = ('train', 'val', 'test', 'data_256', 'val_256', 'test_256')


def split_file(split_dir: str, prefix: str, split: str) -> str:
  """The list's path (a string; a gs://... split_dir stays a URI)."""
  return paths.join(split_dir, f'{prefix}_LT_{split}.txt')


def read_split_file(path: str, dataset: str,
                    num_classes: Optional[int] = None) -> tuple[list[str], np.ndarray]:
  """Paths and int labels of one OLTR list; FileNotFoundError / ValueError naming the file.

  With `num_classes`, a label outside [0, num_classes) is an error naming its line.
  """
  if not paths.is_file(path):
    raise FileNotFoundError(
        f'{dataset}: OLTR split file {path} not found; put the ImageNet_LT_*/Places_LT_*.txt '
        'lists (from the OLTR release) in dataset.split_dir')
  try:
    text = paths.as_path(path).read_text()
  except UnicodeDecodeError as e:
    raise ValueError(f'{dataset}: OLTR split file {path} is not a text file ({e}); replace it '
                     'with the list from the OLTR release') from e
  listed, labels = [], []
  for line_no, line in enumerate(text.splitlines(), 1):
    fields = line.split()
    if not fields:
      continue
    if len(fields) != 2 or not fields[1].lstrip('-').isdigit():
      raise ValueError(
          f'{dataset}: {path}:{line_no}: expected "<image path> <class id>", got {line!r}; '
          'fix or delete the line (or replace the file with the list from the OLTR release)')
    label = int(fields[1])
    if num_classes is not None and not 0 <= label < num_classes:
      raise ValueError(
          f'{dataset}: {path}:{line_no}: class id {label} is outside [0, {num_classes}) '
          f'(line {line.strip()!r}); {dataset} has {num_classes} classes: fix the line, or use '
          'the list of this dataset')
    listed.append(fields[0])
    labels.append(label)
  if not listed:
    raise ValueError(f'{dataset}: OLTR split file {path} is empty; replace it with the list '
                     'from the OLTR release')
  return listed, np.asarray(labels, dtype=np.int32)


def normalize(path: str) -> str:
  """Forward slashes, no leading '/' nor split folder: the comparable part of a path."""
  parts = [p for p in path.replace('\\', '/').split('/') if p]
  while len(parts) > 1 and parts[0] in _SPLIT_FOLDERS:
    parts = parts[1:]
  return '/'.join(parts)


def match_paths(listed: Sequence[str], record_names: Sequence[str], dataset: str,
                list_path: str) -> np.ndarray:
  """Record index of each listed path.

  A listed path matches the record whose normalized name equals its longest matching
  suffix: ImageNet records are bare file names (unique), Places train records keep their
  class folders ('a/airfield/00000001.jpg'), where the bare name would be ambiguous.

  Raises:
    ValueError: on duplicate record names or listed paths without a record.
  """
  index = {}
  for i, name in enumerate(record_names):
    key = normalize(name)
    if key in index:
      raise ValueError(f'{dataset}: two TFDS records are named {key!r}; cannot map {list_path}')
    index[key] = i
  out = np.empty(len(listed), dtype=np.int64)
  missing = []
  for j, path in enumerate(listed):
    parts = normalize(path).split('/')
    hit = next((index[k] for k in ('/'.join(parts[s:]) for s in range(len(parts)))
                if k in index), None)
    if hit is None:
      missing.append(path)
    else:
      out[j] = hit
  if missing:
    raise ValueError(
        f'{dataset}: {len(missing)} of {len(listed)} paths of {list_path} have no TFDS record '
        f'(first: {missing[:3]}); is dataset.data_dir the full dataset the lists refer to?')
  return out
