"""BFT at another resolution than MGP carries MGP's position table over (bicubic resize), as a
constant or as a trained parameter initialised with it (`model.posemb`)."""
import jax
import numpy as np
from PIL import Image

from engine_helpers import tiny_config
from livt_jax import optim
from livt_jax import sharding
from livt_jax import train
from livt_jax.models import posemb
from livt_jax.models import vit


def _pillow_bicubic(table, grid, new):
  """Independent reference: each channel as a Pillow float image ('F'), bicubic resize."""
  width = table.shape[-1]
  planes = table.reshape(grid, grid, width)
  out = [np.asarray(Image.fromarray(planes[..., d].astype(np.float32), mode='F').resize(
      (new, new), Image.Resampling.BICUBIC)) for d in range(width)]
  return np.stack(out, -1).reshape(new * new, width)


def test_resize_8x8_to_14x14_matches_pillow():
  table = posemb.sincos_2d(32, 8, 8, cls_token=False)
  ours = posemb.resize_bicubic(table, 8, 8, 14, 14)
  np.testing.assert_allclose(ours, _pillow_bicubic(table, 8, 14), atol=2e-5)
  assert np.abs(ours - posemb.sincos_2d(32, 14, 14, cls_token=False)).max() > 0.1  # not re-gridded
  np.testing.assert_array_equal(posemb.encoder_table(32, (8, 8), (8, 8)), table)


def _tokens_on_zero_images(encoder, params, size):
  """With zero images and a zero patch-embedding bias, the patch tokens are the table."""
  return np.asarray(encoder.apply({'params': params}, np.zeros((1, size, size, 1), np.float32),
                                  train=False, apply_norm=False))[0, 1:]


def test_bft_at_a_larger_grid_uses_the_resized_mgp_table():
  # MGP at 28 px (4x4 patches of 7), BFT at 49 px (7x7 patches).
  expected = posemb.resize_bicubic(posemb.sincos_2d(32, 4, 4, cls_token=False), 4, 4, 7, 7)
  for mode in ('fixed', 'learned'):
    config = tiny_config(**{'bft.image_size': 49, 'model.posemb': mode})
    mesh = sharding.make_mesh(config, jax.devices()[:1])
    mgp = train.build_stage(config, 'mgp', mesh, 1000, 1, 10)
    bft = train.build_stage(config, 'bft', mesh, 1000, 1, 10)
    assert bft.model.pretrain_grid == (4, 4) and bft.model.posemb == mode
    mgp_encoder = mgp.init_state(jax.random.key(1), None).params['encoder']
    params = jax.device_get(bft.init_state(jax.random.key(0), mgp_encoder).params)
    encoder = vit.Encoder(32, 0, 2, 7, pretrain_grid=(4, 4), posemb=mode)
    enc_params = {k: v for k, v in params['encoder'].items() if not k.startswith('block_')}
    np.testing.assert_allclose(_tokens_on_zero_images(encoder, enc_params, 49), expected,
                               atol=1e-6)
    if mode == 'learned':  # a trained parameter, initialised with the resized MGP table
      np.testing.assert_allclose(params['encoder']['pos_embedding'], expected, atol=1e-6)
      assert optim.layer_id(('encoder', 'pos_embedding'), 2) == 0
      assert not optim.decays_weight(('encoder', 'pos_embedding'))
    else:
      assert 'pos_embedding' not in params['encoder']
