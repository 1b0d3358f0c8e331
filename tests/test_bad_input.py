"""Bad input gives one clear line: the field or file, the bad value, and what to do.

One test per kind of mistake (config values, data, checkpoints), called where the check lives
(`validate.validate`, the data loaders, `checkpointing.restore`); and the real command line for
two of them (a config value; a broken checkpoint, which also goes through the data loading of
`run.run`): exit code 2, one `livt_jax: error:` line on stderr, no traceback.
"""
import concurrent.futures
import gzip
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from livt_jax.engine import checkpointing
from livt_jax.engine import sharding
from livt_jax.engine import train
from livt_jax import validate
from livt_jax.data import fashion_mnist
from livt_jax.data import oltr
from livt_jax.data import pipeline
from livt_jax.data import registry
from livt_jax.data import source_base
from livt_jax.data import sources
from tests.engine_helpers import tiny_config
from tests.fakes import image_folder_fakes

ROOT = os.path.join(os.path.dirname(__file__), '..')


def _config_error(config, check_data=False) -> str:
  with pytest.raises(validate.ConfigError) as e:
    validate.validate(config, 8, check_data)
  message = str(e.value)
  assert '\n' not in message
  return message


def _with(config, **overrides):
  """`config` with `a.b=value` overrides; a value of another type (NaN for an int) replaces
  the sub-dict, as a float on the command line would for a float field."""
  for key, value in overrides.items():
    *parents, leaf = key.split('.')
    node = config
    for p in parents[:-1]:
      node = node[p]
    parent = node[parents[-1]] if parents else node
    try:
      parent[leaf] = value
    except TypeError:
      node[parents[-1]] = ml_collections.ConfigDict({**parent.to_dict(), leaf: value})
  return config


def dataset_config(name, **overrides):
  c = ml_collections.ConfigDict(dict(
      name=name, data_dir=None, split_dir=None, imbalance=100.0, class_order='natural',
      class_order_seed=0, subset_seed=0, num_classes=None))
  c.update(overrides)
  return c


# --------------------------------------------------------------- 1-3: config values


@pytest.mark.parametrize('field, value, expected', [
    ('mgp.epochs', 0, "config.mgp.epochs=0: use a positive number of epochs (to skip mgp, "
                      "leave it out of --config.stages)"),
    ('bft.epochs', -2, 'config.bft.epochs=-2: use a positive number of epochs'),
    ('bft.epochs', float('nan'), 'config.bft.epochs=nan: use a positive number of epochs'),
    ('mgp.batch_size', 0, 'config.mgp.batch_size=0: use a positive global batch size, e.g. '
                          '--config.mgp.batch_size=256'),
    ('bft.batch_size', -128, 'config.bft.batch_size=-128: use a positive global batch size'),
    ('evaluate.batch_size', 0, 'config.evaluate.batch_size=0: use a positive batch size, e.g. '
                               '--config.evaluate.batch_size=1024'),
    ('mgp.base_lr', 0.0, 'config.mgp.base_lr=0.0: use a positive, finite base learning rate '
                         '(it is scaled by batch / 256), e.g. --config.mgp.base_lr=0.00015'),
    ('bft.base_lr', -1e-3, 'config.bft.base_lr=-0.001: use a positive, finite base learning'),
    ('bft.base_lr', float('nan'), 'config.bft.base_lr=nan: use a positive, finite base'),
    ('mgp.base_lr', float('inf'), 'config.mgp.base_lr=inf: use a positive, finite base'),
    ('bft.min_lr', float('nan'), 'config.bft.min_lr=nan: use a finite final learning rate'),
])
def test_non_positive_or_non_finite_schedule_values(field, value, expected):
  assert _config_error(_with(tiny_config(), **{field: value})).startswith(expected)


@pytest.mark.parametrize('field, value, expected', [
    # fashion_mnist_lt: bft 16 epochs, mgp 16
    ('bft.warmup_epochs', 16, 'config.bft.warmup_epochs=16: the warm-up must be shorter than '
                              'bft.epochs=16 (the learning rate would never leave it); use e.g. '
                              '--config.bft.warmup_epochs=1'),
    ('mgp.warmup_epochs', 40, 'config.mgp.warmup_epochs=40: the warm-up must be shorter than '
                              'mgp.epochs=16'),
    ('mgp.warmup_epochs', -1, 'config.mgp.warmup_epochs=-1: use a warm-up of 0 or more epochs'),
])
def test_warmup_must_be_shorter_than_the_stage(field, value, expected):
  assert _config_error(_with(tiny_config(), **{field: value})).startswith(expected)
  assert validate.validate(_with(tiny_config(), **{field: 0}), 8, False)  # 0 is fine


@pytest.mark.parametrize('tau', [float('nan'), float('inf'), -0.5])
def test_tau_must_be_finite_and_non_negative(tau):
  assert _config_error(_with(tiny_config(), **{'bft.tau': tau})) == (
      f'config.bft.tau={tau!r}: use a finite tau >= 0 (1.0 is the paper default; 0 gives '
      'plain BCE)')


def test_head_bias_init_must_be_zero_or_prior():
  assert _config_error(_with(tiny_config(), **{'bft.head_bias_init': 'ones'})) == (
      "config.bft.head_bias_init='ones': use 'zero' or 'prior'")
  assert validate.validate(_with(tiny_config(), **{'bft.head_bias_init': 'prior'}), 8, False)


def test_randaug_on_must_be_host_device_or_auto():
  assert _config_error(_with(tiny_config(), **{'bft.randaug_on': 'gpu'})) == (
      "config.bft.randaug_on='gpu': use 'host', 'device' or 'auto' (the device on GPU/TPU, "
      'the host on CPU)')
  for where in pipeline.RANDAUG_ON:
    assert validate.validate(_with(tiny_config(), **{'bft.randaug_on': where}), 8, False)


def test_evaluate_needs_bft_or_a_checkpoint(tmp_path):
  for stages in ('mgp,evaluate', 'evaluate'):
    assert _config_error(tiny_config(stages=stages)) == (
        f"config.stages='{stages}': evaluate needs a classifier: add bft (e.g. "
        '--config.stages=mgp,bft,evaluate) or set '
        '--config.evaluate.checkpoint=WORKDIR/bft/checkpoints of a finished run')
  missing = str(tmp_path / 'nope')
  assert _config_error(tiny_config(**{'stages': 'evaluate', 'evaluate.checkpoint': missing})) == (
      f"config.evaluate.checkpoint='{missing}': no such checkpoint directory; point it at a "
      'finished BFT run (WORKDIR/bft/checkpoints)')
  assert validate.validate(tiny_config(stages='bft,evaluate'), 8, False)
  assert validate.validate(tiny_config(**{'stages': 'bft,evaluate', 'bft.init_from': 'scratch'}),
                           8, False)
  missing_mgp = tiny_config(**{'stages': 'bft', 'bft.init_from': missing})
  assert _config_error(missing_mgp) == (
      f"config.bft.init_from='{missing}': no such checkpoint directory; point it at a finished "
      'MGP run (WORKDIR/mgp/checkpoints), or fine-tune from random weights with '
      '--config.bft.init_from=scratch')
  assert validate.validate(tiny_config(**{'stages': 'mgp,evaluate',
                                          'evaluate.checkpoint': str(tmp_path)}), 8, False)


# ------------------------------------------------------------------------- 4-8: data


def test_label_outside_the_classes_names_the_file(tmp_path, monkeypatch):
  # An OLTR list: the line.
  (tmp_path / 'ImageNet_LT_train.txt').write_text('train/a/1.JPEG 3\ntrain/a/2.JPEG 1000\n')
  list_path = str(tmp_path / 'ImageNet_LT_train.txt')
  with pytest.raises(ValueError) as e:
    oltr.read_split_file(list_path, 'imagenet_lt', 1000)
  assert str(e.value) == (
      f"imagenet_lt: {list_path}:2: class id 1000 is outside [0, 1000) (line 'train/a/2.JPEG "
      "1000'); imagenet_lt has 1000 classes: fix the line, or use the list of this dataset")
  # Fashion-MNIST IDX labels: the label file.
  monkeypatch.setattr(fashion_mnist, 'SYSTEM_IDX_DIR', str(tmp_path / 'nowhere'))
  idx = tmp_path / 'idx'
  idx.mkdir()
  for prefix, n in (('train', 12), ('t10k', 3)):
    images = np.zeros((n, 28, 28), np.uint8)
    labels = np.arange(n, dtype=np.uint8)  # 10 and 11 are not classes
    with gzip.open(idx / f'{prefix}-images-idx3-ubyte.gz', 'wb') as f:
      f.write((2051).to_bytes(4, 'big') + b''.join(d.to_bytes(4, 'big') for d in images.shape)
              + images.tobytes())
    with gzip.open(idx / f'{prefix}-labels-idx1-ubyte.gz', 'wb') as f:
      f.write((2049).to_bytes(4, 'big') + n.to_bytes(4, 'big') + labels.tobytes())
  with pytest.raises(ValueError) as e:
    sources.load_source(dataset_config('fashion_mnist_lt', data_dir=str(idx)), 'train')
  assert str(e.value) == (
      f'fashion_mnist_lt: {idx}/train-labels-idx1-ubyte.gz: 2 labels outside [0, 10) (first: '
      'label 10 of record 10); the file is corrupt or not Fashion-MNIST: re-install '
      '`dataset-fashion-mnist` or replace it')
  # Any source: where the records come from.
  info = registry.get_info('cifar10_lt')
  with pytest.raises(ValueError) as e:
    source_base.ArraySource(np.zeros((3, 2, 2, 1), np.uint8), info=info, split='test',
                            labels=[0, 10, -1], class_names=[str(i) for i in range(10)],
                            origin='TFDS cifar10 in /data')
  assert str(e.value) == (
      'cifar10_lt test (TFDS cifar10 in /data): 2 labels outside [0, 10) (first: label 10 of '
      'record 1); the labels must be class ids 0..9: fix or replace the label data, or use the '
      'dataset the labels belong to')


def test_a_class_without_training_images(tmp_path):
  # An image folder with an empty class folder.
  image_folder_fakes.write_image_folder(
      str(tmp_path), {'train': {'ant': 2, 'cat': 2}, 'test': {'ant': 1, 'cat': 1}})
  (tmp_path / 'train' / 'bee').mkdir()
  with pytest.raises(ValueError) as e:
    sources.load_source(dataset_config('image_folder', data_dir=str(tmp_path)), 'train')
  assert str(e.value) == (
      f"image_folder train ({tmp_path}/train): 1 of 3 classes have no training image: 1 'bee'; "
      'every class needs at least one (the balanced losses use log of its share): put images '
      f'into {tmp_path}/train/<class>/ or delete the empty class folders, so the class list '
      'changes')
  # LT subsampling that leaves the last class empty: refused before any data is read.
  assert _config_error(tiny_config(**{'dataset.imbalance': 7000.0})) == (
      'config.dataset.imbalance=7000.0: the smallest class of fashion_mnist_lt would keep no '
      'training image (the largest keeps 6000); use a smaller imbalance factor, e.g. '
      '--config.dataset.imbalance=100')
  # ... and by the loader too (the real Fashion-MNIST files).
  with pytest.raises(ValueError, match=r"1 of 10 classes have no training image: 9 'Ankle boot';"
                                       r'.*lower --config.dataset.imbalance'):
    sources.load_source(dataset_config('fashion_mnist_lt', imbalance=7000.0), 'train')


def test_a_class_missing_from_an_oltr_list():
  # A list without lines for some classes: the check behind every train source.
  info = registry.get_info('places_lt')
  train = source_base.ArraySource(
      np.zeros((3, 2, 2, 3), np.uint8), info=info, split='train', labels=[0, 1, 1],
      class_names=[f'c{i}' for i in range(365)], origin='/lists/Places_LT_train.txt')
  with pytest.raises(ValueError) as e:
    source_base.check_every_class_trained(train, 'add lines for these class ids to '
                                          '/lists/Places_LT_train.txt')
  assert str(e.value) == (
      "places_lt train (/lists/Places_LT_train.txt): 363 of 365 classes have no training image: "
      "2 'c2', 3 'c3', 4 'c4', 5 'c5', 6 'c6' and 358 more; every class needs at least one (the "
      'balanced losses use log of its share): add lines for these class ids to '
      '/lists/Places_LT_train.txt')


def test_malformed_oltr_line(tmp_path):
  path = tmp_path / 'Places_LT_val.txt'
  path.write_text('a/airfield/1.jpg 0\n\na/alley/2.jpg one\n')
  with pytest.raises(ValueError) as e:
    oltr.read_split_file(str(path), 'places_lt', 365)
  assert str(e.value) == (
      f"places_lt: {path}:3: expected \"<image path> <class id>\", got 'a/alley/2.jpg one'; "
      'fix or delete the line (or replace the file with the list from the OLTR release)')
  path.write_text('only_a_path\n')
  with pytest.raises(ValueError, match=r'Places_LT_val.txt:1: expected'):
    oltr.read_split_file(str(path), 'places_lt')


def test_class_count_differs_from_the_config():
  with pytest.raises(ValueError) as e:
    sources.load_source(dataset_config('fashion_mnist_lt', num_classes=5), 'test')
  assert str(e.value) == (
      f'config.dataset.num_classes=5: the fashion_mnist_lt data (IDX files in '
      f'{fashion_mnist.SYSTEM_IDX_DIR}) has 10 classes; drop the override (the class count is '
      'read from the data) or point dataset.data_dir at the data with 5 classes')


def test_corrupt_image_reaches_the_training_loop_as_one_line(tmp_path):
  written = image_folder_fakes.write_image_folder(
      str(tmp_path), {'train': {'a': 4, 'b': 4}, 'test': {'a': 1}})
  truncated = [p for p in written['train'] if p.endswith('.png')][0]
  data = open(truncated, 'rb').read()
  with open(truncated, 'wb') as f:
    f.write(data[:len(data) // 2])
  train_source = sources.load_source(dataset_config('image_folder', data_dir=str(tmp_path)),
                                     'train')
  stage_config = tiny_config().bft
  stage_config.image_size = 16
  # What the training loop sees: grain's reader thread re-raises the ValueError unchanged,
  # which main.py prints as one line.
  it = pipeline.train_iterator(train_source, stage='bft', stage_config=stage_config,
                               dataset_info=train_source.info, global_batch_size=8, seed=0)
  with pytest.raises(ValueError) as e:
    next(it)
  message = str(e.value)
  assert '\n' not in message
  assert message.startswith(f'image_folder: cannot decode image {truncated} (OSError: ')
  assert message.endswith('); the file is corrupt or truncated: re-download or re-copy it, or '
                          'delete it (class counts are re-read at the next start)')
  test_source = sources.load_source(dataset_config('image_folder', data_dir=str(tmp_path)),
                                    'test')
  os.remove(test_source.paths[0])  # listed, then gone (e.g. deleted from the bucket)
  with pytest.raises(ValueError) as e:
    test_source[0]  # pylint: disable=pointless-statement
  assert str(e.value).startswith(f'image_folder: cannot read image {test_source.paths[0]} '
                                 '(FileNotFoundError: ')
  assert str(e.value).endswith('); check that the file is there and readable, or delete it')


# ------------------------------------------------------------------- 9-10: checkpoints


@pytest.fixture(scope='module')
def bft_checkpoint(tmp_path_factory):
  """Two saved steps (1, 2) of a ViT-nano BFT state on 8 devices, 10 classes, and the config."""
  config = tiny_config()
  mesh = sharding.make_mesh(config)
  stage = train.build_stage(config, 'bft', mesh, 1000, 1, 10)
  # Zeros instead of the jitted init: saving is what matters here, and it compiles nothing.
  state = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype, device=s.sharding),
                       stage.abstract_state)
  directory = str(tmp_path_factory.mktemp('ckpt') / 'checkpoints')
  mngr = checkpointing.manager(directory, config)
  for step in (1, 2):
    checkpointing.save(mngr, step, state)
  mngr.wait_until_finished()
  return directory, config, mesh


def _restore(directory, config, mesh, stage='bft', num_classes=10):
  built = train.build_stage(config, stage, mesh, 1000, 1, num_classes)
  return checkpointing.restore(checkpointing.manager(directory, config), built.abstract_state)


def test_checkpoint_of_another_model(bft_checkpoint):
  directory, config, mesh = bft_checkpoint
  assert _restore(directory, config, mesh).params['head']['kernel'].shape == (32, 10)
  mu = tiny_config(**{'model.variant': 'mu'})
  with pytest.raises(checkpointing.CheckpointMismatchError) as e:
    _restore(directory, mu, mesh)
  assert isinstance(e.value, ValueError)
  assert str(e.value) == (
      f'checkpoint {directory} step 2 holds a ViT-nano (width 32, depth 2) but the config asks '
      'for ViT-mu (width 128, depth 6); set --config.model.variant=nano to use it, or point at '
      'a checkpoint of the configured variant (for a resumed run: a fresh --workdir)')
  with pytest.raises(checkpointing.CheckpointMismatchError) as e:
    _restore(directory, config, mesh, num_classes=100)
  assert str(e.value) == (
      f'checkpoint {directory} step 2 has a 10-class head but the data has 100 classes; '
      'evaluate it on the dataset it was trained on, or fine-tune a new head from the MGP '
      'encoder (bft.init_from)')
  with pytest.raises(checkpointing.CheckpointMismatchError) as e:
    _restore(directory, config, mesh, stage='mgp')  # a BFT checkpoint as bft.init_from
  assert str(e.value) == (
      f'checkpoint {directory} step 2 is a BFT (classifier) checkpoint but an MGP (MAE) '
      'checkpoint is needed here; bft.init_from takes WORKDIR/mgp/checkpoints, '
      'evaluate.checkpoint WORKDIR/bft/checkpoints')


def test_unreadable_checkpoint(bft_checkpoint, tmp_path):
  source, config, mesh = bft_checkpoint
  directory = str(tmp_path / 'checkpoints')
  shutil.copytree(source, directory)
  manifest = os.path.join(directory, '2', 'state', 'manifest.ocdbt')
  with open(manifest, 'r+b') as f:
    f.truncate(20)
  with pytest.raises(checkpointing.CheckpointUnreadableError) as e:
    _restore(directory, config, mesh)
  message = str(e.value)
  assert '\n' not in message and len(message) < 1000
  assert message.startswith(f'cannot read checkpoint {directory} step 2 (ValueError: ')
  assert message.endswith(
      '); it is corrupt, truncated or not an orbax checkpoint of livt_jax: delete the broken '
      f'step dir {directory}/2 to resume from step 1, or point the setting at another '
      'checkpoint dir')
  # Its metadata file garbled too.
  with open(os.path.join(directory, '2', 'state', '_METADATA'), 'w') as f:
    f.write('{')
  with pytest.raises(checkpointing.CheckpointUnreadableError,
                     match=r'step 2 \(JSONDecodeError: .* resume from step 1'):
    _restore(directory, config, mesh)
  # Deleting the broken step, as the message says, falls back to step 1.
  shutil.rmtree(os.path.join(directory, '2'))
  assert int(_restore(directory, config, mesh).step) == 0
  # A directory that is not an orbax checkpoint at all.
  junk = tmp_path / 'junk'
  (junk / '7').mkdir(parents=True)
  (junk / '7' / 'notes.txt').write_text('x')
  with pytest.raises(checkpointing.CheckpointUnreadableError,
                     match=rf'cannot read checkpoint {junk} step 7 .* delete {junk}/7 \(the only '
                           r'step; the stage then starts over\) or point the setting at another'):
    _restore(str(junk), config, mesh)


# -------------------------------------------------------------- the real command line


def _cli(args, workdir):
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8',
             JAX_PLATFORMS='cpu', LIVT_MALLOC_TUNING='0')
  return subprocess.run(
      [sys.executable, '-m', 'livt_jax.main', '--config=configs/fashion_mnist_lt.py',
       f'--workdir={workdir}', *args], cwd=ROOT, env=env, capture_output=True, text=True,
      timeout=300)


def test_command_line_prints_one_error_line(tmp_path, bft_checkpoint):
  broken = str(tmp_path / 'checkpoints')
  shutil.copytree(bft_checkpoint[0], broken)
  with open(os.path.join(broken, '2', 'state', 'manifest.ocdbt'), 'r+b') as f:
    f.truncate(20)
  cases = {
      'tau': (['--config.bft.tau=nan'],
              'livt_jax: error: config.bft.tau=nan: use a finite tau >= 0 (1.0 is the paper '
              'default; 0 gives plain BCE)'),
      # Also: no 'RuntimeError: Event loop is closed' tracebacks of the abandoned reads.
      'broken checkpoint': (['--config.stages=evaluate', '--config.model.variant=nano',
                             f'--config.evaluate.checkpoint={broken}'],
                            f'livt_jax: error: cannot read checkpoint {broken} step 2 ('),
  }
  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    runs = {name: pool.submit(_cli, args, tmp_path / name) for name, (args, _) in cases.items()}
    results = {name: f.result() for name, f in runs.items()}
  for name, (_, expected) in cases.items():
    r = results[name]
    assert r.returncode == 2, (name, r.returncode, r.stderr[-3000:])
    assert 'Traceback' not in r.stderr, (name, r.stderr[-3000:])
    errors = [l for l in r.stderr.splitlines() if l.startswith('livt_jax: error:')]
    assert len(errors) == 1 and errors[0].startswith(expected), (name, r.stderr[-3000:])


@pytest.mark.parametrize('overrides, expected', [
    ({'dataset.val_per_class': 0, 'dataset.val_max_per_class': 500},
     'config.dataset.val_max_per_class=500: it enlarges the val split that '
     'dataset.val_per_class holds out: set that too, e.g. --config.dataset.val_per_class=20'),
    ({'dataset.val_max_per_class': -3},
     'config.dataset.val_max_per_class=-3: use a whole number of images per class >= 0 '
     '(0: dataset.val_per_class each)'),
])
def test_a_larger_val_needs_a_held_out_val_and_a_count(overrides, expected):
  assert _config_error(_with(tiny_config(), **overrides)) == expected
