"""bft.ldam_head='normed': LDAM's cosine classifier (kaidic/LDAM-DRW NormedLinear) in the ViT."""
import jax
import numpy as np

from engine_helpers import tiny_config
from livt_jax.models import factory
from livt_jax.models import vit


def test_normed_head_is_the_cosine_of_features_and_class_columns():
  model = vit.ViT(width=32, depth=1, num_heads=2, patch_size=4, num_classes=7, head='normed')
  images = jax.random.normal(jax.random.key(1), (3, 16, 16, 3))
  variables = model.init(jax.random.key(0), images, train=False)
  head = variables['params']['head']
  assert set(head) == {'kernel'}                     # no bias, as NormedLinear
  kernel = np.asarray(head['kernel'].value, np.float64)
  # NormedLinear's init: every class's column has norm 1.
  np.testing.assert_allclose(np.linalg.norm(kernel, axis=0), 1.0, rtol=1e-6)
  logits, state = model.apply(variables, images, train=False, mutable=['intermediates'])
  feat = np.asarray(state['intermediates']['pre_logits'][0], np.float64)
  # F.normalize(x, dim=1).mm(F.normalize(W, dim=0)), in float64.
  want = ((feat / np.linalg.norm(feat, axis=1, keepdims=True))
          @ (kernel / np.linalg.norm(kernel, axis=0, keepdims=True)))
  np.testing.assert_allclose(np.asarray(logits), want, rtol=1e-5, atol=1e-6)
  assert np.abs(want).max() <= 1.0


def test_config_builds_the_normed_head_for_ldam_only():
  normed = tiny_config(**{'bft.loss': 'ldam_drw', 'bft.ldam_head': 'normed'})
  assert factory.build_vit(normed, num_classes=10).head == 'normed'
  assert factory.build_vit(tiny_config(**{'bft.loss': 'ldam_drw'}), 10).head == 'linear'
  shapes = jax.eval_shape(factory.init_fn(factory.build_vit(normed, 10), (28, 28, 1)),
                          jax.random.key(0))
  assert set(shapes['params']['head']) == {'kernel'}
