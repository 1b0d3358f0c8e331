"""bft.head_bias_init='prior': the BFT head starts where the training loss is calibrated."""
import jax
import numpy as np
import pytest

from livt_jax.losses import balanced
from livt_jax.engine import sharding
from livt_jax.engine import steps
from livt_jax.engine import train
from engine_helpers import tiny_config

COUNTS = [5900, 3597, 2154, 1291, 775, 464, 278, 166, 100, 60]


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


@pytest.mark.parametrize('tau', [1.0, 1.5])
def test_bal_bce_prior_bias_starts_the_loss_at_the_class_shares(tau):
  pi = np.array(COUNTS, np.float64) / sum(COUNTS)
  c = len(COUNTS)
  # Eq. 10 written out here, independently of balanced.bal_bce_bias.
  eq10 = tau * (np.log(pi) - np.log(1 - pi) + np.log(c - 1))
  b = balanced.prior_head_bias('bal_bce', COUNTS, tau)
  np.testing.assert_allclose(_sigmoid(b + eq10), pi, rtol=1e-12)
  if tau == 1.0:  # the same constant for every class: test-time argmax starts uniform
    np.testing.assert_allclose(b, -np.log(c - 1), rtol=1e-12)
  else:
    assert np.ptp(b) > 0.1


def test_bce_prior_bias_is_the_log_odds_of_the_shares():
  pi = np.array(COUNTS, np.float64) / sum(COUNTS)
  np.testing.assert_allclose(_sigmoid(balanced.prior_head_bias('bce', COUNTS)), pi, rtol=1e-12)


def test_prior_bias_with_a_test_prior_uses_thm3_offset():
  pt = np.linspace(1, 2, len(COUNTS))
  pt /= pt.sum()
  offset = balanced.bal_bce_bias(COUNTS, 1.0, 'paper', pt)
  b = balanced.prior_head_bias('bal_bce', COUNTS, 1.0, 'paper', pt)
  pi = np.array(COUNTS, np.float64) / sum(COUNTS)
  np.testing.assert_allclose(_sigmoid(b + offset), pi, rtol=1e-12)


def test_prior_init_is_for_sigmoid_losses_only():
  with pytest.raises(ValueError, match="head_bias_init='prior' is for the sigmoid losses"):
    balanced.prior_head_bias('bal_ce', COUNTS)
  with pytest.raises(ValueError, match="use 'zero' or 'prior'"):
    steps.initial_head_bias(tiny_config(**{'bft.head_bias_init': 'ones'}), COUNTS)
  # A config with 'prior' (the embedded default) still runs a softmax or Table 7 loss: zeros.
  for loss in ('ce', 'bal_ce', 'ldam_drw'):
    assert steps.initial_head_bias(
        tiny_config(**{'bft.head_bias_init': 'prior', 'bft.loss': loss}), COUNTS) is None


def test_fresh_bft_state_carries_the_prior_bias_and_zero_keeps_the_model_init():
  config = tiny_config(**{'bft.head_bias_init': 'prior'})
  mesh = sharding.make_mesh(config, jax.devices()[:1])
  bias = steps.initial_head_bias(config, COUNTS)
  assert bias is not None
  stage = train.build_stage(config, 'bft', mesh, sum(COUNTS), 1, len(COUNTS), head_bias=bias)
  state = stage.init_state(jax.random.key(0), None)
  np.testing.assert_allclose(np.asarray(state.params['head']['bias']), bias, rtol=1e-6)
  plain = train.build_stage(config, 'bft', mesh, sum(COUNTS), 1, len(COUNTS))
  zero = plain.init_state(jax.random.key(0), None).params
  np.testing.assert_array_equal(np.asarray(zero['head']['bias']), 0.0)
  assert steps.initial_head_bias(tiny_config(**{'bft.head_bias_init': 'zero'}), COUNTS) is None
  # Only the bias differs: the same rng gives the same kernels.
  np.testing.assert_array_equal(np.asarray(zero['head']['kernel']),
                                np.asarray(state.params['head']['kernel']))
