"""`load_source(config.dataset, split)`: one random-access source per dataset and split.

LT training subsets are index arrays computed once over the underlying records (IDX
arrays or TFDS array_record), never per-epoch filters.
"""
import dataclasses
import json
import logging
from typing import Optional, Sequence

import numpy as np

from livt_jax.data import fashion_mnist
from livt_jax.data import image_folder
from livt_jax.data import longtail
from livt_jax.data import oltr
from livt_jax.runtime import paths
from livt_jax.data import registry
from livt_jax.data import source_base
from livt_jax.data import tfds_sources

Source = source_base.Source
SPLITS = source_base.SPLITS


def load_source(dataset_config, split: str) -> source_base.Source:
  """The records of `split` ('train', 'val' or 'test') of `dataset_config.name`.

  Args:
    dataset_config: `config.dataset` (name, data_dir, split_dir, imbalance, class_order,
      class_order_seed, subset_seed, num_classes).
    split: 'train' (the LT training set), 'val' (only where the dataset has one) or 'test'.

  Returns:
    A `Source`; the train source carries `class_counts`.

  Raises:
    ValueError: unknown dataset or split, malformed data, labels outside [0, C), a class
      without training images, or num_classes mismatch.
    FileNotFoundError: data not found (the message names the path and the fix).
  """
  info = registry.get_info(dataset_config.name)
  if split not in SPLITS:
    raise ValueError(f'split={split!r} is not one of {", ".join(SPLITS)}')
  if (split == 'val' and info.name != 'image_folder'
      and not registry.has_val_split(info, _val_per_class(dataset_config))):
    if info.lt_n_max:
      raise ValueError(f'{info.name} has no validation split unless one is held out of the '
                       'unused training images: set --config.dataset.val_per_class (e.g. 20)')
    raise ValueError(f'{info.name} has no validation split; evaluate on split="test"')
  loader = {
      'fashion_mnist_lt': _fashion_mnist,
      'cifar10_lt': _cifar,
      'cifar100_lt': _cifar,
      'imagenet_lt': _imagenet_lt,
      'inat18': _inat18,
      'places_lt': _places_lt,
      'image_folder': lambda cfg, split, info: image_folder.load(
          cfg.data_dir, split, _val_per_class(cfg), int(getattr(cfg, 'subset_seed', 0) or 0)),
  }[info.name]
  source = loader(dataset_config, split, info)
  expected = getattr(dataset_config, 'num_classes', None)
  if expected is not None and expected != source.num_classes:
    where = f' ({source.origin})' if source.origin else ''
    raise ValueError(
        f'config.dataset.num_classes={expected}: the {info.name} data{where} has '
        f'{source.num_classes} classes; drop the override (the class count is read from the '
        f'data) or point dataset.data_dir at the data with {expected} classes')
  if split == 'train':
    source_base.check_every_class_trained(source, _empty_class_advice(dataset_config, info,
                                                                      source))
  return source


def _empty_class_advice(cfg, info, source) -> str:
  if info.name == 'image_folder':
    return (f'put images into {source.origin}/<class>/ or delete the empty class folders, '
            'so the class list changes')
  if info.lt_n_max:
    return ('lower --config.dataset.imbalance (the smallest class keeps '
            'n_max / imbalance images), or check that the data is the full balanced set')
  if cfg.split_dir and info.name in ('imagenet_lt', 'places_lt'):
    return (f'add lines for these class ids to {source.origin}, or point dataset.split_dir at '
            'the complete OLTR lists')
  return f'the data in {source.origin} looks incomplete: rebuild or re-download it'


def has_val_split(dataset_config) -> bool:
  """Whether split 'val' exists (`registry.has_val_split`; for an image folder: a val/ folder
  or `dataset.val_per_class` > 0, `image_folder.has_val`, which looks at the folder)."""
  if dataset_config.name == 'image_folder':
    return image_folder.has_val(dataset_config.data_dir, _val_per_class(dataset_config))
  return registry.has_val_split(registry.get_info(dataset_config.name),
                                _val_per_class(dataset_config))


def _val_per_class(cfg) -> int:
  return int(getattr(cfg, 'val_per_class', 0) or 0)


def _lt_subset(cfg, labels: np.ndarray, info: registry.DatasetInfo, split: str) -> np.ndarray:
  """Indices into the balanced training records: the LT subset ('train') or the validation
  images held out of what it left unused ('val'; `longtail.lt_split`)."""
  sizes = longtail.lt_class_sizes(info.lt_n_max, info.num_classes, cfg.imbalance)
  order = longtail.class_order_permutation(cfg.class_order, info.num_classes,
                                           cfg.class_order_seed)
  train, val = longtail.lt_split(labels, sizes, order, cfg.subset_seed, _val_per_class(cfg),
                                int(getattr(cfg, 'val_max_per_class', 0) or 0))
  return train if split == 'train' else val


def _test_subset(cfg, labels: np.ndarray, info) -> np.ndarray:
  """The whole (balanced) test split, or with `dataset.test_imbalance` an LT subset of it: the
  training profile and class order, its largest class kept whole (1000 of 1000 images)."""
  gamma = getattr(cfg, 'test_imbalance', None)
  if gamma is None:
    return np.arange(len(labels))
  num_classes = info.num_classes
  n_max = int(np.bincount(labels, minlength=num_classes).min())  # 1000 (CIFAR-100: 100)
  sizes = longtail.lt_class_sizes(n_max, num_classes, gamma)
  if min(sizes) < 1:
    raise ValueError(f'dataset.test_imbalance={gamma} keeps no test image of the smallest class '
                     f'(the largest keeps {sizes[0]}); use at most {sizes[0]}')
  order = longtail.class_order_permutation(cfg.class_order, num_classes, cfg.class_order_seed)
  return longtail.lt_subsample_indices(labels, sizes, order, cfg.subset_seed)


def _with_train_size(info, cfg):
  return dataclasses.replace(info, train_size=registry.lt_train_size(
      info, cfg.imbalance, _val_per_class(cfg)))


def _records_split(split: str) -> str:
  """Our LT train and held-out val sets both come from the balanced training records."""
  return 'train' if split == 'val' else split


def _fashion_mnist(cfg, split, info):
  info = _with_train_size(info, cfg)
  directory = fashion_mnist.find_idx_dir(cfg.data_dir)
  if directory is not None:
    images, labels = fashion_mnist.load_idx_split(directory, _records_split(split))
    origin = f'IDX files in {directory}'
    fashion_mnist.check_labels(labels, directory, _records_split(split))
    keep = (_test_subset(cfg, labels, info) if split == 'test'
            else _lt_subset(cfg, labels, info, split))
    images, labels = images[keep], labels[keep]
    return source_base.ArraySource(np.ascontiguousarray(images), info=info, split=split,
                                   labels=labels, class_names=fashion_mnist.CLASS_NAMES,
                                   origin=origin)
  try:
    return _tfds_lt(cfg, split, info, class_names=fashion_mnist.CLASS_NAMES)
  except FileNotFoundError as e:
    raise fashion_mnist.missing_error(cfg.data_dir, str(e)) from e


def _cifar(cfg, split, info):
  return _tfds_lt(cfg, split, _with_train_size(info, cfg))


def _tfds_lt(cfg, split, info, class_names: Optional[Sequence[str]] = None):
  """A balanced TFDS dataset, LT-subsampled for 'train' (CIFAR, Fashion-MNIST fallback)."""
  records = _records_split(split)
  labels = tfds_sources.scan_fields(info.name, info.tfds_name, records, cfg.data_dir,
                                    ('label',))['label'].astype(np.int32)
  keep = (_test_subset(cfg, labels, info) if split == 'test'
          else _lt_subset(cfg, labels, info, split))
  base = tfds_sources.open_split(info.name, info.tfds_name, records, cfg.data_dir)
  return source_base.RecordSource(
      base, keep, info=info, split=split, labels=labels[keep],
      class_names=class_names or tfds_sources.label_names(base),
      origin=tfds_sources.describe(base, info.tfds_name))


def _whole_split(cfg, info, split, tfds_name, tfds_split):
  """Every record of a TFDS split (benchmarks published as TFDS datasets)."""
  labels = tfds_sources.scan_fields(info.name, tfds_name, tfds_split, cfg.data_dir,
                                    ('label',))['label'].astype(np.int32)
  base = tfds_sources.open_split(info.name, tfds_name, tfds_split, cfg.data_dir)
  return source_base.RecordSource(base, np.arange(len(labels)), info=info, split=split,
                                  labels=labels, class_names=tfds_sources.label_names(base),
                                  origin=tfds_sources.describe(base, tfds_name))


def _oltr(cfg, split, info, *, prefix, tfds_name, name_field):
  """An OLTR list mapped onto the full TFDS dataset by file name."""
  if not cfg.split_dir:
    raise FileNotFoundError(
        f'{info.name}: dataset.split_dir is not set; point it at the folder with '
        f'{prefix}_LT_{{train,val,test}}.txt from the OLTR release')
  list_path = oltr.split_file(cfg.split_dir, prefix, split)
  listed, labels = oltr.read_split_file(list_path, info.name, info.num_classes)
  # OLTR val lists are drawn from the original training images; test is the original val.
  record_split = 'validation' if split == 'test' else 'train'
  scanned = tfds_sources.scan_fields(info.name, tfds_name, record_split, cfg.data_dir,
                                     ('label', name_field))
  indices = oltr.match_paths(listed, scanned[name_field], info.name, list_path)
  disagree = int(np.sum(scanned['label'][indices] != labels))
  if disagree:
    # We train on the list's labels (they define the benchmark); a disagreement only means
    # the TFDS class names may not describe our class ids.
    logging.warning('%s: %d labels of %s differ from the TFDS labels; using the list',
                    info.name, disagree, list_path)
  base = tfds_sources.open_split(info.name, tfds_name, record_split, cfg.data_dir)
  return source_base.RecordSource(base, indices, info=info, split=split, labels=labels,
                                  class_names=tfds_sources.label_names(base), origin=list_path)


def _imagenet_lt(cfg, split, info):
  if cfg.split_dir:  # OLTR lists over imagenet2012.
    return _oltr(cfg, split, info, prefix='ImageNet', tfds_name='imagenet2012',
                 name_field='file_name')
  tfds_split = {'train': 'train', 'val': 'validation', 'test': 'test'}[split]
  try:
    return _whole_split(cfg, info, split, 'imagenet_lt', tfds_split)
  except FileNotFoundError as e:
    raise FileNotFoundError(f'{e}; or set dataset.split_dir to the OLTR ImageNet_LT_*.txt '
                            'lists to use TFDS imagenet2012') from e


def _inat18(cfg, split, info):
  return _whole_split(cfg, info, split, 'i_naturalist2018',
                      {'train': 'train', 'test': 'validation'}[split])


def _places_lt(cfg, split, info):
  return _oltr(cfg, split, info, prefix='Places', tfds_name='places365_small',
               name_field='filename')


def save_class_counts(path: str, counts: Sequence[int], class_names: Sequence[str]) -> None:
  """Writes per-class training counts (JSON) so evaluation can group classes without data."""
  counts = [int(c) for c in counts]
  if len(counts) != len(class_names):
    raise ValueError(f'{len(counts)} counts for {len(class_names)} class names')
  out = paths.as_path(path)  # the workdir may be gs://...
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps({'class_names': [str(n) for n in class_names],
                             'class_counts': counts}))


def load_class_counts(path: str) -> np.ndarray:
  """Per-class training counts written by `save_class_counts`."""
  return np.asarray(_read_counts_file(path)['class_counts'], dtype=np.int64)


def load_class_names(path: str) -> list[str]:
  """Class names written by `save_class_counts`."""
  return list(_read_counts_file(path)['class_names'])


def _read_counts_file(path: str) -> dict:
  if not paths.is_file(path):
    raise FileNotFoundError(f'class counts file {path} not found; the training stage writes '
                            'it into the workdir')
  try:
    data = json.loads(paths.as_path(path).read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f'class counts file {path} is not valid JSON ({e}); delete it, the next '
                     'run with the training data writes it again') from e
  if not isinstance(data, dict) or 'class_counts' not in data or 'class_names' not in data:
    raise ValueError(f'class counts file {path} lacks class_counts / class_names; delete it, '
                     'the next run with the training data writes it again')
  return data
