"""The final test evaluation and the val evaluator score the RAW logits (the paper's rule: the
Bal-BCE bias belongs to the training loss only), on logits that the bias would flip.

The model is a lookup table: each image is one grey level (the example's index), which survives
normalisation and the mirror / shift views, so the logits are exactly the table's rows.
"""
import jax.numpy as jnp
import numpy as np
import pytest

from engine_helpers import COUNTS, tiny_config
from livt_jax.evals import evaluate
from livt_jax.evals import evaluators
from livt_jax.losses import balanced
from livt_jax.evals import metrics
from livt_jax.engine import sharding
from livt_jax.data import registry
from livt_jax.data import source_base

N, C = 60, 10


class TableModel:
  """apply({'params': {'table': [N, C]}}, images) -> the rows of the examples shown."""

  def __init__(self, info):
    self.mean, self.std = float(info.mean[0]), float(info.std[0])

  def apply(self, variables, images, *, train):
    del train
    grey = (images[:, 0, 0, 0] * self.std + self.mean) * 255.0   # undo the normalisation
    return variables['params']['table'][jnp.round(grey).astype(jnp.int32)]


def _fixed_logits():
  """Labels cycle over the classes; the raw logits rank the label first (but every 7th example
  wrong), just ahead of a rival: head class 0 for the other classes, class 9 for class 0. Under
  the long-tailed COUNTS the Bal-BCE bias (or Bal-CE's log pi) moves class 0 up by more than
  the 0.5 lead, so adding it would predict class 0 for most examples."""
  labels = np.arange(N) % C
  table = np.full((N, C), -4.0)
  rows = np.arange(N)
  rival = np.where(labels == 0, 9, 0)
  table[rows, labels] = 2.0
  table[rows, rival] = np.where(rows % 7 == 3, 2.5, 1.5)
  return table.astype(np.float32), labels


def _source(info, split):
  labels = _fixed_logits()[1]
  images = np.broadcast_to(np.arange(N, dtype=np.uint8)[:, None, None, None],
                           (N, 28, 28, 1)).copy()
  return source_base.ArraySource(images, info=info, split=split, labels=labels,
                                 class_names=[str(i) for i in range(C)])


def _reference(config, table, labels):
  return metrics.classification_metrics(
      table, labels, COUNTS, many_threshold=config.dataset.many_threshold,
      few_threshold=config.dataset.few_threshold, num_bins=config.evaluate.num_bins)


def _assert_raw(result, config, table, labels):
  want = _reference(config, table, labels)
  raw_top1 = float(np.mean(table.argmax(1) == labels))
  np.testing.assert_allclose(result['top1'], raw_top1, rtol=1e-12)
  for key in ('top1', 'balanced_top1', 'many', 'medium', 'few', 'ece', 'mce'):
    if want[key] is None:  # a shot group without classes under this dataset's thresholds
      assert result[key] is None, key
    else:
      np.testing.assert_allclose(result[key], want[key], rtol=1e-6, err_msg=key)
  np.testing.assert_allclose(result['per_class_accuracy'], want['per_class_accuracy'])


def test_the_bias_would_flip_these_logits():
  # The fixture is sharp: every bias a balanced loss trains with changes top-1 by > 40 points.
  table, labels = _fixed_logits()
  raw = np.mean(table.argmax(1) == labels)
  for bias in (balanced.bal_bce_bias(COUNTS), balanced.bal_bce_bias(COUNTS, form='official'),
               balanced.bal_ce_bias(COUNTS)):
    assert raw - np.mean((table + bias).argmax(1) == labels) > 0.4


@pytest.mark.parametrize('views', ['one', 'flip'])
def test_final_test_evaluation_scores_the_raw_logits(views):
  config = tiny_config(**{'evaluate.views': views, 'evaluate.batch_size': 16})
  mesh = sharding.make_mesh(config)
  info = registry.get_info('fashion_mnist_lt')
  table, labels = _fixed_logits()
  result = evaluate.evaluate(config, TableModel(info), {'table': jnp.asarray(table)},
                             sharding.replicated(mesh), _source(info, 'test'), info, mesh,
                             COUNTS)
  assert result['num_examples'] == N
  _assert_raw(result, config, table, labels)


def test_val_evaluator_scores_the_raw_logits(monkeypatch):
  config = tiny_config(**{'evaluate.views': 'flip'})
  assert config.bft.loss == 'bal_bce' and 'val' in config.evals
  mesh = sharding.make_mesh(config)
  info = registry.get_info('fashion_mnist_lt')
  monkeypatch.setattr(evaluators.sources, 'load_source',
                      lambda dataset_config, split: _source(info, split))
  built = evaluators.build(config, TableModel(info), sharding.replicated(mesh), info, mesh,
                           COUNTS, say=print)
  assert [e.name for e in built] == ['val']
  table, labels = _fixed_logits()
  _assert_raw(built[0].run_metrics({'table': jnp.asarray(table)}), config, table, labels)

