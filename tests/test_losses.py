"""LiVT losses vs float64 NumPy: values, biases (Eq. 3, 10, Thm. 3), gradients (Appendix B)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from livt_jax.losses import balanced

B, C = 6, 7


def _data(seed=0, scale=3.0):
  rng = np.random.default_rng(seed)
  logits = (rng.normal(size=(B, C)) * scale).astype(np.float32)
  soft = rng.dirichlet(np.ones(C), size=B).astype(np.float32)    # rows sum to 1 (CE)
  multi = rng.uniform(size=(B, C)).astype(np.float32)            # any in [0, 1] (BCE)
  counts = rng.integers(1, 2000, size=C)
  return logits, soft, multi, counts


def _np_ce(z, y):
  z = np.asarray(z, np.float64)
  logp = z - z.max(1, keepdims=True)
  logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
  return float(np.mean(-(y * logp).sum(1)))


def _np_bce(z, y):
  z, y = np.asarray(z, np.float64), np.asarray(y, np.float64)
  # -log sig(z) = log(1 + e^-z); -log(1 - sig(z)) = log(1 + e^z)
  return float(np.mean((y * np.logaddexp(0, -z) + (1 - y) * np.logaddexp(0, z)).sum(1)))


def _np_prior(counts):
  counts = np.asarray(counts, np.float64)
  return counts / counts.sum()


def _np_eq10(counts, tau=1.0):
  pi = _np_prior(counts)
  return tau * (np.log(pi) - np.log(1 - pi) + np.log(len(pi) - 1))


def test_plain_losses_match_numpy():
  z, soft, multi, _ = _data()
  ce = balanced.make_loss_fn('ce')(jnp.asarray(z), jnp.asarray(soft))
  bce = balanced.make_loss_fn('bce')(jnp.asarray(z), jnp.asarray(multi))
  assert ce.dtype == jnp.float32 and ce.shape == () and bce.dtype == jnp.float32
  np.testing.assert_allclose(float(ce), _np_ce(z, soft), rtol=1e-5)
  np.testing.assert_allclose(float(bce), _np_bce(z, multi), rtol=1e-5)


@pytest.mark.parametrize('seed', [0, 1])
def test_balanced_losses_match_numpy(seed):
  z, soft, multi, counts = _data(seed)
  pi = _np_prior(counts)
  got = balanced.make_loss_fn('bal_ce', counts, tau=1.0)(jnp.asarray(z), jnp.asarray(soft))
  np.testing.assert_allclose(float(got), _np_ce(z + np.log(pi), soft), rtol=1e-5)
  for tau in (1.0, 1.05):
    got = balanced.make_loss_fn('bal_bce', counts, tau=tau)(jnp.asarray(z), jnp.asarray(multi))
    np.testing.assert_allclose(float(got), _np_bce(z + _np_eq10(counts, tau), multi), rtol=1e-5)
  official = balanced.make_loss_fn('bal_bce', counts, tau=3.0, bias_form='official')
  want = _np_bce(z + np.log(pi) - np.log(1 - pi), multi)  # Thm. 2, tau ignored
  np.testing.assert_allclose(float(official(jnp.asarray(z), jnp.asarray(multi))), want,
                             rtol=1e-5)


def test_bias_forms():
  _, _, _, counts = _data(3)
  pi = _np_prior(counts)
  np.testing.assert_allclose(balanced.bal_ce_bias(counts), np.log(pi), rtol=1e-12)
  np.testing.assert_allclose(balanced.bal_bce_bias(counts, 0.5), _np_eq10(counts, 0.5),
                             rtol=1e-12)
  # Thm. 3 with a uniform test prior is Eq. 10.
  np.testing.assert_allclose(balanced.bal_bce_bias(counts, 1.3, test_prior=np.ones(C)),
                             _np_eq10(counts, 1.3), rtol=1e-10, atol=1e-12)
  # Thm. 3 with any test prior.
  pt = _np_prior(np.arange(1, C + 1))
  want = 2.0 * ((np.log(pi) - np.log(pt)) - (np.log(1 - pi) - np.log(1 - pt)))
  np.testing.assert_allclose(balanced.bal_bce_bias(counts, 2.0, test_prior=np.arange(1, C + 1)),
                             want, rtol=1e-12)
  # Paper and official forms differ by the constant log(C - 1) (tau = 1).
  np.testing.assert_allclose(
      balanced.bal_bce_bias(counts) - balanced.bal_bce_bias(counts, form='official'),
      np.log(C - 1), rtol=1e-12)


def test_tau_zero_bal_bce_is_bce():
  z, _, multi, counts = _data(4)
  a = balanced.make_loss_fn('bal_bce', counts, tau=0.0)(jnp.asarray(z), jnp.asarray(multi))
  b = balanced.sigmoid_bce(jnp.asarray(z), jnp.asarray(multi))
  assert float(a) == float(b)


@pytest.mark.parametrize('name', balanced.LOSSES)
def test_extreme_logits_give_finite_loss_and_grads(name):
  _, soft, _, counts = _data(5)
  z = np.where(np.arange(C) % 2 == 0, 1e4, -1e4) * np.ones((B, 1))
  fn = balanced.make_loss_fn(name, counts)
  features = jnp.ones((B, 4))  # the head's input, for IB
  for step in (0, 10**6):      # before and after the deferred phases (LDAM-DRW, IB)
    value, grad = jax.value_and_grad(lambda x: fn(x, jnp.asarray(soft), step=step,
                                                  features=features))(jnp.asarray(z, jnp.float32))
    assert np.isfinite(float(value)) and float(value) > 0
    assert np.all(np.isfinite(np.asarray(grad)))


def test_gradients_match_appendix_b():
  z, soft, multi, counts = _data(6)
  b_bce = _np_eq10(counts)
  g = jax.grad(balanced.make_loss_fn('bal_bce', counts))(jnp.asarray(z), jnp.asarray(multi))
  sig = 1.0 / (1.0 + np.exp(-(z + b_bce)))
  np.testing.assert_allclose(np.asarray(g), (sig - multi) / B, rtol=1e-4, atol=1e-7)
  b_ce = np.log(_np_prior(counts))
  g = jax.grad(balanced.make_loss_fn('bal_ce', counts))(jnp.asarray(z), jnp.asarray(soft))
  e = np.exp(z + b_ce - (z + b_ce).max(1, keepdims=True))
  np.testing.assert_allclose(np.asarray(g), (e / e.sum(1, keepdims=True) - soft) / B,
                             rtol=1e-4, atol=1e-7)


def test_one_hot_smoothing():
  got = np.asarray(balanced.one_hot(jnp.array([2, 0]), 4, smoothing=0.1))
  want = np.full((2, 4), 0.025)
  want[0, 2] = want[1, 0] = 0.925
  np.testing.assert_allclose(got, want, rtol=1e-6)
  np.testing.assert_allclose(got.sum(1), 1.0, rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(balanced.one_hot(jnp.array([1]), 3)), [[0, 1, 0]])


def test_clear_errors():
  with pytest.raises(ValueError, match=r"bft\.loss='focal_ce'.*ce, bal_ce, bce, bal_bce, cb_ce"):
    balanced.make_loss_fn('focal_ce')
  with pytest.raises(ValueError, match=r'classes \[1\] have \[0.0\] training images'):
    balanced.make_loss_fn('bal_bce', [3, 0, 5])
  with pytest.raises(ValueError, match='needs the training class counts'):
    balanced.make_loss_fn('bal_ce')
  with pytest.raises(ValueError, match='bias_form'):
    balanced.make_loss_fn('bal_bce', [1, 2], bias_form='paperish')


def _raw_logit_targets(name, counts, eps, tau):
  """Float64 reference: the raw logits the smoothed one-hot targets ask for, row y = class y."""
  c = len(counts)
  pi = np.asarray(counts, np.float64) / np.sum(counts)
  off, on = eps / c, 1 - eps + eps / c
  target = np.full((c, c), off) + np.eye(c) * (on - off)
  if name == 'bal_ce':
    return np.log(target) - tau * np.log(pi)  # softmax: up to a constant per row
  bias = tau * (np.log(pi) - np.log(1 - pi) + np.log(c - 1))
  return np.log(target) - np.log(1 - target) - bias


@pytest.mark.parametrize('name,tau', [('bal_bce', 1.5), ('bal_ce', 1.0)])
def test_smoothing_inversion_note_names_the_largest_eps_that_keeps_the_order(name, tau):
  counts = [min(int(6000 * 100 ** (-i / 9)), 5900) for i in range(10)]  # Fashion-MNIST-LT
  note = balanced.smoothing_inversion_note(name, counts, 0.1, tau=tau)
  assert note is not None and 'label_smoothing=0.1 ' in note
  # At eps = 0.1 the reference ranks class 9 above class 0 on class 0's images.
  assert np.argmax(_raw_logit_targets(name, counts, 0.1, tau)[0]) == 9
  safe = float(note.split('--config.bft.label_smoothing=')[1].split(' ')[0])
  assert 0 < safe < 0.1
  assert all(np.argmax(_raw_logit_targets(name, counts, safe, tau), axis=1) == np.arange(10))
  assert np.argmax(_raw_logit_targets(name, counts, safe + 2e-4, tau)[0]) != 0
  assert balanced.smoothing_inversion_note(name, counts, safe, tau=tau) is None


def test_smoothing_inversion_note_is_silent_where_the_order_holds():
  counts = [min(int(6000 * 100 ** (-i / 9)), 5900) for i in range(10)]
  assert balanced.smoothing_inversion_note('bal_bce', counts, 0.0, tau=1.5) is None
  assert balanced.smoothing_inversion_note('bal_bce', counts, 0.1, tau=1.0) is None
  assert balanced.smoothing_inversion_note('bce', counts, 0.1) is None  # no bias
  # Many classes: eps / C is tiny, so the paper's 0.1 is fine at iNat18-like imbalance.
  many = [max(2, int(1000 * 500 ** (-i / 999))) for i in range(1000)]
  assert balanced.smoothing_inversion_note('bal_bce', many, 0.1, tau=1.0) is None
