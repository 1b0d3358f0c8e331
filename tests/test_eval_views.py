"""Test-time views (evaluate.views): the views against NumPy, and the classifier's averaged logits."""
import jax
import numpy as np
import pytest

from engine_helpers import tiny_config
from livt_jax.evals import views
from livt_jax.evals import evaluate
from livt_jax.engine import sharding
from livt_jax.engine import train
from livt_jax import validate


def _numpy_views(x, kind):
  """The views built another way: np.roll, then the wrapped-around row/column zeroed."""
  def moved(v, axis, offset):
    out = np.roll(v, offset, axis=axis)
    edge = [slice(None)] * v.ndim
    edge[axis] = 0 if offset > 0 else -1
    out[tuple(edge)] = 0
    return out
  views = [x] if kind == 'one' else [x, x[:, :, ::-1]]
  if kind == 'flip_shift':
    views += [moved(v, a, o) for v in views[:2] for a in (1, 2) for o in (1, -1)]
  return np.stack(views)


@pytest.mark.parametrize('kind', views.VIEWS)
def test_views_match_numpy(kind):
  x = np.random.default_rng(0).integers(1, 256, (3, 5, 7, 2)).astype(np.uint8)
  got = np.asarray(views.make(x, kind))
  assert got.shape == (views.COUNT[kind], 3, 5, 7, 2)
  np.testing.assert_array_equal(got, _numpy_views(x, kind))
  # Each shifted view lost exactly one row or column to the fill.
  for v in got[2:]:
    assert (v == 0).sum() in (3 * 7 * 2, 3 * 5 * 2)


def test_unknown_view_is_refused():
  with pytest.raises(ValueError, match='evaluate.views'):
    views.make(np.zeros((1, 4, 4, 1), np.uint8), 'crops')
  config = tiny_config(**{'evaluate.views': 'crops'})
  with pytest.raises(validate.ConfigError, match=r"evaluate\.views='crops'.*flip_shift"):
    validate.validate(config, 1, check_data=False)


def _classifier():
  config = tiny_config()
  mesh = sharding.make_mesh(config, jax.devices()[:1])
  stage = train.build_stage(config, 'bft', mesh, 1000, 1, 10)
  params = stage.init_state(jax.random.key(0), None).params
  # A random head, so the logits differ from image to image and view to view.
  params['head']['kernel'] = jax.random.normal(jax.random.key(1), params['head']['kernel'].shape)
  return stage, mesh, params


@pytest.mark.parametrize('kind', ['flip', 'flip_shift'])
def test_predict_averages_raw_logits_over_the_views(kind):
  stage, mesh, params = _classifier()
  rng = np.random.default_rng(3)
  images = rng.normal(size=(8, 28, 28, 1)).astype(np.float32)
  batch = {'image': images, 'label': rng.integers(0, 10, 8).astype(np.int32),
           'mask': np.ones(8, np.float32)}
  apply = lambda x: np.asarray(stage.model.apply({'params': params}, x, train=False), np.float64)
  expected = np.mean([apply(v) for v in _numpy_views(images, kind)], axis=0)
  predict = evaluate.predict_fn(stage.model, mesh, stage.params_sharding, views=kind)
  logits, labels, _ = predict(params, sharding.global_batch(batch, mesh))
  np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(np.asarray(labels), batch['label'])
  assert np.abs(expected - apply(images)).max() > 1e-2  # the views changed the logits
  # The set of views is closed under mirroring: a mirrored image gets the same prediction.
  mirrored = dict(batch, image=np.ascontiguousarray(images[:, :, ::-1]))
  logits_m, _, _ = predict(params, sharding.global_batch(mirrored, mesh))
  np.testing.assert_allclose(np.asarray(logits_m), np.asarray(logits), rtol=1e-4, atol=1e-5)
