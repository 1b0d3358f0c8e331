"""BFT at another resolution than MGP carries MGP's position table over (resized with torch's
bicubic, as MAE), as a constant or as a trained parameter initialised with it (`model.posemb`)."""
import jax
import numpy as np
import pytest

from engine_helpers import tiny_config
from livt_jax.engine import optim
from livt_jax.engine import sharding
from livt_jax.engine import train
from livt_jax.models import posemb
from livt_jax.models import vit


def _torch_bicubic_reference(planes, new_h, new_w):
  """float64 transcription of PyTorch's CPU upsample_bicubic2d (align_corners=False), pixel by
  pixel: aten/src/ATen/native/UpSample.h (area_pixel_compute_scale,
  area_pixel_compute_source_index with cubic=True, upsample_get_value_bounded,
  cubic_convolution1/2 with A = -0.75, cubic_interp1d) as UpSampleBicubic2d.cpp combines them:
  four clamped taps per row interpolated along x, then the four row results along y."""
  a = -0.75
  conv1 = lambda x: ((a + 2) * x - (a + 3)) * x * x + 1
  conv2 = lambda x: ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

  def interp1d(x0, x1, x2, x3, t):
    return x0 * conv2(t + 1.0) + x1 * conv1(t) + x2 * conv1(1.0 - t) + x3 * conv2(2.0 - t)

  height, width = planes.shape[:2]
  get = lambda x, y: planes[max(min(y, height - 1), 0), max(min(x, width - 1), 0)]
  out = np.zeros((new_h, new_w) + planes.shape[2:])
  for oy in range(new_h):
    real_y = (height / new_h) * (oy + 0.5) - 0.5
    iy = int(np.floor(real_y))
    ty = real_y - iy
    for ox in range(new_w):
      real_x = (width / new_w) * (ox + 0.5) - 0.5
      ix = int(np.floor(real_x))
      tx = real_x - ix
      rows = [interp1d(*(get(ix - 1 + k, iy - 1 + j) for k in range(4)), tx) for j in range(4)]
      out[oy, ox] = interp1d(*rows, ty)
  return out


@pytest.mark.parametrize('grid, new', [((8, 8), (14, 14)), ((14, 14), (8, 8)),
                                       ((14, 14), (24, 24)), ((14, 14), (4, 4)),
                                       ((3, 5), (7, 2))])
def test_resize_is_torch_bicubic(grid, new):
  rng = np.random.default_rng(0)
  table = rng.normal(size=(grid[0] * grid[1], 6))
  want = _torch_bicubic_reference(table.reshape(*grid, 6), *new).reshape(-1, 6)
  got = posemb.resize_bicubic(table, *grid, *new)
  assert got.dtype == np.float32 and got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.abs(want).max())


def test_resize_of_the_sincos_table_is_not_a_regridding():
  table = posemb.sincos_2d(32, 8, 8, cls_token=False)
  ours = posemb.resize_bicubic(table, 8, 8, 14, 14)
  want = _torch_bicubic_reference(table.reshape(8, 8, 32).astype(np.float64), 14, 14)
  np.testing.assert_allclose(ours, want.reshape(196, 32), atol=1e-6)
  assert np.abs(ours - posemb.sincos_2d(32, 14, 14, cls_token=False)).max() > 0.1  # not re-gridded
  np.testing.assert_array_equal(posemb.encoder_table(32, (8, 8), (8, 8)), table)
  # Same grid: the kernel's weights at t = 0 are (0, 1, 0, 0), the table comes back unchanged.
  np.testing.assert_allclose(posemb.resize_bicubic(table, 8, 8, 8, 8), table, atol=1e-7)


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
