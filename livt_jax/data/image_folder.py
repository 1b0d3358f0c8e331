"""A folder of images: `data_dir/{train,val,test}/<class>/<image>`, local or gs://...

Class ids are the sorted class folder names of `train`. Images are decoded with PIL when
read; a file that does not decode raises an error naming it (see `source_base.FileSource`).
"""
import dataclasses
from typing import Optional

import numpy as np

from livt_jax import paths as paths_lib
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


def load(data_dir: Optional[str], split: str) -> source_base.FileSource:
  """The split's images; FileNotFoundError / ValueError naming the path when absent."""
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
  directory = _split_dir(data_dir, split)
  if directory is None:
    names = ' or '.join(paths_lib.join(data_dir, d) for d in _SPLIT_DIRS[split])
    raise FileNotFoundError(f'image_folder: split {split!r} needs the folder {names}')
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
  num_train = (len(paths) if split == 'train' else None)
  info = dataclasses.replace(
      registry.get_info('image_folder'), num_classes=len(class_names), train_size=num_train,
      has_val=_split_dir(data_dir, 'val') is not None)
  if split == 'test':
    info = dataclasses.replace(info, test_size=len(paths))
  return source_base.FileSource(paths, info=info, split=split,
                                labels=np.asarray(labels), class_names=class_names,
                                origin=directory)
