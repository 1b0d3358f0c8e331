"""Configs and validation errors (the dry run of every config: test_cli_dry_run.py)."""
import importlib.util
import os

import pytest

from livt_jax import plan
from livt_jax import validate

ROOT = os.path.join(os.path.dirname(__file__), '..')
CONFIGS = ['fashion_mnist_lt', 'cifar10_lt', 'cifar100_lt', 'imagenet_lt', 'inat18', 'places_lt']


def load(name, arg=None):
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, 'configs', f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def test_table10_values():
  assert load('inat18').mgp.image_size == 128
  assert load('inat18').bft.image_size == 224
  assert load('inat18').bft.drop_path == 0.2
  places = load('places_lt')
  assert places.bft.tau == 1.05 and places.bft.epochs == 30
  for name in CONFIGS:
    c = load(name)
    # The embedded default's minutes-long BFT uses 0.9 (chosen on its validation split).
    assert c.bft.layer_decay == (0.9 if name == 'fashion_mnist_lt' else 0.75)
    assert (c.mgp.b1, c.mgp.b2, c.bft.b1, c.bft.b2) == (0.9, 0.95, 0.9, 0.99)
    assert c.mgp.mask_ratio == 0.75
  imnet = load('imagenet_lt')
  assert (imnet.mgp.epochs, imnet.mgp.warmup_epochs, imnet.mgp.batch_size) == (800, 40, 4096)
  assert (imnet.bft.epochs, imnet.bft.warmup_epochs, imnet.bft.batch_size) == (100, 10, 1024)


def test_learning_rate_is_scaled_by_batch():
  c = load('imagenet_lt')
  p = plan.stage_plan(c, 'mgp', num_train=115846, num_devices=8)
  assert p.peak_lr == pytest.approx(1.5e-4 * 4096 / 256)
  assert p.steps_per_epoch == 115846 // 4096
  assert p.total_steps == 800 * (115846 // 4096)
  assert p.batch_per_device == 512


def test_cifar_imbalance_argument():
  assert load('cifar100_lt', 'imb=10').dataset.imbalance == 10
  assert load('cifar100_lt').dataset.imbalance == 100
  with pytest.raises(ValueError, match='imb'):
    load('cifar10_lt', 'gamma=10')


def _error(config, num_devices=8, check_data=True):
  with pytest.raises(validate.ConfigError) as e:
    validate.validate(config, num_devices, check_data)
  return str(e.value)


def test_clear_errors():
  c = load('fashion_mnist_lt')
  c.dataset.name = 'mnist_lt'
  assert 'dataset.name' in _error_any(c) and 'mnist_lt' in _error_any(c)
  c = load('fashion_mnist_lt')
  c.model.variant = 'XL'
  assert 'XL' in _error_any(c)
  c = load('fashion_mnist_lt')
  c.bft.batch_size = 100
  msg = _error(c)
  assert 'bft.batch_size=100' in msg and '8 devices' in msg
  for ratio in (0.0, 1.0, 1.5):
    c = load('fashion_mnist_lt')
    c.mgp.mask_ratio = ratio
    assert 'mgp.mask_ratio' in _error(c)
  c = load('fashion_mnist_lt')
  c.bft.tau = -0.5
  assert 'bft.tau=-0.5' in _error(c)
  c = load('cifar10_lt')
  c.dataset.data_dir = '/nonexistent/tfds'
  msg = _error(c)
  assert 'dataset.data_dir' in msg and '/nonexistent/tfds' in msg
  c = load('cifar10_lt')
  c.dataset.num_classes = 100
  assert 'dataset.num_classes=100' in _error(c)
  c = load('fashion_mnist_lt')
  c.stages = 'mgp,finetune'
  assert 'config.stages' in _error(c)
  c = load('fashion_mnist_lt')
  c.bft.loss = 'focal_ce'
  assert 'bft.loss' in _error(c)


def _error_any(config):
  """Unknown names raise plain ValueErrors from the registries; the message is what matters."""
  with pytest.raises(ValueError) as e:
    validate.validate(config, 8, check_data=False)
  return str(e.value)
