"""LT subset sizes (Table 8 of the paper), seeded subsampling, and the dataset registry."""
import numpy as np
import pytest

from livt_jax.data import longtail
from livt_jax.data import registry


@pytest.mark.parametrize('n_max, num_classes, imbalance, total, n_min', [
    (5000, 10, 100, 12_406, 50),    # CIFAR-10-LT gamma 100
    (5000, 10, 10, 20_431, 500),    # CIFAR-10-LT gamma 10
    (500, 100, 100, 10_847, 5),     # CIFAR-100-LT gamma 100
    (500, 100, 10, 19_573, 50),     # CIFAR-100-LT gamma 10
    (6000, 10, 100, 14_886, 60),    # Fashion-MNIST-LT gamma 100
])
def test_published_lt_sizes(n_max, num_classes, imbalance, total, n_min):
  sizes = longtail.lt_class_sizes(n_max, num_classes, imbalance)
  assert sum(sizes) == total
  assert sizes[0] == n_max and sizes[-1] == n_min
  assert sizes == sorted(sizes, reverse=True)


@pytest.mark.parametrize('name, imbalance, total', [
    ('cifar10_lt', 100, 12_406), ('cifar10_lt', 10, 20_431), ('cifar100_lt', 100, 10_847),
    ('cifar100_lt', 10, 19_573), ('fashion_mnist_lt', 100, 14_886),
    ('imagenet_lt', 100, 115_846), ('inat18', 7, 437_513), ('places_lt', 100, 62_500)])
def test_registry_train_size_without_data(name, imbalance, total):
  assert registry.lt_train_size(registry.get_info(name), imbalance) == total


def test_registry_unknown_name_is_one_clear_line():
  with pytest.raises(ValueError) as e:
    registry.get_info('cifar1000_lt')
  message = str(e.value)
  assert '\n' not in message
  assert 'dataset.name' in message and 'cifar1000_lt' in message and 'imagenet_lt' in message


def test_registry_infos_are_consistent():
  for name in registry.KNOWN_NAMES:
    info = registry.get_info(name)
    assert len(info.mean) == len(info.std)
    if info.image_shape is not None:
      assert info.image_shape[-1] == len(info.mean)


def _balanced_labels(num_classes, per_class):
  return np.tile(np.arange(num_classes), per_class)


def test_subsample_counts_and_determinism():
  labels = _balanced_labels(10, 100)
  sizes = longtail.lt_class_sizes(100, 10, 10)
  a = longtail.lt_subsample_indices(labels, sizes, None, seed=3)
  b = longtail.lt_subsample_indices(labels, sizes, None, seed=3)
  c = longtail.lt_subsample_indices(labels, sizes, None, seed=4)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert np.all(np.diff(a) > 0)  # Sorted and unique.
  np.testing.assert_array_equal(np.bincount(labels[a], minlength=10), sizes)


def test_subsample_class_order_decides_which_class_is_the_head():
  labels = _balanced_labels(10, 100)
  sizes = longtail.lt_class_sizes(100, 10, 10)
  order = longtail.class_order_permutation('shuffled', 10, seed=1)
  assert sorted(order) == list(range(10)) and not np.array_equal(order, np.arange(10))
  kept = longtail.lt_subsample_indices(labels, sizes, order, seed=0)
  counts = np.bincount(labels[kept], minlength=10)
  for rank, cls in enumerate(order):
    assert counts[cls] == sizes[rank]
  np.testing.assert_array_equal(longtail.class_order_permutation('natural', 4), np.arange(4))


def test_subsample_errors():
  labels = _balanced_labels(3, 5)
  with pytest.raises(ValueError, match='keeps 6'):
    longtail.lt_subsample_indices(labels, [6, 3, 1], None, 0)
  with pytest.raises(ValueError, match='permutation'):
    longtail.lt_subsample_indices(labels, [5, 3, 1], [0, 0, 1], 0)
  with pytest.raises(ValueError, match='dataset.class_order'):
    longtail.class_order_permutation('sorted', 3)
  with pytest.raises(ValueError, match='imbalance'):
    longtail.lt_class_sizes(100, 10, 0.5)
