"""MAE reconstruction figure: the arrays behind it checked against NumPy, the PNG written."""
import jax
import numpy as np

from livt_jax.evals import reconstructions
from livt_jax.engine import run
from livt_jax.models import factory
from livt_jax.models import mae as mae_lib
from engine_helpers import tiny_config


def test_reconstruction_arrays_follow_the_mask_and_the_patch_statistics():
  config = tiny_config()
  model = factory.build_mae(config)
  images = np.random.default_rng(0).normal(size=(3, 28, 28, 1)).astype(np.float32)
  params = factory.init_fn(model, (28, 28, 1))(jax.random.key(1))['params']
  params = jax.tree.map(np.asarray, jax.tree.map(lambda x: getattr(x, 'value', x), params,
                                                 is_leaf=lambda x: hasattr(x, 'value')))
  rows = reconstructions.reconstruct(model, params, images, jax.random.key(2))
  p = config.model.patch_size
  patches = np.asarray(mae_lib.patchify(images, p), np.float64)
  mask = rows['mask'].astype(bool)
  assert mask.sum(1).tolist() == [12] * 3  # 75% of 16 patches removed
  masked = np.asarray(mae_lib.patchify(rows['masked'], p))
  pasted = np.asarray(mae_lib.patchify(rows['pasted'], p))
  recon = np.asarray(mae_lib.patchify(rows['reconstruction'], p), np.float64)
  np.testing.assert_array_equal(masked[mask], 0)
  np.testing.assert_allclose(masked[~mask], patches[~mask], rtol=0, atol=1e-6)
  np.testing.assert_allclose(pasted[~mask], patches[~mask], rtol=0, atol=1e-6)
  np.testing.assert_allclose(pasted[mask], recon[mask], rtol=0, atol=1e-6)
  # norm_pix_loss: the decoder output, scaled back by each true patch's mean and unbiased std.
  _, out = model.apply({'params': params}, images, train=False, rngs={'mask': jax.random.key(2)})
  pred = np.asarray(out['pred'], np.float64)
  mean = patches.mean(-1, keepdims=True)
  std = np.sqrt(patches.var(-1, ddof=1, keepdims=True) + 1e-6)
  np.testing.assert_allclose(recon, pred * std + mean, rtol=1e-5, atol=1e-5)


def test_a_run_with_mgp_writes_the_figure(tmp_path):
  config = tiny_config(**{'stages': 'mgp', 'max_steps': 2})
  run.run(config, str(tmp_path))
  png = tmp_path / 'report' / reconstructions.FILE_NAME
  assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and png.stat().st_size > 5000
