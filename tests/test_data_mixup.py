"""Mixup / CutMix on device: target sums, lambda vs pixel fraction, identity cases, jit."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from livt_jax.data import mixup

B, H, W, C, K = 8, 16, 12, 3, 10


def batch():
  # Image i is constant i + 1, so every output pixel tells which image it came from.
  images = jnp.broadcast_to(jnp.arange(1, B + 1, dtype=jnp.float32)[:, None, None, None],
                            (B, H, W, C))
  labels = jnp.arange(B) % K
  return images, mixup.one_hot_smoothed(labels, K, 0.1)


@pytest.mark.parametrize('seed', range(4))
def test_cutmix_lambda_matches_pixel_fraction(seed):
  images, targets = batch()
  out, mixed = mixup.mixup_cutmix(jax.random.key(seed), images, targets, mixup_alpha=0.0,
                                  cutmix_alpha=1.0)
  out, mixed = np.asarray(out), np.asarray(mixed)
  np.testing.assert_allclose(mixed.sum(-1), 1.0, atol=1e-6)
  for i in range(B):
    own = np.mean(out[i] == i + 1)
    partner = np.mean(out[i] == B - i)
    assert own + partner == pytest.approx(1.0)
    expected = own * np.asarray(targets)[i] + partner * np.asarray(targets)[B - 1 - i]
    np.testing.assert_allclose(mixed[i], expected, atol=1e-6)


def test_mixup_blends_and_targets_sum_to_one():
  images, targets = batch()
  out, mixed = mixup.mixup_cutmix(jax.random.key(1), images, targets, mixup_alpha=0.8,
                                  cutmix_alpha=0.0)
  out, mixed = np.asarray(out), np.asarray(mixed)
  lam = (out[0, 0, 0, 0] - B) / (1 - B)  # out = lam * 1 + (1 - lam) * B.
  assert np.allclose(out[0], out[0, 0, 0, 0])
  np.testing.assert_allclose(
      mixed[0], lam * np.asarray(targets)[0] + (1 - lam) * np.asarray(targets)[-1], atol=1e-5)
  np.testing.assert_allclose(mixed.sum(-1), 1.0, atol=1e-6)


def test_identity_cases():
  images, targets = batch()
  for kwargs in (dict(mixup_alpha=0.0, cutmix_alpha=0.0),
                 dict(mixup_alpha=0.8, cutmix_alpha=1.0, mix_prob=0.0)):
    out, mixed = mixup.mixup_cutmix(jax.random.key(0), images, targets, **kwargs)
    np.testing.assert_array_equal(out, images)
    np.testing.assert_array_equal(mixed, targets)


def test_jit_and_switch_uses_both_modes():
  images, targets = batch()
  fn = jax.jit(functools.partial(mixup.mixup_cutmix, mixup_alpha=0.8, cutmix_alpha=1.0,
                                 switch_prob=0.5, mix_prob=1.0))
  modes = set()
  for seed in range(16):
    out, mixed = fn(jax.random.key(seed), images, targets)
    np.testing.assert_allclose(np.asarray(mixed).sum(-1), 1.0, atol=1e-6)
    values = np.unique(np.asarray(out[0]))
    if set(values) == {1.0, float(B)}:
      modes.add('cutmix')  # Own pixels plus a pasted box of the partner's.
    elif len(values) == 1 and values[0] not in (1.0, float(B)):
      modes.add('mixup')  # One blended value.
    else:
      modes.add('other')
  assert modes == {'cutmix', 'mixup'}


def test_one_hot_smoothed():
  t = np.asarray(mixup.one_hot_smoothed(jnp.array([2]), 4, 0.2))
  np.testing.assert_allclose(t, [[0.05, 0.05, 0.85, 0.05]], atol=1e-7)
