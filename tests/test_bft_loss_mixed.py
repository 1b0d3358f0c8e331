"""`steps.bft_loss_fn` with mixup / CutMix on (the paper's ImageNet-LT / iNat18 / Places-LT
recipes) trains on the mixed soft targets, checked against a NumPy loss on those targets.

Image b is its label's one-hot vector in every pixel (one channel per class), so the mean over
the pixels of whatever image the model receives is exactly its mixed one-hot target: mixup
blends two such images, CutMix pastes a box whose area is 1 - lambda. The probe model records
its input, and the reference reads the targets off it, independently of the mixing code.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from engine_helpers import COUNTS, tiny_config
from livt_jax.engine import steps

C, B, SIDE, EPS = 10, 8, 8, 0.1
OFFSET = np.linspace(-0.5, 0.5, C)


class ProbeModel:
  """Logits 6 * (pixel mean) - 3 + OFFSET; every input it is applied to is kept in `seen`."""

  def __init__(self):
    self.seen = []

  def apply(self, variables, images, *, train, rngs=None):
    del variables, train, rngs
    self.seen.append(np.asarray(images, np.float64))
    return 6.0 * jnp.mean(images, axis=(1, 2)) - 3.0 + jnp.asarray(OFFSET, jnp.float32)


def _reference(loss, images):
  m = images.mean(axis=(1, 2))                   # the mixed one-hot target of each image
  t = m * (1 - EPS) + EPS / C                     # timm: smoothing then mixing (affine: same)
  z = 6.0 * m - 3.0 + OFFSET
  pi = COUNTS / COUNTS.sum()
  if loss == 'bal_bce':  # Eq. 10 with tau 1, summed over classes, mean over the batch
    zb = z + np.log(pi) - np.log(1 - pi) + np.log(C - 1)
    return np.mean(np.sum(np.logaddexp(0, -zb) * t + np.logaddexp(0, zb) * (1 - t), axis=1)), m
  zb = z + np.log(pi)   # Bal-CE, Eq. 3
  logp = zb - zb.max(1, keepdims=True)
  logp -= np.log(np.exp(logp).sum(1, keepdims=True))
  return np.mean(-np.sum(t * logp, axis=1)), m


@pytest.mark.parametrize('loss', ['bal_bce', 'bal_ce'])
@pytest.mark.parametrize('mode', ['mixup', 'cutmix'])
def test_bft_loss_trains_on_the_mixed_targets(loss, mode):
  config = tiny_config(**{'bft.loss': loss, 'bft.tau': 1.0, 'bft.bias_form': 'paper',
                          'bft.mix_prob': 1.0, 'bft.label_smoothing': EPS,
                          'bft.mixup_alpha': 0.8 if mode == 'mixup' else 0.0,
                          'bft.cutmix_alpha': 1.0 if mode == 'cutmix' else 0.0})
  model = ProbeModel()
  loss_fn = steps.bft_loss_fn(model, config, COUNTS)
  labels = np.array([0, 9, 3, 3, 5, 1, 7, 2], np.int32)
  images = np.broadcast_to(np.eye(C, dtype=np.float32)[labels][:, None, None, :],
                           (B, SIDE, SIDE, C)).copy()
  mixed_rows = 0
  for seed in range(3):
    model.seen.clear()
    got, _ = loss_fn({}, {'image': jnp.asarray(images), 'label': jnp.asarray(labels)},
                     jax.random.key(seed), 0)
    (seen,) = model.seen
    want, m = _reference(loss, seen)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    mixed_rows += int(np.sum(m.max(1) < 0.99))
  # The batches were mixed (two classes in most rows), so a loss on the first image's label
  # (or on the unmixed one-hot) differs from the reference.
  assert mixed_rows >= 8, mixed_rows
