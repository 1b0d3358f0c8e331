"""A folder of images: `data_dir/{train,val,test}/<class>/<image>`, local or gs://...

Class ids are the sorted class folder names of `train`. Images are decoded with PIL when
read; a file that does not decode raises an error naming it (see `source_base.FileSource`).

The 'val' split is the folder `val/` (or `validation/`) where there is one (`dataset.
val_per_class` is then unused: the dry run says which applies). Without it,
`dataset.val_per_class` > 0 holds that many images of every class out of `train/` (a seeded
draw, `holdout_split`): they form 'val' and are not trained on. With neither there is no 'val'
split (`has_val`), and the BFT val evaluator is left out with one line, as for iNat18.
"""
import dataclasses
from typing import Optional, Sequence

import numpy as np

from livt_jax.runtime import paths as paths_lib
from livt_jax.data import registry
from livt_jax.data import source_base

EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.ppm', '.tif', '.tiff')
_SPLIT_DIRS = {'train': ('train',), 'val': ('val', 'validation'), 'test': ('test',)}


def _split_dir(root: str, split: str) -> Optional[str]:
  for name in _SPLIT_DIRS[split]:
    path = paths_lib.join(root, name)
    if paths_lib.is_dir(path):
      return path
  return None


def _class_dirs(path: str) -> list[str]:
  return sorted(p.name for p in paths_lib.as_path(path).iterdir() if p.is_dir())


def _image_names(class_dir: str) -> list[str]:
  return sorted(p.name for p in paths_lib.as_path(class_dir).iterdir()
                if p.name.lower().endswith(EXTENSIONS))


def has_val_folder(data_dir: Optional[str]) -> bool:
  return bool(data_dir) and paths_lib.is_dir(data_dir) and _split_dir(data_dir, 'val') is not None


def has_val(data_dir: Optional[str], val_per_class: int) -> bool:
  """Whether split 'val' exists: a val/ folder, or images held out of train/."""
  return val_per_class > 0 or has_val_folder(data_dir)


def val_note(data_dir: Optional[str], val_per_class: int) -> str:
  """Where 'val' comes from, for the dry run's report."""
  if has_val_folder(data_dir):
    return f'val from {_split_dir(data_dir, "val")}'
  if val_per_class > 0:
    return f'val: {val_per_class} images per class held out of train/ (dataset.val_per_class)'
  return ('no val split (the val evaluator is left out; add a val/ folder or hold one out '
          'with --config.dataset.val_per_class=N)')


def holdout_split(labels: np.ndarray, class_names: Sequence[str], val_per_class: int, seed: int,
                  where: str) -> tuple[np.ndarray, np.ndarray]:
  """(train, val): sorted indices into `labels`; val holds `val_per_class` of every class.

  Each class draws from a generator of its own (seeded by `seed` and the class id), so the
  images held out of one class do not depend on the other classes.

  Raises:
    ValueError: a class with `val_per_class` images or fewer (it would keep none for training).
  """
  labels = np.asarray(labels)
  counts = np.bincount(labels, minlength=len(class_names))
  # An empty class keeps nothing to hold out: the train source's check names it.
  short = np.flatnonzero((counts > 0) & (counts <= val_per_class))
  if len(short):
    names = ', '.join(f'{class_names[c]!r} ({int(counts[c])})' for c in short[:5])
    more = f' and {len(short) - 5} more' if len(short) > 5 else ''
    raise ValueError(
        f'image_folder: dataset.val_per_class={val_per_class} holds out {val_per_class} images '
        f'of every class of {where}, and {len(short)} classes have no more than that: '
        f'{names}{more}; lower it below {int(counts[short].min())}, add a val/ folder next to '
        'train/, or set --config.dataset.val_per_class=0 to train without a val split')
  children = np.random.SeedSequence([seed, 1]).spawn(len(class_names))
  val = np.concatenate([
      np.random.default_rng(children[c]).choice(np.flatnonzero(labels == c),
                                                min(val_per_class, int(counts[c])), replace=False)
      for c in range(len(class_names))]).astype(np.int64)
  train = np.setdiff1d(np.arange(len(labels)), val)
  return train, np.sort(val)


def load(data_dir: Optional[str], split: str, val_per_class: int = 0,
         seed: int = 0) -> source_base.FileSource:
  """The split's images; FileNotFoundError / ValueError naming the path when absent.

  Without a val/ folder, `val_per_class` > 0 images of each class of train/ are held out
  (drawn with `seed`) as split 'val', and split 'train' is the rest.
  """
  if not data_dir or not paths_lib.is_dir(data_dir):
    raise FileNotFoundError(
        f'image_folder: dataset.data_dir={data_dir!r} is not a directory; point it at a '
        'folder with train/<class>/*.jpg and test/<class>/*.jpg')
  train_dir = _split_dir(data_dir, 'train')
  if train_dir is None:
    raise FileNotFoundError(f'image_folder: no {paths_lib.join(data_dir, "train")} folder; '
                            'the class list is read from train/<class>/ sub-folders')
  class_names = _class_dirs(train_dir)
  if not class_names:
    raise FileNotFoundError(f'image_folder: {train_dir} has no class sub-folders; put the '
                            'images of each class into train/<class>/')
  val_dir = _split_dir(data_dir, 'val')
  holdout = val_per_class > 0 and val_dir is None and split in ('train', 'val')
  directory = train_dir if holdout else _split_dir(data_dir, split)
  if directory is None:
    names = ' or '.join(paths_lib.join(data_dir, d) for d in _SPLIT_DIRS[split])
    hint = ('; or hold a val split out of train/ with --config.dataset.val_per_class=N'
            if split == 'val' else '')
    raise FileNotFoundError(f'image_folder: split {split!r} needs the folder {names}{hint}')
  split_classes = class_names if directory == train_dir else _class_dirs(directory)
  unknown = sorted(set(split_classes) - set(class_names))
  if unknown:
    raise ValueError(f'image_folder: {directory} has class folders not in train: {unknown[:5]}; '
                     'every class needs a train/<class>/ folder with images: add it or remove '
                     'these folders')
  paths, labels = [], []
  for label, name in enumerate(class_names):
    if name not in split_classes:
      continue
    class_dir = paths_lib.join(directory, name)
    files = _image_names(class_dir)
    # Plain concatenation: class_dir is already a normalized path string (local or URI), and
    # building an epath per file would cost seconds on a million images.
    paths += [f'{class_dir.rstrip("/")}/{f}' for f in files]
    labels += [label] * len(files)
  if not paths:
    raise FileNotFoundError(f'image_folder: no images ({", ".join(EXTENSIONS)}) under '
                            f'{directory}/<class>/')
  labels = np.asarray(labels, np.int64)
  origin = directory
  if holdout:
    train, val = holdout_split(labels, class_names, val_per_class, seed, directory)
    keep = train if split == 'train' else val
    paths, labels = [paths[i] for i in keep], labels[keep]
    if split == 'val':
      origin = f'{directory}, {val_per_class} per class held out'
  num_train = (len(paths) if split == 'train' else None)
  info = dataclasses.replace(
      registry.get_info('image_folder'), num_classes=len(class_names), train_size=num_train,
      has_val=val_dir is not None or val_per_class > 0)
  if split == 'test':
    info = dataclasses.replace(info, test_size=len(paths))
  if split == 'val':
    info = dataclasses.replace(info, val_size=len(paths))
  return source_base.FileSource(paths, info=info, split=split, labels=labels,
                                class_names=class_names, origin=origin)
