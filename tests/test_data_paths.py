"""The data side on a cloud file system: data_dir, split_dir, checkpoints and class counts on
`mock://bucket/...` (tests/cloud_fakes.py), a scheme only etils.epath knows.

Code that used `os.path` / `open()` on such a path would not find the files (the validation
rejected gs:// data dirs this way) or would create a `mock:` folder in the current directory;
each test ends by checking the current directory is still empty.
"""
import gzip
import os

import numpy as np
import pytest

from cloud_fakes import mock_bucket  # pylint: disable=unused-import
from engine_helpers import tiny_config
from livt_jax import plan
from livt_jax import validate
from livt_jax.data import fashion_mnist
from livt_jax.data import oltr
from livt_jax.runtime import paths
from livt_jax.data import registry
from livt_jax.data import sources
from tests.fakes import image_folder_fakes
from tests.fakes import tfds_fakes
from test_bad_input import dataset_config  # pylint: disable=g-bad-import-order




def test_local_paths_are_made_absolute_and_uris_left_alone(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert paths.absolute('gs://bucket/tfds') == 'gs://bucket/tfds'
  assert paths.absolute('data') == str(tmp_path / 'data')
  assert paths.join('gs://bucket/x', 'ImageNet_LT_train.txt') == (
      'gs://bucket/x/ImageNet_LT_train.txt')
  assert paths.join('~', 'a') == os.path.join(os.path.expanduser('~'), 'a')


def test_validate_reads_the_bucket(mock_bucket):  # pylint: disable=redefined-outer-name
  for sub in ('tfds', 'runs/a/mgp/checkpoints', 'runs/a/bft/checkpoints'):
    (mock_bucket.root / sub).mkdir(parents=True)
  url = mock_bucket.url
  config = tiny_config(**{'stages': 'bft,evaluate', 'dataset.data_dir': f'{url}/tfds',
                          'bft.init_from': f'{url}/runs/a/mgp/checkpoints'})
  assert validate.validate(config, 8, check_data=True) == ('bft', 'evaluate')
  config = tiny_config(**{'stages': 'evaluate', 'dataset.data_dir': f'{url}/tfds',
                          'evaluate.checkpoint': f'{url}/runs/a/bft/checkpoints'})
  assert validate.validate(config, 8, check_data=True) == ('evaluate',)
  assert plan.data_location_note(config) == 'present'
  # ... and reports what is not there.
  for field in ('dataset.data_dir', 'bft.init_from', 'evaluate.checkpoint'):
    config = tiny_config(**{'stages': 'bft' if field == 'bft.init_from' else 'evaluate',
                            'evaluate.checkpoint': f'{url}/runs/a/bft/checkpoints',
                            field: f'{url}/nope'})
    with pytest.raises(validate.ConfigError, match=f"config.{field}='{url}/nope': no such"):
      validate.validate(config, 8, check_data=True)
  mock_bucket.assert_cwd_untouched()


def test_an_unreadable_bucket_is_one_line(mock_bucket, monkeypatch):  # pylint: disable=redefined-outer-name
  import cloud_fakes  # pylint: disable=g-import-not-at-top

  def denied(self, path):
    raise PermissionError(f'403 no storage.objects.list access to {path}\nmore detail')
  monkeypatch.setattr(cloud_fakes._MockBackend, 'isdir', denied)  # pylint: disable=protected-access
  config = tiny_config(**{'dataset.name': 'cifar10_lt', 'dataset.data_dir':
                          f'{mock_bucket.url}/tfds'})
  with pytest.raises(validate.ConfigError) as e:
    validate.validate(config, 8, check_data=True)
  assert str(e.value) == (
      f"config.dataset.data_dir='{mock_bucket.url}/tfds': cannot access {mock_bucket.url}/tfds "
      f'(PermissionError: 403 no storage.objects.list access to {mock_bucket.url}/tfds); check '
      'the path and that this machine may read it')
  assert 'not readable from here' in plan.data_location_note(config)


def test_image_folder_in_a_bucket(mock_bucket):  # pylint: disable=redefined-outer-name
  image_folder_fakes.write_image_folder(
      str(mock_bucket.root / 'images'), {'train': {'cat': 5, 'ant': 4}, 'test': {'ant': 1}})
  cfg = dataset_config('image_folder', data_dir=f'{mock_bucket.url}/images')
  train = sources.load_source(cfg, 'train')
  assert train.class_names == ['ant', 'cat']
  np.testing.assert_array_equal(train.class_counts, [4, 5])
  assert train.paths[0] == f'{mock_bucket.url}/images/train/ant/img_000.jpg'
  image = train[0]['image']
  assert image.shape == (16, 20, 3) and image.dtype == np.uint8
  assert len(sources.load_source(cfg, 'test')) == 1
  config = tiny_config(**{'dataset.name': 'image_folder', 'dataset.data_dir': cfg.data_dir,
                          'mgp.batch_size': 8, 'bft.batch_size': 8,
                          'dataset.val_per_class': 0})  # the config's 100 would be held out
  assert validate.validate(config, 8, check_data=True)
  assert '2 classes, 9 training images' in plan.describe(config, 8)  # the dry run reads it
  mock_bucket.assert_cwd_untouched()


def test_oltr_split_files_in_a_bucket(mock_bucket):  # pylint: disable=redefined-outer-name
  (mock_bucket.root / 'lists').mkdir()
  (mock_bucket.root / 'lists' / 'Places_LT_train.txt').write_text(
      'data_256/a/airfield/00000001.jpg 0\n/a/alley/00000002.jpg 1\n')
  path = oltr.split_file(f'{mock_bucket.url}/lists', 'Places', 'train')
  assert path == f'{mock_bucket.url}/lists/Places_LT_train.txt'
  listed, labels = oltr.read_split_file(path, 'places_lt', 365)
  assert listed == ['data_256/a/airfield/00000001.jpg', '/a/alley/00000002.jpg']
  np.testing.assert_array_equal(labels, [0, 1])
  with pytest.raises(FileNotFoundError, match=f'{mock_bucket.url}/lists/Places_LT_val.txt'):
    oltr.read_split_file(oltr.split_file(f'{mock_bucket.url}/lists', 'Places', 'val'),
                         'places_lt')
  # Through the loader: the list is read from the bucket, then TFDS (which goes through epath
  # too) looks for its data there.
  cfg = dataset_config('places_lt', data_dir=f'{mock_bucket.url}/tfds',
                       split_dir=f'{mock_bucket.url}/lists')
  with pytest.raises(FileNotFoundError, match=f'TFDS .* in {mock_bucket.url}/tfds'):
    sources.load_source(cfg, 'train')
  mock_bucket.assert_cwd_untouched()


def test_class_counts_in_a_bucket(mock_bucket):  # pylint: disable=redefined-outer-name
  path = f'{mock_bucket.url}/runs/a/class_counts.json'
  sources.save_class_counts(path, np.array([5, 3, 1]), ['a', 'b', 'c'])
  assert (mock_bucket.root / 'runs' / 'a' / 'class_counts.json').is_file()
  np.testing.assert_array_equal(sources.load_class_counts(path), [5, 3, 1])
  assert sources.load_class_names(path) == ['a', 'b', 'c']
  with pytest.raises(FileNotFoundError, match=f'{mock_bucket.url}/runs/b/class_counts.json'):
    sources.load_class_counts(f'{mock_bucket.url}/runs/b/class_counts.json')
  mock_bucket.assert_cwd_untouched()


def test_fashion_mnist_idx_files_in_a_bucket(mock_bucket, monkeypatch):  # pylint: disable=redefined-outer-name
  monkeypatch.setattr(fashion_mnist, 'SYSTEM_IDX_DIR', str(mock_bucket.cwd / 'nowhere'))
  idx = mock_bucket.root / 'fashion'
  idx.mkdir()
  for prefix, n in (('train', 6), ('t10k', 3)):
    images = np.arange(n * 28 * 28, dtype=np.uint64).astype(np.uint8).reshape(n, 28, 28)
    header = (2051).to_bytes(4, 'big') + b''.join(d.to_bytes(4, 'big') for d in images.shape)
    (idx / f'{prefix}-images-idx3-ubyte').write_bytes(header + images.tobytes())  # plain
    with gzip.open(idx / f'{prefix}-labels-idx1-ubyte.gz', 'wb') as f:  # gzipped
      f.write((2049).to_bytes(4, 'big') + n.to_bytes(4, 'big') + bytes(range(n)))
  directory = fashion_mnist.find_idx_dir(f'{mock_bucket.url}/fashion')
  assert directory == f'{mock_bucket.url}/fashion'
  images, labels = fashion_mnist.load_idx_split(directory, 'train')
  assert images.shape == (6, 28, 28, 1) and list(labels) == [0, 1, 2, 3, 4, 5]
  config = tiny_config(**{'dataset.data_dir': directory})
  assert plan.data_location_note(config) == 'present'
  mock_bucket.assert_cwd_untouched()


def test_tfds_label_scan_cache_in_a_bucket(mock_bucket, tmp_path, monkeypatch):  # pylint: disable=redefined-outer-name
  import dataclasses  # pylint: disable=g-import-not-at-top
  data_dir = str(tmp_path / 'tfds')
  tfds_fakes.build_cifar(data_dir, 'cifar10', num_classes=10, train_per_class=4,
                         test_per_class=1)
  info = dataclasses.replace(registry.get_info('cifar10_lt'), lt_n_max=4)
  monkeypatch.setitem(registry._INFOS, 'cifar10_lt', info)  # pylint: disable=protected-access
  monkeypatch.setenv('LIVT_CACHE_DIR', f'{mock_bucket.url}/cache')
  cfg = dataset_config('cifar10_lt', data_dir=data_dir, imbalance=4.0)
  first = sources.load_source(cfg, 'train')
  cached = list((mock_bucket.root / 'cache' / 'cifar10').iterdir())
  assert len(cached) == 1 and cached[0].name.startswith('train-')
  again = sources.load_source(cfg, 'train')  # from the cache in the bucket
  np.testing.assert_array_equal(again.record_indices, first.record_indices)
  mock_bucket.assert_cwd_untouched()
