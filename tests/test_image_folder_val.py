"""An image folder without val/: a val split held out of train/ (dataset.val_per_class), the
val evaluator left out with one line, and the folder's problems reported before anything
trains (validate.check_image_folder, the dry run)."""
import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from livt_jax.evals import evaluate
from livt_jax.evals import evaluators
from livt_jax.data import sources
from tests.fakes import image_folder_fakes

ROOT = os.path.join(os.path.dirname(__file__), '..')
TRAIN = {'ant': 9, 'bee': 6, 'cat': 4}
TEST = {'ant': 1, 'bee': 1, 'cat': 1}


def dataset_config(data_dir, **overrides):
  c = ml_collections.ConfigDict(dict(
      name='image_folder', data_dir=str(data_dir), split_dir=None, imbalance=100.0,
      class_order='natural', class_order_seed=0, subset_seed=0, num_classes=None,
      val_per_class=0, val_max_per_class=0))
  c.update(overrides)
  return c


def _folder(root, **splits):
  return image_folder_fakes.write_image_folder(str(root), {'train': TRAIN, 'test': TEST,
                                                           **splits})


def _files_by_class(paths):
  out = {}
  for p in paths:
    out.setdefault(os.path.basename(os.path.dirname(p)), set()).add(p)
  return out


def test_val_per_class_holds_images_out_of_train_disjointly(tmp_path):
  written = _folder(tmp_path)
  config = dataset_config(tmp_path, val_per_class=2, subset_seed=3)
  train, val = (sources.load_source(config, s) for s in ('train', 'val'))
  assert not set(train.paths) & set(val.paths)
  assert sorted(train.paths + val.paths) == sorted(written['train'])
  assert train.class_names == val.class_names == sorted(TRAIN)
  np.testing.assert_array_equal(val.split_class_counts, [2, 2, 2])
  np.testing.assert_array_equal(train.class_counts, [n - 2 for _, n in sorted(TRAIN.items())])
  for source in (train, val):  # each record's label is its class folder
    folders = [os.path.basename(os.path.dirname(p)) for p in source.paths]
    assert [source.class_names[l] for l in source.labels] == folders
  assert train.info.train_size == len(train) == 13 and val.info.val_size == len(val) == 6
  assert train.info.has_val and val.info.has_val
  # The same seed draws the same images; the draw of a class does not depend on the others.
  again = sources.load_source(config, 'val')
  assert again.paths == val.paths
  other = _folder(tmp_path / 'more', train={**TRAIN, 'ant': 15})  # same first 9 ants' names
  moved = sources.load_source(dataset_config(tmp_path / 'more', val_per_class=2, subset_seed=3),
                              'val')
  rel = lambda ps: {os.path.relpath(p, os.path.dirname(os.path.dirname(os.path.dirname(p))))
                    for p in ps}
  for cls in ('bee', 'cat'):
    assert rel(_files_by_class(moved.paths)[cls]) == rel(_files_by_class(val.paths)[cls])
  assert len(other['train']) == 25
  seeds = {tuple(sources.load_source(dataset_config(tmp_path, val_per_class=2, subset_seed=s),
                                     'val').paths) for s in range(4)}
  assert len(seeds) > 1  # the seed chooses which images


def test_a_val_folder_is_used_as_it_is(tmp_path):
  written = _folder(tmp_path, val={'ant': 1, 'cat': 2})
  for vpc in (0, 2):  # dataset.val_per_class does not apply where val/ exists
    config = dataset_config(tmp_path, val_per_class=vpc)
    assert sorted(sources.load_source(config, 'val').paths) == sorted(written['val'])
    assert sorted(sources.load_source(config, 'train').paths) == sorted(written['train'])
    assert sources.has_val_split(config)


def test_too_many_held_out_is_one_line_naming_the_classes(tmp_path):
  _folder(tmp_path)
  with pytest.raises(ValueError) as e:
    sources.load_source(dataset_config(tmp_path, val_per_class=6), 'train')
  assert str(e.value) == (
      f'image_folder: dataset.val_per_class=6 holds out 6 images of every class of '
      f"{tmp_path}/train, and 2 classes have no more than that: 'bee' (6), 'cat' (4); lower it "
      'below 4, add a val/ folder next to train/, or set --config.dataset.val_per_class=0 to '
      'train without a val split')


def test_without_val_the_evaluator_is_left_out_with_one_line(tmp_path, monkeypatch):
  _folder(tmp_path)
  config = ml_collections.ConfigDict(dict(dataset=dataset_config(tmp_path), evals=dict(
      val=dict(type='classification', split='val', every_epochs=1.0, select_best='top1'))))
  assert not sources.has_val_split(config.dataset)
  with pytest.raises(FileNotFoundError, match=r"split 'val' needs the folder .*/val or "
                     r'.*/validation; or hold a val split out of train/ with '):
    sources.load_source(config.dataset, 'val')
  monkeypatch.setattr(evaluate, 'config_predict_fn', lambda *a, **k: None)
  said = []
  info = sources.load_source(config.dataset, 'train').info
  assert evaluators.build(config, None, None, info, None, None, said.append) == []
  assert said == [
      'evaluator val: image_folder has no val split (add a val/ folder next to train/, or hold '
      'one out of train/ with --config.dataset.val_per_class=N); left out, the final model is '
      'reported']


# -------------------------------------------------------------- the command line


def _cli(tmp_path, data_dir, *extra, dry_run=False):
  """The embedded default's config (Fashion-MNIST-LT, dataset.val_per_class=100) on an image
  folder, as a user starts it."""
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2',
             JAX_PLATFORMS='cpu', LIVT_MALLOC_TUNING='0')
  args = ['--dry_run'] if dry_run else [f'--workdir={tmp_path / "run"}']
  return subprocess.run(
      [sys.executable, '-m', 'livt_jax.main', '--config=configs/fashion_mnist_lt.py', *args,
       '--config.dataset.name=image_folder', f'--config.dataset.data_dir={data_dir}',
       '--config.model.variant=nano', '--config.mgp.batch_size=4', '--config.bft.batch_size=4',
       *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _one_error_before_training(r, tmp_path):
  assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-3000:]
  assert 'Traceback' not in r.stderr, r.stderr[-3000:]
  lines = [l for l in r.stderr.splitlines() if l.strip()]
  assert len(lines) == 1 and lines[0].startswith('livt_jax: error: '), lines
  assert not os.path.exists(tmp_path / 'run' / 'mgp')  # nothing trained, nothing saved
  return lines[0]


@pytest.mark.parametrize('case', ['too many held out', 'val class not in train', 'no test'])
def test_a_folder_that_would_fail_after_training_fails_before(tmp_path, case):
  data = tmp_path / 'data'
  extra = []
  if case == 'too many held out':  # train/ and test/ only; the default holds out 100 per class
    _folder(data)
    expected = ('livt_jax: error: image_folder: dataset.val_per_class=100 holds out 100 images '
                'of every class of')
  elif case == 'val class not in train':  # BFT's val evaluator would stop on it
    _folder(data, val={'ant': 1, 'dog': 1})
    expected = (f'livt_jax: error: image_folder: {data}/val has class folders not in train: '
                "['dog']")
  else:  # MGP's reconstructions figure reads test/
    image_folder_fakes.write_image_folder(str(data), {'train': TRAIN})
    extra = ['--config.dataset.val_per_class=1']
    expected = f"livt_jax: error: image_folder: split 'test' needs the folder {data}/test"
  for dry_run in (True, False):
    r = _cli(tmp_path, data, *extra, dry_run=dry_run)
    assert _one_error_before_training(r, tmp_path).startswith(expected), (dry_run, r.stderr)


def test_dry_run_says_where_val_comes_from(tmp_path):
  _folder(tmp_path / 'data')
  held = _cli(tmp_path, tmp_path / 'data', '--config.dataset.val_per_class=1', dry_run=True)
  assert held.returncode == 0, held.stderr[-3000:]
  assert ('dataset: image_folder, 3 classes, 16 training images' in held.stdout
          and 'val: 1 images per class held out of train/ (dataset.val_per_class)'
          in held.stdout), held.stdout
  none = _cli(tmp_path, tmp_path / 'data', '--config.dataset.val_per_class=0', dry_run=True)
  assert none.returncode == 0, none.stderr[-3000:]
  assert '19 training images' in none.stdout and 'no val split (the val evaluator is left out' \
      in none.stdout, none.stdout
