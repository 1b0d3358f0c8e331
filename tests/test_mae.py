"""MAE: sin-cos table, masking, patchify, norm-pix loss and the decoder's un-shuffle, vs NumPy."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from livt_jax.models import mae
from livt_jax.models import posemb
from livt_jax.models import vit
import numpy_reference


def _random_params(model, x, seed=0):
  """Random float32 parameters from NumPy (no jax.random: no compiles)."""
  shapes = jax.eval_shape(lambda: model.init(
      {'params': jax.random.key(0), 'mask': jax.random.key(0)}, x, train=False))
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.3, s.shape), jnp.float32),
                      nn.unbox(shapes['params']))


def _np_mae_loss(pred, target, mask, norm_pix):
  pred, target, mask = (np.asarray(a, np.float64) for a in (pred, target, mask))
  if norm_pix:
    mean = target.mean(-1, keepdims=True)
    var = ((target - mean) ** 2).sum(-1, keepdims=True) / (target.shape[-1] - 1)
    target = (target - mean) / np.sqrt(var + 1e-6)
  per = ((pred - target) ** 2).mean(-1)
  return (per * mask).sum() / mask.sum()


@pytest.mark.parametrize('gh,gw', [(4, 4), (3, 5)])
def test_sincos_2d_matches_the_formula(gh, gw):
  got = posemb.sincos_2d(16, gh, gw, cls_token=True)
  assert got.shape == (1 + gh * gw, 16) and got.dtype == np.float32
  np.testing.assert_allclose(got, numpy_reference.sincos_2d(16, gh, gw), atol=1e-6)
  np.testing.assert_array_equal(got[0], 0.0)
  np.testing.assert_array_equal(posemb.sincos_2d(16, gh, gw, cls_token=False), got[1:])
  with pytest.raises(ValueError, match='divisible by 4'):
    posemb.sincos_2d(18, gh, gw)


def test_random_masking_keeps_exactly_k_and_restores_order():
  b, n, ratio = 5, 49, 0.75
  k = int(n * (1 - ratio))
  noise = np.random.default_rng(0).uniform(size=(b, n)).astype(np.float32)
  keep_ids, mask, ids_restore = (np.asarray(a) for a in mae.random_masking(
      jnp.asarray(noise), ratio))
  assert keep_ids.shape == (b, k)
  np.testing.assert_array_equal(mask.sum(1), n - k)
  ids_shuffle = np.argsort(noise, axis=1)
  for i in range(b):
    np.testing.assert_array_equal(ids_shuffle[i][ids_restore[i]], np.arange(n))
    assert set(keep_ids[i]) == set(np.argsort(noise[i])[:k])  # the k smallest noises
    np.testing.assert_array_equal(mask[i][keep_ids[i]], 0.0)


def test_patchify_order_and_round_trip():
  rng = np.random.default_rng(0)
  p, c = 2, 3
  img = rng.normal(size=(2, 4, 6, c)).astype(np.float32)
  got = np.asarray(mae.patchify(jnp.asarray(img), p))
  assert got.shape == (2, 6, p * p * c)
  for i in range(2):
    for j in range(3):
      for r in range(p):
        for col in range(p):
          for ch in range(c):
            want = img[:, i * p + r, j * p + col, ch]
            np.testing.assert_array_equal(got[:, i * 3 + j, (r * p + col) * c + ch], want)
  back = mae.unpatchify(jnp.asarray(got), p, c, grid_hw=(2, 3))
  np.testing.assert_array_equal(np.asarray(back), img)
  square = rng.normal(size=(1, 8, 8, 1)).astype(np.float32)
  np.testing.assert_array_equal(
      np.asarray(mae.unpatchify(mae.patchify(jnp.asarray(square), 4), 4, 1)), square)


@pytest.mark.parametrize('norm_pix', [True, False])
def test_mae_loss_matches_numpy_and_ignores_visible_patches(norm_pix):
  rng = np.random.default_rng(1)
  pred = rng.normal(size=(3, 10, 12)).astype(np.float32)
  target = (rng.normal(size=(3, 10, 12)) * 3 + 1).astype(np.float32)
  mask = (rng.uniform(size=(3, 10)) < 0.7).astype(np.float32)
  mask[:, 0] = 1.0
  got = mae.mae_loss(jnp.asarray(pred), jnp.asarray(target), jnp.asarray(mask), norm_pix)
  assert got.dtype == jnp.float32 and got.shape == ()
  np.testing.assert_allclose(float(got), _np_mae_loss(pred, target, mask, norm_pix), rtol=1e-5)
  moved = pred + 100.0 * (1.0 - mask)[..., None]  # change only the visible patches
  same = mae.mae_loss(jnp.asarray(moved), jnp.asarray(target), jnp.asarray(mask), norm_pix)
  np.testing.assert_allclose(float(same), float(got), rtol=1e-6)


def _tiny_mae(depth, decoder_depth, **kw):
  return mae.MAE(width=16, depth=depth, num_heads=2, patch_size=2, decoder_width=8,
                 decoder_depth=decoder_depth, decoder_heads=2, **kw)


def test_decoder_unshuffle_matches_numpy_reference():
  # With no blocks each prediction depends on its own patch and position only, so a NumPy
  # reference can check that every token lands back at its image position.
  model = _tiny_mae(0, 0, mask_ratio=0.5, norm_pix_loss=True)
  x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 6, 4, 3)), jnp.float32)
  params = _random_params(model, x)
  loss, aux = model.apply({'params': params}, x, rngs={'mask': jax.random.key(3)})
  mask = np.asarray(aux['mask'])
  assert aux['pred'].shape == (2, 6, 12) and mask.shape == (2, 6)
  np.testing.assert_array_equal(mask.sum(1), 3)

  p64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  enc = p64['encoder']
  patches = np.asarray(mae.patchify(x, 2), np.float64)
  kern = enc['patch_embed']['kernel'].reshape(12, 16)
  enc_posemb = numpy_reference.sincos_2d(16, 3, 2)[1:]
  tok = numpy_reference.layer_norm(patches @ kern + enc['patch_embed']['bias'] + enc_posemb,
               enc['encoder_norm'])
  dec = tok @ p64['decoder_embed']['kernel'] + p64['decoder_embed']['bias']
  dec_posemb = numpy_reference.sincos_2d(8, 3, 2)[1:]
  dec = np.where(mask[..., None] > 0, p64['mask_token'], dec) + dec_posemb
  want = numpy_reference.layer_norm(dec, p64['decoder_norm']) @ p64['decoder_pred']['kernel'] + p64[
      'decoder_pred']['bias']
  np.testing.assert_allclose(np.asarray(aux['pred']), want, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(float(loss), _np_mae_loss(want, patches, mask, True), rtol=1e-4)


def test_predictions_only_see_visible_patches():
  model = _tiny_mae(1, 1)
  rng = np.random.default_rng(4)
  x = rng.normal(size=(2, 8, 8, 1)).astype(np.float32)
  params = {'params': _random_params(model, jnp.asarray(x))}
  apply = jax.jit(lambda im: model.apply(params, im, rngs={'mask': jax.random.key(5)}))
  loss, aux = apply(jnp.asarray(x))
  mask = np.asarray(aux['mask'])
  np.testing.assert_array_equal(mask.sum(1), 16 - 4)
  pix_mask = np.asarray(mae.unpatchify(jnp.asarray(
      np.repeat(mask[..., None], 4, axis=-1)), 2, 1))  # 1 on removed pixels
  bump = 5.0 * rng.normal(size=x.shape).astype(np.float32)  # not constant per patch: norm-pix
  loss2, aux2 = apply(jnp.asarray(x + bump * pix_mask))
  np.testing.assert_allclose(aux2['pred'], aux['pred'], rtol=1e-5, atol=1e-5)
  assert not np.isclose(float(loss2), float(loss))  # the targets did change
  _, aux3 = apply(jnp.asarray(x + bump * (1.0 - pix_mask)))
  assert not np.allclose(aux3['pred'], aux['pred'])


def test_mae_encoder_tree_is_the_vit_encoder_tree():
  x = jnp.zeros((1, 32, 32, 3))
  model = mae.MAE(width=64, depth=3, num_heads=4, patch_size=8, decoder_width=32,
                  decoder_depth=1, decoder_heads=4)
  classifier = vit.ViT(width=64, depth=3, num_heads=4, patch_size=8, num_classes=7)
  shapes = lambda m, rngs: jax.tree.map(lambda s: s.shape, nn.unbox(jax.eval_shape(
      lambda: m.init(rngs, x, train=False))['params']))
  keys = {'params': jax.random.key(0), 'mask': jax.random.key(0)}
  mae_tree, vit_tree = shapes(model, keys), shapes(classifier, keys)
  assert mae_tree['encoder'] == vit_tree['encoder']
  assert set(mae_tree) == {'encoder', 'decoder_embed', 'mask_token', 'decoder_block_0',
                           'decoder_norm', 'decoder_pred'}
