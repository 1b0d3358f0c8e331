"""Validation split held out of the unused training images, evaluators inside BFT, best-on-val."""
import json
import re

import numpy as np
import pytest

from livt_jax.evals import evaluate
from livt_jax.evals import evaluators
from livt_jax.engine import run
from livt_jax import validate
from livt_jax.data import fashion_mnist
from livt_jax.data import longtail
from livt_jax.data import registry
from livt_jax.data import sources
from engine_helpers import past_warmup


def test_lt_split_holds_out_a_balanced_disjoint_val_and_keeps_the_lt_subset():
  labels = np.repeat(np.arange(5), 100)
  np.random.default_rng(0).shuffle(labels)
  sizes = longtail.lt_class_sizes(100, 5, 10)  # [100, 56, 31, 17, 10]
  plain = longtail.lt_subsample_indices(labels, sizes, None, seed=3)
  train, val = longtail.lt_split(labels, sizes, None, seed=3, val_per_class=8)
  assert not set(train) & set(val)
  assert np.bincount(labels[val], minlength=5).tolist() == [8] * 5
  # The head (kept whole without val) gives up 8 images; every other class keeps exactly the
  # images of the plain LT subset.
  assert np.bincount(labels[train], minlength=5).tolist() == [92, 56, 31, 17, 10]
  head = labels == 0
  assert set(train[~head[train]]) == set(plain[~head[plain]])
  assert set(train[head[train]]) < set(plain[head[plain]])
  again_train, again_val = longtail.lt_split(labels, sizes, None, seed=3, val_per_class=8)
  np.testing.assert_array_equal(again_val, val)
  np.testing.assert_array_equal(again_train, train)
  no_val_train, no_val = longtail.lt_split(labels, sizes, None, seed=3, val_per_class=0)
  np.testing.assert_array_equal(no_val_train, plain)
  assert len(no_val) == 0


def test_lt_split_val_max_per_class_adds_unused_images_and_changes_nothing_else():
  labels = np.repeat(np.arange(5), 100)
  np.random.default_rng(0).shuffle(labels)
  sizes = longtail.lt_class_sizes(100, 5, 10)  # [100, 56, 31, 17, 10]
  train, val = longtail.lt_split(labels, sizes, None, seed=3, val_per_class=8)
  big_train, big_val = longtail.lt_split(labels, sizes, None, seed=3, val_per_class=8,
                                         val_max_per_class=50)
  np.testing.assert_array_equal(big_train, train)
  assert set(val) < set(big_val)
  assert not set(big_train) & set(big_val)
  # The head has 8 unused images (all in val); the others 44, 69, 83, 90 unused.
  assert np.bincount(labels[big_val], minlength=5).tolist() == [8, 44, 50, 50, 50]
  assert len(set(big_val)) == len(big_val)
  again = longtail.lt_split(labels, sizes, None, seed=3, val_per_class=8, val_max_per_class=50)
  np.testing.assert_array_equal(again[1], big_val)


def test_lt_split_refuses_to_leave_a_class_without_training_images():
  labels = np.repeat(np.arange(3), 10)
  with pytest.raises(ValueError, match='lower dataset.val_per_class'):
    longtail.lt_split(labels, [10, 5, 2], None, 0, val_per_class=10)


def _dataset_config(val_per_class):
  config = past_warmup()
  config.dataset.val_per_class = val_per_class
  return config.dataset


def test_fashion_mnist_val_comes_from_unused_training_images():
  cfg = _dataset_config(100)
  train = sources.load_source(cfg, 'train')
  val = sources.load_source(cfg, 'val')
  test = sources.load_source(cfg, 'test')
  assert len(val) == 1000 and val.split_class_counts.tolist() == [100] * 10
  assert train.class_counts[0] == 5900 and train.class_counts[1:].tolist() == (
      longtail.lt_class_sizes(6000, 10, 100)[1:])
  assert len(train) == registry.lt_train_size(registry.get_info('fashion_mnist_lt'), 100, 100)
  assert len(test) == 10000
  # The records are the balanced training file's, at disjoint indices.
  images, labels = fashion_mnist.load_idx_split(fashion_mnist.find_idx_dir(None), 'train')
  train_idx = sources._lt_subset(cfg, labels, train.info, 'train')
  val_idx = sources._lt_subset(cfg, labels, train.info, 'val')
  assert not set(train_idx) & set(val_idx)
  np.testing.assert_array_equal(val.images, images[val_idx])
  np.testing.assert_array_equal(train.images, images[train_idx])


def test_no_val_split_without_val_per_class():
  with pytest.raises(ValueError, match='val_per_class'):
    sources.load_source(_dataset_config(0), 'val')


@pytest.mark.parametrize('override, message', [
    ({'evals.val.split': 'test'}, 'validation split only'),
    ({'evals.val.select_best': 'loss'}, 'use one of top1'),
    ({'evals.val.every_epochs': 0}, 'positive number of epochs'),
    ({'evals.val.type': 'retrieval'}, 'classification'),
    ({'dataset.val_per_class': -1}, 'whole number'),
])
def test_bad_evaluator_settings_are_refused(override, message):
  with pytest.raises(validate.ConfigError, match=message):
    validate.validate(past_warmup(**override), num_devices=8)


def test_bft_keeps_the_best_on_val_and_reports_both(tmp_path, capsys):
  config = past_warmup(**{'stages': 'bft,evaluate', 'bft.init_from': 'scratch',
                          'max_steps': 24, 'checkpoint_every_steps': 100,
                          'evals.val.every_epochs': 4 / 924})  # every 4 steps of 16 images
  config.dataset.val_per_class = 100
  result = run.run(config, str(tmp_path))
  out = capsys.readouterr().out
  seen = [(float(e), float(t)) for e, t in re.findall(r'val @ epoch ([\d.]+): top1 ([\d.]+)', out)]
  assert len(seen) == 6  # steps 4, 8, ..., 24
  best = result['best_on_val']
  assert best['val']['top1'] == pytest.approx(max(t for _, t in seen) / 100, abs=6e-4)
  assert best['step'] % 4 == 0 and 0 < best['step'] <= 24
  assert best['model_choice'].startswith('best on val top1')
  assert best['selected_on'] == 'val top1'
  assert 0 <= best['top1'] <= 1 and best['num_examples'] == 10000
  assert [p.name for p in (tmp_path / 'bft' / 'best').iterdir() if p.name.isdigit()] == [
      str(best['step'])]
  saved = json.loads((tmp_path / 'report' / 'report.json').read_text())
  assert saved['best_on_val']['step'] == best['step']
  assert 'best on val top1' in (tmp_path / 'report' / 'report.md').read_text()
  assert list((tmp_path / 'tensorboard' / 'val').iterdir())


def test_best_on_val_at_the_last_step_is_not_evaluated_twice(tmp_path, monkeypatch):
  # Val is evaluated only at the end, so the best model is the final one: one test pass, and
  # its figures are reported for both.
  config = past_warmup(**{'stages': 'bft,evaluate', 'bft.init_from': 'scratch',
                          'max_steps': 6, 'checkpoint_every_steps': 100,
                          'evals.val.every_epochs': 100.0})
  config.dataset.val_per_class = 100
  splits = []
  real_evaluate = evaluate.evaluate

  def counting(config, model, params, sharding, source, *args, **kwargs):
    splits.append(len(source))
    return real_evaluate(config, model, params, sharding, source, *args, **kwargs)

  monkeypatch.setattr(evaluate, 'evaluate', counting)
  result = run.run(config, str(tmp_path))
  best = result['best_on_val']
  assert best['step'] == 6 and best['model_choice'].startswith('best on val top1')
  assert splits.count(10000) == 1  # the test set once
  for key in ('top1', 'many', 'medium', 'few', 'ece', 'mce', 'per_class_accuracy'):
    assert best[key] == result[key], key


def test_val_evaluator_is_left_out_where_there_is_no_val_split(tmp_path, capsys):
  config = past_warmup(**{'stages': 'bft,evaluate', 'bft.init_from': 'scratch',
                          'max_steps': 2})
  config.dataset.val_per_class = 0
  result = run.run(config, str(tmp_path))
  assert 'evaluator val: fashion_mnist_lt has no val split' in capsys.readouterr().out
  assert 'best_on_val' not in result
  assert evaluators.selection(config) == ('val', 'top1')


def test_a_larger_class_imbalanced_val_selects_on_balanced_top1(tmp_path, capsys):
  config = past_warmup(**{'stages': 'bft,evaluate', 'bft.init_from': 'scratch',
                          'max_steps': 6, 'checkpoint_every_steps': 100,
                          'evals.val.every_epochs': 100.0,
                          'evals.val.select_best': 'balanced_top1'})
  config.dataset.val_per_class = 100
  config.dataset.val_max_per_class = 300
  val = sources.load_source(config.dataset, 'val')
  # Fashion-MNIST-LT: the head class has only its 100 held-out images, the others 300 each.
  assert np.bincount(val.labels, minlength=10).tolist() == [100] + [300] * 9
  result = run.run(config, str(tmp_path))
  out = capsys.readouterr().out
  line = re.search(r'val @ epoch [\d.]+: top1 ([\d.]+) \| balanced_top1 ([\d.]+) \|', out)
  assert line, out
  best = result['best_on_val']
  assert best['model_choice'].startswith('best on val balanced_top1')
  assert best['selected_on'] == 'val balanced_top1'
  assert best['val']['balanced_top1'] == pytest.approx(float(line.group(2)) / 100, abs=6e-4)
