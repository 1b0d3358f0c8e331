"""dataset.test_imbalance: a long-tailed TEST split of Fashion-MNIST-LT (real IDX files), the
training profile and class order applied to the balanced test set."""
import numpy as np
import pytest

from engine_helpers import tiny_config
from livt_jax.data import longtail
from livt_jax.data import sources


def _dataset(**overrides):
  return tiny_config(**{f'dataset.{k}': v for k, v in overrides.items()}).dataset


def _keys(source):
  return {(bytes(source.images[i]), int(source.labels[i])) for i in range(len(source))}


def test_lt_test_split_follows_the_training_profile():
  full = sources.load_source(_dataset(), 'test')
  lt = sources.load_source(_dataset(test_imbalance=100.0), 'test')
  assert list(full.split_class_counts) == [1000] * 10
  want = longtail.lt_class_sizes(1000, 10, 100.0)   # 1000 ... 10, class i at rank i
  assert list(lt.split_class_counts) == want and want[-1] == 10
  assert _keys(lt) <= _keys(full)                   # a subset of the test images, labels kept
  again = sources.load_source(_dataset(test_imbalance=100.0), 'test')
  np.testing.assert_array_equal(again.images, lt.images)  # seeded: the same split every time
  assert lt.class_counts is None                    # shot groups still come from training


def test_lt_test_split_uses_the_training_class_order():
  cfg = _dataset(class_order='shuffled', class_order_seed=3, imbalance=10.0,
                 test_imbalance=10.0)
  train_counts = sources.load_source(cfg, 'train').class_counts
  test_counts = sources.load_source(cfg, 'test').split_class_counts
  np.testing.assert_array_equal(np.argsort(-train_counts, kind='stable'),
                                np.argsort(-test_counts, kind='stable'))
  assert test_counts.max() == 1000 and test_counts.min() == 100
  # Test shares ~ training shares (to rounding and the validation images a config may hold out
  # of the head class), so bft.test_prior='train' describes this test set.
  np.testing.assert_allclose(test_counts / test_counts.sum(),
                             train_counts / train_counts.sum(), rtol=0.03)


def test_lt_test_split_errors():
  with pytest.raises(ValueError, match=r'test_imbalance=2000.0 keeps no test image'):
    sources.load_source(_dataset(test_imbalance=2000.0), 'test')
