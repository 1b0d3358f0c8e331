"""Table 7 losses against float64 NumPy transcriptions of their released code
(tests/table7_reference.py): values and gradients, hard and mixed targets, three class-count
profiles (CIFAR-10-LT and CIFAR-100-LT at imbalance 100, an ImageNet-LT-like 1000 classes with
1280..5 images).

Gradients: JAX's (float32) against central differences of the float64 reference, for every
label entry and a random sample of the others, plus one random direction over all entries.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import table7_reference as R
from livt_jax.losses import balanced
from livt_jax.losses import table7


def _exp_profile(n_max, n_min, c):
  # Cao et al.'s imbalance_cifar.py: int(n_max * (n_min / n_max)^(i / (C - 1))).
  return np.array([int(n_max * (n_min / n_max) ** (i / (c - 1))) for i in range(c)])


PROFILES = {'cifar10_lt': (_exp_profile(5000, 50, 10), 8),
            'cifar100_lt': (_exp_profile(500, 5, 100), 8),
            'imagenet_lt': (_exp_profile(1280, 5, 1000), 6)}
TARGETS = ('hard', 'mixup', 'mixup_smooth')
LAM, SMOOTH, D = 0.7, 0.1, 5


def _data(profile, targets, scale, seed=0):
  counts, b = PROFILES[profile]
  c = counts.size
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, c, b)
  labels[0], labels[1], labels[2] = c - 1, 0, 0       # the rarest class and a repeated one
  hot = np.eye(c)[labels]
  if targets == 'hard':
    y = hot
  else:  # our mixup: every image with its partner in the reversed batch (timm batch mode)
    if targets == 'mixup_smooth':
      hot = hot * (1 - SMOOTH) + SMOOTH / c
    y = LAM * hot + (1 - LAM) * hot[::-1]
  z = rng.normal(size=(b, c)) * scale
  h = rng.normal(size=(b, D)).astype(np.float32).astype(np.float64)
  return counts, labels, y.astype(np.float32).astype(np.float64), z.astype(np.float32), h


def _per_label_weighted(per_sample, x, y, labels, weights):
  """A torch-style weighted mean (sum w_y l / sum w_y) of an index-based reference, extended to
  soft y by weighting label c's loss with y_bc."""
  if labels is not None:
    return np.sum(weights[labels] * per_sample(x, labels)) / np.sum(weights[labels])
  return np.sum(R.soft(lambda lab: weights[lab] * per_sample(x, lab), x, y)) / np.sum(y @ weights)


def _ldam_ref(x, y, h, labels, counts, drw, deferred):
  w = R.drw_weights(counts, 0.9999, deferred) if drw else np.ones(counts.size)
  per = lambda xx, lab: R.ldam(xx, lab, counts, 0.5, 30.0, reduction='none')
  return _per_label_weighted(per, x, y, labels, w)


def _cb_ce_ref(x, y, h, labels, counts):
  if labels is not None:
    return R.cb_ce_livt(x, labels, counts, 0.9999)
  per = lambda xx, lab: R.cross_entropy(xx, lab, reduction='none')
  return _per_label_weighted(per, x, y, None, R.cb_weights(counts, 0.9999))


def _focal_ref(x, y, h, labels, counts):
  return (R.focal_ldam_drw(x, labels, 2.0) if labels is not None
          else R.focal_sample_soft(x, y, 2.0))


# name -> (bft.loss, options, logit scale, reference(x, y, h, labels or None, counts))
CASES = {
    'cb_ce': ('cb_ce', {}, 2.0, _cb_ce_ref),
    'cb_bce': ('cb_bce', {}, 2.0, lambda x, y, h, lab, n: R.cb_bce_livt(x, y, n, 0.9999)),
    'cb_ce_cui': ('cb_ce', {'cb_form': 'cui'}, 2.0,
                  lambda x, y, h, lab, n: R.cb_cui(x, y, n, 0.9999, 'ce')),
    'cb_bce_cui': ('cb_bce', {'cb_form': 'cui'}, 2.0,
                   lambda x, y, h, lab, n: R.cb_cui(x, y, n, 0.9999, 'bce')),
    'focal': ('focal', {'focal_gamma': 2.0}, 2.0, _focal_ref),
    'focal_class': ('focal', {'focal_gamma': 2.0, 'focal_form': 'class'}, 2.0,
                    lambda x, y, h, lab, n: R.focal_lin_class(x, y, 2.0)),
    # Linear-head logits of O(0.1-1) (LiVT's LDAM row scales them by s = 30 too).
    'ldam': ('ldam_drw', {'drw': False}, 0.3,
             functools.partial(_ldam_ref, drw=False, deferred=False)),
    'ldam_drw_before': ('ldam_drw', {'drw_start_step': 100}, 0.3,
                        functools.partial(_ldam_ref, drw=True, deferred=False)),
    'ldam_drw_after': ('ldam_drw', {'drw_start_step': 5}, 0.3,
                       functools.partial(_ldam_ref, drw=True, deferred=True)),
    'lade': ('lade', {'lade_alpha': 0.1, 'lade_remine_lambda': 0.1}, 2.0,
             lambda x, y, h, lab, n: R.lade_hyperconnect(x, y, n, 0.1, 0.1)),
    'lade_livt': ('lade', {'lade_form': 'livt', 'lade_remine_lambda': 0.1}, 2.0,
                  lambda x, y, h, lab, n: R.lade_regulariser(x, y, n, 0.1)),
    'ib': ('ib', {'ib_alpha': 1000.0, 'ib_start_step': 5}, 2.0,
           lambda x, y, h, lab, n: R.ib(x, y, h, n, 1000.0)),
    'ib_paper': ('ib', {'ib_alpha': 1000.0, 'ib_weights': 'paper'}, 2.0,
                 lambda x, y, h, lab, n: R.ib(x, y, h, n, 1000.0, 'paper')),
}
STEP = 7  # past every start step above


def _fd_entries(rng, labels, shape, extra=24):
  """Entries to check by finite differences: every label column of every row, plus `extra`."""
  rows = np.arange(shape[0])
  picks = {(int(r), int(c)) for r, c in zip(rows, labels)}
  picks |= {(int(r), int(c)) for r, c in zip(rows, labels[::-1])}   # the mixup partners
  picks |= {(int(rng.integers(shape[0])), int(rng.integers(shape[1]))) for _ in range(extra)}
  return sorted(picks)


def _central(f, x, index, eps):
  up, down = x.copy(), x.copy()
  up[index] += eps
  down[index] -= eps
  return (f(up) - f(down)) / (2 * eps)


def measure(case, profile, targets):
  """(value relative difference, gradient relative difference) of one loss against its reference.

  The gradient difference is max |g - g_ref| over the checked entries (and the directional
  derivative) divided by max |g_ref| over them.
  """
  name, options, scale, ref = CASES[case]
  counts, labels, y, z, h = _data(profile, targets, scale)
  fn = balanced.make_loss_fn(name, counts, **options)
  needs_h = name in balanced.NEEDS_FEATURES
  jax_loss = lambda zz, hh: fn(zz, jnp.asarray(y, jnp.float32), step=STEP,
                               features=hh if needs_h else None)
  value, (gz, gh) = jax.value_and_grad(jax_loss, argnums=(0, 1))(jnp.asarray(z), jnp.asarray(h))
  x = z.astype(np.float64)
  ref_labels = labels if targets == 'hard' else None
  f = lambda xx, hh=h: ref(xx, y, hh, ref_labels, counts)
  want = f(x)
  value_rel = abs(float(value) - want) / abs(want)

  rng = np.random.default_rng(1)
  eps = 1e-5 * scale
  got, exp = [], []
  # Fewer sampled entries at 1000 classes: LDAM's soft reference is a loop over the classes.
  for index in _fd_entries(rng, labels, x.shape, extra=24 if x.shape[1] <= 100 else 6):
    got.append(float(gz[index]))
    exp.append(_central(f, x, index, eps))
  v = rng.normal(size=x.shape)                        # one direction through every entry
  got.append(float(jnp.sum(gz * v)))
  exp.append((f(x + eps * v) - f(x - eps * v)) / (2 * eps))
  if needs_h:  # IB's weight depends on the features too; the reference does not detach them
    fh = lambda hh: ref(x, y, hh, ref_labels, counts)
    for index in np.ndindex(h.shape):
      got.append(float(gh[index]))
      exp.append(_central(fh, h, index, 1e-6))
  got, exp = np.array(got), np.array(exp)
  return value_rel, float(np.max(np.abs(got - exp)) / np.max(np.abs(exp)))


@pytest.mark.parametrize('profile', list(PROFILES))
@pytest.mark.parametrize('targets', TARGETS)
@pytest.mark.parametrize('case', list(CASES))
def test_loss_matches_its_reference_code(case, profile, targets):
  value_rel, grad_rel = measure(case, profile, targets)
  assert value_rel < 2e-5, value_rel
  assert grad_rel < 1e-4, grad_rel


def test_ldam_mixed_targets_are_livt_mixup_form():
  # LiVT's LDAM_loss feeds mixup as lam * l(y1) + (1 - lam) * l(y2) over the top-2 classes;
  # without smoothing the per-class extension is exactly that.
  for profile in PROFILES:
    counts, _, y, z, _ = _data(profile, 'mixup', 0.3)
    got = balanced.make_loss_fn('ldam_drw', counts, drw=False)(jnp.asarray(z), jnp.asarray(y))
    want = R.ldam_livt_mixup(z.astype(np.float64), y, counts, 0.5, 30.0)
    np.testing.assert_allclose(float(got), want, rtol=2e-5)


def test_focal_forms_agree_on_one_hot_and_not_on_mixed_targets():
  counts, labels, y, z, _ = _data('cifar100_lt', 'hard', 2.0)
  np.testing.assert_allclose(R.focal_lin_class(z.astype(np.float64), y, 2.0),
                             R.focal_ldam_drw(z.astype(np.float64), labels, 2.0), rtol=1e-12)
  _, _, ym, zm, _ = _data('cifar100_lt', 'mixup', 2.0)
  forms = [float(balanced.make_loss_fn('focal', counts, focal_form=f)(jnp.asarray(zm),
                                                                     jnp.asarray(ym)))
           for f in ('sample', 'class')]
  assert abs(forms[0] - forms[1]) > 1e-3 * forms[0], forms


def test_ib_before_its_start_is_plain_ce():
  counts, labels, y, z, h = _data('cifar100_lt', 'hard', 2.0)
  fn = balanced.make_loss_fn('ib', counts, ib_start_step=5)
  got = fn(jnp.asarray(z), jnp.asarray(y), step=4, features=jnp.asarray(h))
  np.testing.assert_allclose(float(got), R.cross_entropy(z.astype(np.float64), labels), rtol=1e-5)


def test_ib_weights_sum_to_the_class_count():
  # The reference's IBReweight: the switch to IB keeps the loss's scale (C times the paper's).
  counts = PROFILES['imagenet_lt'][0]
  code = table7.ib_class_weights(counts, 'code')
  np.testing.assert_allclose(code.sum(), 1000.0, rtol=1e-12)
  np.testing.assert_allclose(code, R.ib_weights(counts), rtol=1e-12)
  np.testing.assert_allclose(table7.ib_class_weights(counts, 'paper'),
                             code / 1000.0, rtol=1e-12)


def test_lade_keeps_classes_absent_from_the_batch():
  # hyperconnect's LADELoss sums over every class: an absent class still adds
  # pi_c (T2_c + lam T2_c^2). Dropping them (the earlier estimator) changes the value.
  counts, labels, y, z, _ = _data('cifar100_lt', 'hard', 2.0)
  absent = np.setdiff1d(np.arange(100), labels)
  x = z.astype(np.float64)
  want = R.lade_regulariser(x, y, counts, 0.1)
  got = float(balanced.make_loss_fn('lade', counts, lade_form='livt')(jnp.asarray(z),
                                                                      jnp.asarray(y)))
  np.testing.assert_allclose(got, want, rtol=2e-5)
  pi = counts / counts.sum()
  t2 = (np.log(np.exp(x - np.log(pi + 1e-9) + np.log(0.01 + 1e-9)).sum(0)) - np.log(len(x)))
  absent_part = np.sum(pi[absent] * (t2[absent] + 0.1 * t2[absent] ** 2))
  assert abs(absent_part) > 1e-2 * abs(want), (absent_part, want)
