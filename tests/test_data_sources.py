"""Dataset sources: real Fashion-MNIST-LT, fake TFDS CIFAR / ImageNet (OLTR), image folders."""
import dataclasses
import gzip
import os

import ml_collections
import numpy as np
import pytest

from livt_jax.data import fashion_mnist
from livt_jax.data import longtail
from livt_jax.data import oltr
from livt_jax.data import registry
from livt_jax.data import sources
from tests.fakes import image_folder_fakes
from tests.fakes import tfds_fakes


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
  # Label scans are cached; keep them out of the home directory.
  monkeypatch.setenv('LIVT_CACHE_DIR', str(tmp_path / 'cache'))


def dataset_config(name, **overrides):
  c = ml_collections.ConfigDict(dict(
      name=name, data_dir=None, split_dir=None, imbalance=100.0, class_order='natural',
      class_order_seed=0, subset_seed=0, num_classes=None, read_threads=2,
      prefetch_buffer=2, many_threshold=100, few_threshold=20))
  c.update(overrides)
  return c


# ----------------------------------------------------------------------- Fashion-MNIST-LT


def test_fashion_mnist_lt_real_counts():
  # Real data: fails with the loader's clear message (not a skip) when the package is absent.
  train = sources.load_source(dataset_config('fashion_mnist_lt'), 'train')
  sizes = longtail.lt_class_sizes(6000, 10, 100)
  assert len(train) == 14_886
  np.testing.assert_array_equal(train.class_counts, sizes)
  record = train[0]
  assert record['image'].shape == (28, 28, 1) and record['image'].dtype == np.uint8
  test = sources.load_source(dataset_config('fashion_mnist_lt'), 'test')
  assert len(test) == 10_000 and test.class_counts is None
  np.testing.assert_array_equal(test.split_class_counts, [1000] * 10)
  assert train.class_names[6] == 'Shirt' and train.info.train_size == 14_886


def test_fashion_mnist_lt_shuffled_order_and_seed():
  cfg = dataset_config('fashion_mnist_lt', class_order='shuffled', class_order_seed=2,
                       imbalance=10.0)
  train = sources.load_source(cfg, 'train')
  order = longtail.class_order_permutation('shuffled', 10, 2)
  sizes = longtail.lt_class_sizes(6000, 10, 10)
  assert [train.class_counts[c] for c in order] == sizes


def test_fashion_mnist_missing_names_both_ways(tmp_path, monkeypatch):
  monkeypatch.setattr(fashion_mnist, 'SYSTEM_IDX_DIR', str(tmp_path / 'nowhere'))
  with pytest.raises(FileNotFoundError) as e:
    sources.load_source(dataset_config('fashion_mnist_lt', data_dir=str(tmp_path)), 'train')
  message = str(e.value)
  assert 'apt-get install -y dataset-fashion-mnist' in message
  assert 'TFDS' in message and str(tmp_path) in message


def test_fashion_mnist_malformed_idx_names_the_file(tmp_path, monkeypatch):
  monkeypatch.setattr(fashion_mnist, 'SYSTEM_IDX_DIR', str(tmp_path / 'nowhere'))
  for stem in ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte',
               't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'):
    with gzip.open(tmp_path / f'{stem}.gz', 'wb') as f:
      f.write(b'\x00\x00\x08\x03not an idx file')
  with pytest.raises(ValueError, match='train-images-idx3-ubyte.gz'):
    sources.load_source(dataset_config('fashion_mnist_lt', data_dir=str(tmp_path)), 'train')


def test_no_val_split_is_a_clear_error():
  with pytest.raises(ValueError, match='fashion_mnist_lt has no validation split'):
    sources.load_source(dataset_config('fashion_mnist_lt'), 'val')
  with pytest.raises(ValueError, match='split='):
    sources.load_source(dataset_config('fashion_mnist_lt'), 'training')


def test_num_classes_mismatch():
  with pytest.raises(ValueError, match='dataset.num_classes=5'):
    sources.load_source(dataset_config('fashion_mnist_lt', num_classes=5), 'test')


# ------------------------------------------------------------------- CIFAR-LT (fake TFDS)


@pytest.fixture(scope='module')
def cifar_dir(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  tfds_fakes.build_cifar(data_dir, 'cifar10', num_classes=10, train_per_class=40)
  return data_dir


def test_cifar10_lt_from_tfds_array_record(cifar_dir, monkeypatch):
  # The fake has 40 images per class; scale n_max down (the published sizes are checked
  # through lt_class_sizes in test_data_longtail.py).
  info = dataclasses.replace(registry.get_info('cifar10_lt'), lt_n_max=40)
  monkeypatch.setitem(registry._INFOS, 'cifar10_lt', info)  # pylint: disable=protected-access
  cfg = dataset_config('cifar10_lt', data_dir=cifar_dir, imbalance=10.0)
  train = sources.load_source(cfg, 'train')
  sizes = longtail.lt_class_sizes(40, 10, 10)
  np.testing.assert_array_equal(train.class_counts, sizes)
  assert len(train) == sum(sizes) == train.info.train_size
  # Each kept record's label and pixels come from the same underlying TFDS record.
  for i in range(0, len(train), 17):
    record = train.base[int(train.record_indices[i])]
    generated = int(record['id'].decode().split('_')[1])
    assert train[i]['label'] == record['label'] == generated % 10
    np.testing.assert_array_equal(train[i]['image'], tfds_fakes.marked_image(generated))
  test = sources.load_source(cfg, 'test')
  assert len(test) == 50 and test.class_counts is None
  again = sources.load_source(cfg, 'train')  # Second load reads the cached label scan.
  np.testing.assert_array_equal(again.record_indices, train.record_indices)


def test_cifar_source_through_the_pipelines(cifar_dir):
  from livt_jax import config_defaults  # pylint: disable=g-import-not-at-top
  from livt_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  cfg = dataset_config('cifar10_lt', data_dir=cifar_dir)
  test = sources.load_source(cfg, 'test')
  info = registry.get_info('cifar10_lt')
  bft = config_defaults.get_base_config().bft
  bft.image_size = 32
  it = pipeline.train_iterator(test, stage='bft', stage_config=bft, dataset_info=info,
                               global_batch_size=16, seed=0)
  batch = next(it)
  assert batch['image'].shape == (16, 32, 32, 3) and np.isfinite(batch['image']).all()
  batches = list(pipeline.eval_batches(test, dataset_info=info, image_size=32,
                                       global_batch_size=16))
  labels = np.concatenate([b['label'][b['mask'] == 1] for b in batches])
  np.testing.assert_array_equal(labels, test.labels)


@pytest.mark.parametrize('name, split', [('cifar100_lt', 'train'), ('cifar10_lt', 'test'),
                                         ('inat18', 'train'), ('imagenet_lt', 'val')])
def test_missing_tfds_data(tmp_path, name, split):
  cfg = dataset_config(name, data_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError) as e:
    sources.load_source(cfg, split)
  message = str(e.value)
  assert name in message and str(tmp_path) in message and 'tfds build' in message


# ------------------------------------------------ ImageNet-LT via OLTR lists (fake TFDS)


@pytest.fixture(scope='module')
def imagenet_oltr(tmp_path_factory):
  """An imagenet2012 fake plus OLTR-format lists over it: classes 0-3 carry the test, the
  other 996 classes one training image each (every class needs one, as in ImageNet-LT)."""
  data_dir = str(tmp_path_factory.mktemp('tfds_in'))
  split_dir = tmp_path_factory.mktemp('oltr')
  wnids = [f'n0000000{c}' for c in range(4)]
  train_names = [f'{wnids[i % 4]}_{i}.JPEG' for i in range(40)]
  rest = [(f'n{c:08d}_0.JPEG', c) for c in range(4, 1000)]
  val_names = [f'ILSVRC2012_val_{i:08d}.JPEG' for i in range(12)]
  tfds_fakes.build_imagenet2012(data_dir, train_names + [n for n, _ in rest],
                                [i % 4 for i in range(40)] + [c for _, c in rest],
                                val_names, [i % 4 for i in range(12)])
  lists = {
      # LT train: class c < 4 keeps 8 >> c images; val: 1 other train image per class.
      'train': [(f'train/{wnids[i % 4]}/{train_names[i]}', i % 4)
                for i in range(40) if i // 4 < (8 >> (i % 4))]
               + [(f'train/{n.split("_")[0]}/{n}', c) for n, c in rest],
      'val': [(f'train/{wnids[c]}/{train_names[36 + c]}', c) for c in range(4)],
      'test': [(f'val/{name}', i % 4) for i, name in enumerate(val_names)],
  }
  for split, lines in lists.items():
    (split_dir / f'ImageNet_LT_{split}.txt').write_text(
        ''.join(f'{p} {label}\n' for p, label in lines))
  return data_dir, str(split_dir), lists


def test_imagenet_lt_oltr_mapping(imagenet_oltr):
  data_dir, split_dir, lists = imagenet_oltr
  cfg = dataset_config('imagenet_lt', data_dir=data_dir, split_dir=split_dir)
  train = sources.load_source(cfg, 'train')
  assert len(train) == len(lists['train'])
  np.testing.assert_array_equal(train.class_counts[:4], [8, 4, 2, 1])
  np.testing.assert_array_equal(train.class_counts[4:], 1)
  for i, (path, label) in list(enumerate(lists['train']))[:20] + [(len(train) - 1,
                                                                  lists['train'][-1])]:
    record = train.base[int(train.record_indices[i])]
    assert record['file_name'].decode() == os.path.basename(path)
    assert train[i]['label'] == label
    np.testing.assert_array_equal(train[i]['image'], record['image'])
  val = sources.load_source(cfg, 'val')
  test = sources.load_source(cfg, 'test')
  assert len(val) == 4 and len(test) == 12
  assert test.base.dataset_info.splits['validation'].num_examples == 12


def test_oltr_errors(imagenet_oltr, tmp_path):
  data_dir, split_dir, _ = imagenet_oltr
  with pytest.raises(FileNotFoundError, match='ImageNet_LT_train.txt'):
    sources.load_source(dataset_config('imagenet_lt', data_dir=data_dir,
                                       split_dir=str(tmp_path)), 'train')
  (tmp_path / 'ImageNet_LT_train.txt').write_text('train/n0/missing_1.JPEG 0\n')
  with pytest.raises(ValueError, match='missing_1.JPEG'):
    sources.load_source(dataset_config('imagenet_lt', data_dir=data_dir,
                                       split_dir=str(tmp_path)), 'train')
  (tmp_path / 'ImageNet_LT_val.txt').write_text('only_a_path\n')
  with pytest.raises(ValueError, match='ImageNet_LT_val.txt:1'):
    sources.load_source(dataset_config('imagenet_lt', data_dir=data_dir,
                                       split_dir=str(tmp_path)), 'val')
  with pytest.raises(FileNotFoundError, match='split_dir'):
    sources.load_source(dataset_config('places_lt', data_dir=data_dir), 'train')


def test_imagenet_lt_tfds_missing_names_both_ways(tmp_path):
  with pytest.raises(FileNotFoundError) as e:
    sources.load_source(dataset_config('imagenet_lt', data_dir=str(tmp_path)), 'train')
  assert 'imagenet_lt' in str(e.value) and 'split_dir' in str(e.value)


def test_oltr_places_style_paths():
  # Places records keep class folders (bare file names repeat across classes).
  records = ['data_256/a/airfield/00000001.jpg', 'data_256/a/alley/00000001.jpg',
             'val_256/Places365_val_00000007.jpg']
  listed = ['/a/alley/00000001.jpg', 'data_256/a/airfield/00000001.jpg',
            'val_256/Places365_val_00000007.jpg']
  np.testing.assert_array_equal(oltr.match_paths(listed, records, 'places_lt', 'x.txt'),
                                [1, 0, 2])
  with pytest.raises(ValueError, match='1 of 1'):
    oltr.match_paths(['/b/alley/00000001.jpg'], records, 'places_lt', 'x.txt')


# ------------------------------------------------------------------------- image folders


def test_image_folder(tmp_path):
  image_folder_fakes.write_image_folder(
      str(tmp_path), {'train': {'cat': 3, 'ant': 2}, 'test': {'ant': 1, 'cat': 2}})
  cfg = dataset_config('image_folder', data_dir=str(tmp_path))
  train = sources.load_source(cfg, 'train')
  assert train.class_names == ['ant', 'cat'] and train.num_classes == 2
  np.testing.assert_array_equal(train.class_counts, [2, 3])
  assert train[0]['image'].shape == (16, 20, 3) and train[0]['image'].dtype == np.uint8
  test = sources.load_source(cfg, 'test')
  assert len(test) == 3 and test.info.test_size == 3
  with pytest.raises(FileNotFoundError, match='val'):
    sources.load_source(cfg, 'val')


def test_image_folder_corrupt_and_missing(tmp_path):
  paths = image_folder_fakes.write_image_folder(
      str(tmp_path), {'train': {'a': 2}, 'test': {'a': 1}})
  with open(paths['train'][1], 'wb') as f:
    f.write(b'not a png')
  train = sources.load_source(dataset_config('image_folder', data_dir=str(tmp_path)), 'train')
  train[0]  # pylint: disable=pointless-statement
  with pytest.raises(ValueError, match=os.path.basename(paths['train'][1])):
    train[1]  # pylint: disable=pointless-statement
  with pytest.raises(FileNotFoundError, match='is not a directory'):
    sources.load_source(dataset_config('image_folder', data_dir=str(tmp_path / 'x')), 'train')


def test_class_counts_json_round_trip(tmp_path):
  path = str(tmp_path / 'sub' / 'class_counts.json')
  sources.save_class_counts(path, np.array([5, 3, 1]), ['a', 'b', 'c'])
  np.testing.assert_array_equal(sources.load_class_counts(path), [5, 3, 1])
  assert sources.load_class_names(path) == ['a', 'b', 'c']
  with pytest.raises(FileNotFoundError, match='nope.json'):
    sources.load_class_counts(str(tmp_path / 'nope.json'))
  (tmp_path / 'bad.json').write_text('{')
  with pytest.raises(ValueError, match='bad.json'):
    sources.load_class_counts(str(tmp_path / 'bad.json'))
