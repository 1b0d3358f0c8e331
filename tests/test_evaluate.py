"""Evaluation sees every example exactly once, in order, when the last batch is padded."""
import jax
import numpy as np
import pytest

from engine_helpers import tiny_config
from livt_jax.evals import evaluate
from livt_jax.evals import metrics
from livt_jax.engine import sharding
from livt_jax.engine import train
from livt_jax.data import registry
from livt_jax.data import source_base


@pytest.mark.parametrize('views', ['one', 'flip'])
def test_padded_last_batch_counts_every_example_once(views):
  # 37 = 2 x 16 + 5: 11 padding rows
  config = tiny_config(**{'evaluate.batch_size': 16, 'evaluate.views': views})
  config.mesh.data, config.mesh.fsdp = 4, 2
  mesh = sharding.make_mesh(config)
  info = registry.get_info('fashion_mnist_lt')
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (37, 28, 28, 1), dtype=np.uint8)
  labels = np.arange(37) % 10
  source = source_base.ArraySource(images, info=info, split='test', labels=labels,
                                   class_names=[str(i) for i in range(10)])
  stage = train.build_stage(config, 'bft', mesh, 1000, 1, 10)
  params = stage.init_state(jax.random.key(0), None).params
  params['head']['kernel'] = jax.random.normal(jax.random.key(1), params['head']['kernel'].shape)

  logits, got_labels = evaluate.collect_logits(config, stage.model, params,
                                               stage.params_sharding, source, info, mesh)
  # The reference: the model on each NumPy-built view (the image, and for 'flip' its mirror),
  # raw logits averaged.
  host_views = [images] if views == 'one' else [images, images[:, :, ::-1]]
  direct = np.mean([
      np.asarray(stage.model.apply(
          {'params': jax.device_get(params)},
          ((view / 255.0 - info.mean[0]) / info.std[0]).astype(np.float32), train=False))
      for view in host_views], axis=0)
  assert logits.shape == (37, 10)
  np.testing.assert_array_equal(got_labels, labels)
  np.testing.assert_allclose(logits, direct, rtol=1e-5, atol=1e-5)

  counts = np.array([600, 300, 150, 80, 40, 20, 12, 8, 5, 3])
  result = evaluate.evaluate(config, stage.model, params, stage.params_sharding, source, info,
                             mesh, counts)
  expected = metrics.classification_metrics(direct, labels, counts, many_threshold=1000,
                                            few_threshold=200, num_bins=15)
  assert result['num_examples'] == 37
  np.testing.assert_allclose(result['top1'], expected['top1'])
  np.testing.assert_allclose(result['per_class_accuracy'], expected['per_class_accuracy'])
