"""NT-BCE (Appendix E.2), LADE's test prior, the configured test prior and the Table 7 options'
plumbing and validation. The Table 7 losses against their released code: test_losses_reference."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numpy_reference as ref
import table7_reference as R
from engine_helpers import tiny_config
from livt_jax.losses import balanced
from livt_jax.engine import steps
from livt_jax import validate

B, C, D = 6, 7, 5


def _data(seed=0, scale=3.0, smoothing=0.0):
  """Logits, soft (mixed) targets, one-hot targets, features, counts (largest 2000, smallest 5)."""
  rng = np.random.default_rng(seed)
  z = (rng.normal(size=(B, C)) * scale).astype(np.float32)
  soft = rng.dirichlet(np.ones(C), size=B).astype(np.float32)
  labels = rng.integers(0, C, B)
  hard = np.eye(C, dtype=np.float32)[labels] * (1 - smoothing) + smoothing / C
  h = rng.normal(size=(B, D)).astype(np.float32)
  counts = np.sort(rng.integers(5, 2000, size=C))[::-1].copy()
  counts[0], counts[-1] = 2000, 5
  return z, soft, hard.astype(np.float32), h, counts


def _loss(name, counts, z, y, **kw):
  step, h = kw.pop('step', None), kw.pop('features', None)
  prior = kw.pop('test_prior', None)
  fn = balanced.make_loss_fn(name, counts, test_prior=prior, **kw)
  out = fn(jnp.asarray(z), jnp.asarray(y), step=step,
           features=None if h is None else jnp.asarray(h))
  assert out.dtype == jnp.float32 and out.shape == ()
  return float(out)


def test_nt_bce():
  z, soft, hard, _, counts = _data(6, scale=2.0)
  bias = balanced.bal_bce_bias(counts, 1.0, 'official')
  for y in (hard, soft):
    for lam in (1.0, 3.0):
      np.testing.assert_allclose(_loss('nt_bce', counts, z, y, nt_lambda=lam),
                                 ref.nt_bce(z, y, lam), rtol=1e-5)
      np.testing.assert_allclose(
          _loss('bal_nt_bce', counts, z, y, nt_lambda=lam, bias_form='official'),
          ref.nt_bce(z, y, lam, bias), rtol=1e-5)
    # lambda = 1 is BCE / Bal-BCE.
    np.testing.assert_allclose(_loss('nt_bce', counts, z, y, nt_lambda=1.0),
                               _loss('bce', counts, z, y), rtol=1e-6)
    np.testing.assert_allclose(_loss('bal_nt_bce', counts, z, y, nt_lambda=1.0, tau=1.2),
                               _loss('bal_bce', counts, z, y, tau=1.2), rtol=1e-6)


def test_drw_switches_inside_one_compiled_loss():
  z, _, hard, _, counts = _data(3, scale=0.1)
  labels = hard.argmax(1)
  opts = dict(drw_beta=0.999, drw_start_step=10)
  fn = jax.jit(lambda s: balanced.make_loss_fn('ldam_drw', counts, **opts)(
      jnp.asarray(z), jnp.asarray(hard), step=s))
  x = z.astype(np.float64)
  for step, deferred in ((9, False), (10, True)):
    want = R.ldam(x, labels, counts, 0.5, 30.0, R.drw_weights(counts, 0.999, deferred))
    np.testing.assert_allclose(float(fn(jnp.int32(step))), want, rtol=1e-5)
  # drw=False: LiVT's LDAM_loss, no re-weighting at any step.
  off = balanced.make_loss_fn('ldam_drw', counts, drw=False, **opts)
  np.testing.assert_allclose(float(off(jnp.asarray(z), jnp.asarray(hard), step=10)),
                             R.ldam(x, labels, counts, 0.5, 30.0), rtol=1e-5)


def test_lade_test_prior_shifts_the_logits_of_both_terms():
  z, soft, hard, _, counts = _data(4)
  pt = np.arange(1, C + 1, dtype=np.float64)
  pt /= pt.sum()
  x = z.astype(np.float64) + np.log(1 / C + 1e-9) - np.log(pt + 1e-9)
  for y in (hard, soft):
    got = _loss('lade', counts, z, y, lade_alpha=0.3, lade_remine_lambda=0.1, test_prior=pt)
    np.testing.assert_allclose(got, R.lade_hyperconnect(x, y.astype(np.float64), counts, 0.3,
                                                        0.1), rtol=1e-5)
  # alpha = 0 leaves the PC softmax: Bal-CE (Eq. 3) under a uniform test prior.
  np.testing.assert_allclose(_loss('lade', counts, z, soft, lade_alpha=0.0),
                             _loss('bal_ce', counts, z, soft), rtol=1e-6)


def test_unknown_forms_are_refused():
  _, _, hard, _, counts = _data(1)
  with pytest.raises(ValueError, match=r"bft\.cb_form='tf': use one of livt, cui"):
    balanced.make_loss_fn('cb_ce', counts, cb_form='tf')


def test_test_prior_from_config_reaches_the_biases():
  z, soft, hard, _, counts = _data(7)
  pi = counts / counts.sum()
  assert balanced.test_prior_from_config('uniform', counts) is None
  np.testing.assert_allclose(balanced.test_prior_from_config('train', counts), pi, rtol=1e-12)
  pt = balanced.test_prior_from_config('1,2,3,4,5,6,7', counts)
  np.testing.assert_allclose(pt, np.arange(1, 8) / 28, rtol=1e-12)
  # Thm. 3 in Bal-BCE; the logit adjustment tau (log pi - log pi^t) in Bal-CE.
  want = 1.1 * ((np.log(pi) - np.log(pt)) - (np.log1p(-pi) - np.log1p(-pt)))
  np.testing.assert_allclose(_loss('bal_bce', counts, z, soft, tau=1.1, test_prior=pt),
                             ref_bce(z + want, soft), rtol=1e-5)
  np.testing.assert_allclose(_loss('bal_ce', counts, z, soft, tau=1.1, test_prior=pt),
                             ref_ce(z + 1.1 * (np.log(pi) - np.log(pt)), soft), rtol=1e-5)
  # pi^t = pi: the bias vanishes.
  train = balanced.test_prior_from_config('train', counts)
  np.testing.assert_allclose(_loss('bal_bce', counts, z, soft, test_prior=train),
                             _loss('bce', counts, z, soft), rtol=1e-6)
  for bad in ('balanced', '1,2', '1,2,3,4,5,6,-7'):
    with pytest.raises(ValueError, match='test_prior'):
      balanced.test_prior_from_config(bad, counts)


def ref_ce(z, y):
  return float(np.mean([-np.dot(yb, ref._log_softmax(zb)) for zb, yb in zip(z, y)]))


def ref_bce(z, y):
  z, y = np.asarray(z, np.float64), np.asarray(y, np.float64)
  return float(np.mean((y * np.logaddexp(0, -z) + (1 - y) * np.logaddexp(0, z)).sum(1)))


def test_config_options_reach_the_loss():
  config = tiny_config(**{'bft.loss': 'ldam_drw', 'bft.epochs': 10, 'bft.batch_size': 100,
                          'bft.drw_epoch': 2.5, 'bft.ldam_scale': 10.0})
  counts = [600, 300, 100]                        # 1000 images: 10 steps per epoch
  opts = steps.loss_options(config, counts)
  assert opts['drw_start_step'] == 25 and opts['ldam_scale'] == 10.0
  assert opts['ib_start_step'] == 50              # unset ib_epoch: half of bft.epochs
  config.bft.drw_epoch = None
  assert steps.loss_options(config, counts)['drw_start_step'] == 80  # 0.8 * epochs


@pytest.mark.parametrize('override, match', [
    ({'bft.loss': 'focal_ce'}, r"bft\.loss='focal_ce': use one of ce, bal_ce, .*ldam_drw"),
    ({'bft.cb_beta': 1.0}, r"bft\.cb_beta=1\.0: use a beta in \[0, 1\)"),
    ({'bft.focal_gamma': -1.0}, r'bft\.focal_gamma=-1\.0: use a gamma >= 0'),
    ({'bft.nt_lambda': 0.0}, r'bft\.nt_lambda=0\.0: use a lambda > 0'),
    ({'bft.drw_epoch': -1.0}, r'bft\.drw_epoch=-1\.0: use an epoch >= 0'),
    ({'bft.loss': 'ce', 'bft.test_prior': 'train'}, r'does not use a test prior'),
    ({'bft.bias_form': 'official', 'bft.test_prior': 'train'}, r"'official' bias has no test"),
    ({'bft.test_prior': '1,2'}, r"test_prior='1,2': use 10 positive numbers"),
    ({'bft.test_prior': 'skewed'}, r"test_prior='skewed': use 'uniform', 'train'"),
    ({'dataset.test_imbalance': 0.5}, r'test_imbalance=0\.5: use a finite imbalance'),
    ({'dataset.name': 'inat18', 'dataset.test_imbalance': 10.0}, r'has a fixed test set'),
    ({'bft.cb_form': 'tf'}, r"bft\.cb_form='tf': use one of livt, cui"),
    ({'bft.lade_form': 'x'}, r"bft\.lade_form='x': use one of hyperconnect, livt"),
    ({'bft.ib_weights': 'sum1'}, r"bft\.ib_weights='sum1': use one of code, paper"),
    ({'bft.focal_form': 'lin'}, r"bft\.focal_form='lin': use one of sample, class"),
    ({'bft.ldam_head': 'cosine'}, r"bft\.ldam_head='cosine': use one of linear, normed"),
    ({'bft.ldam_head': 'normed'}, r"cosine head is LDAM's \(bft\.loss=ldam_drw\)"),
])
def test_validate_rejects_bad_loss_settings(override, match):
  with pytest.raises(validate.ConfigError, match=match):
    validate.validate(tiny_config(**override), 1, check_data=False)


def test_validate_accepts_every_loss():
  for name in balanced.LOSSES:
    validate.validate(tiny_config(**{'bft.loss': name}), 1, check_data=False)
  validate.validate(tiny_config(**{'bft.loss': 'ldam_drw', 'bft.ldam_head': 'normed',
                                   'bft.drw': False}), 1, check_data=False)
  validate.validate(tiny_config(**{'bft.test_prior': '1,1,1,1,1,2,2,2,2,2',
                                   'dataset.test_imbalance': 100.0}), 1, check_data=False)
