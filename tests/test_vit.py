"""ViT encoder/classifier: sizes, a float64 NumPy forward reference, drop path, jit, sharding."""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, Mesh, PartitionSpec as P

from livt_jax.models import kernels
from livt_jax.models import vit
import numpy_reference

# timm's parameter counts (patch 16, 224 px, 1000 classes, learned 197-row pos_embed).
TIMM_COUNTS = {'Ti': 5_717_416, 'S': 22_050_664, 'B': 86_567_656, 'L': 304_326_632}


def _count(model, hw=224, channels=3):
  shapes = jax.eval_shape(
      lambda r: model.init({'params': r}, jnp.zeros((1, hw, hw, channels)), train=False),
      jax.random.key(0))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.unbox(shapes['params'])))


def _vit(name, pool='cls', num_classes=1000, patch=16, **kw):
  v = vit.get_variant(name)
  return vit.ViT(width=v['width'], depth=v['depth'], num_heads=v['heads'], patch_size=patch,
                 num_classes=num_classes, mlp_ratio=v['mlp_ratio'], pool=pool, **kw)


def test_get_variant_rejects_unknown_names():
  assert vit.get_variant('B')['width'] == 768
  with pytest.raises(ValueError, match=r"'XL'.*Ti, S, B, L, mu, nano"):
    vit.get_variant('XL')


@pytest.mark.parametrize('name', ['Ti', 'S', 'B', 'L'])
def test_param_counts_match_timm_minus_the_fixed_posemb(name):
  width = vit.get_variant(name)['width']
  cls_count = _count(_vit(name, 'cls'))
  # Our position embedding is a constant, timm's is a (197 x width) parameter.
  assert cls_count + 197 * width == TIMM_COUNTS[name]
  # 'gap' adds fc_norm; encoder_norm stays in the tree (unused) so MAE trees load unchanged.
  assert _count(_vit(name, 'gap')) == cls_count + 2 * width


def test_vit_b_count_exact():
  assert _count(_vit('B', 'cls')) == 86_416_360


# ---------------------------------------------------------------- float64 NumPy reference
def _dense(x, p):
  return x @ p['kernel'] + p['bias']


def _gelu(x):
  return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def _np_attn_branch(blk, x, heads):
  """attn(norm1(x)): the first residual branch of a block."""
  b, _, d = x.shape
  hd = d // heads
  y = numpy_reference.layer_norm(x, blk['norm1'])
  qkv = _dense(y, blk['attn']['qkv']).reshape(b, -1, 3, heads, hd)
  q, kk, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
  s = np.einsum('bqhd,bkhd->bhqk', q, kk) / math.sqrt(hd)
  s = np.exp(s - s.max(-1, keepdims=True))
  s /= s.sum(-1, keepdims=True)
  o = np.einsum('bhqk,bkhd->bqhd', s, v).reshape(b, -1, d)
  return _dense(o, blk['attn']['proj'])


def _np_mlp_branch(blk, x):
  """mlp(norm2(x)): the second residual branch of a block."""
  y = numpy_reference.layer_norm(x, blk['norm2'])
  return _dense(_gelu(_dense(y, blk['mlp']['fc1'])), blk['mlp']['fc2'])


def _np_vit(params, images, patch, heads, pool):
  enc = params['encoder']
  b, h, w, c = images.shape
  gh, gw = h // patch, w // patch
  patches = np.zeros((b, gh * gw, patch * patch * c))
  for i in range(gh):
    for j in range(gw):
      patches[:, i * gw + j] = images[:, i * patch:(i + 1) * patch,
                                      j * patch:(j + 1) * patch].reshape(b, -1)
  k = enc['patch_embed']['kernel']
  x = patches @ k.reshape(-1, k.shape[-1]) + enc['patch_embed']['bias']
  d = x.shape[-1]
  x = x + numpy_reference.sincos_2d(d, gh, gw)[1:]
  x = np.concatenate([np.broadcast_to(enc['cls_token'], (b, 1, d)), x], axis=1)
  i = 0
  while f'block_{i}' in enc:
    blk = enc[f'block_{i}']
    x = x + _np_attn_branch(blk, x, heads)
    x = x + _np_mlp_branch(blk, x)
    i += 1
  if pool == 'gap':
    feat = numpy_reference.layer_norm(x[:, 1:].mean(1), params['fc_norm'])
  else:
    feat = numpy_reference.layer_norm(x, enc['encoder_norm'])[:, 0]
  return _dense(feat, params['head'])


def random_params(model, x, seed=0):
  """Random float32 parameters of `model` from NumPy: no jax.random, hence no compiles."""
  shapes = jax.eval_shape(lambda: model.init({'params': jax.random.key(0)}, x, train=False))
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.3, s.shape), jnp.float32),
                      nn.unbox(shapes['params']))


def _images(shape, seed=1):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _nano(pool, **kw):
  return vit.ViT(width=32, depth=2, num_heads=2, patch_size=4, num_classes=5, pool=pool,
                 head_init_std=0.5, **kw)


@pytest.mark.parametrize('pool', ['cls', 'gap'])
def test_forward_matches_numpy_float64(pool):
  model = _nano(pool)
  x = _images((2, 8, 12, 3))  # non-square: 2 x 3 patches
  params = random_params(model, x)
  got = model.apply({'params': params}, x, train=False)
  assert got.shape == (2, 5) and got.dtype == jnp.float32
  p64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  want = _np_vit(p64, np.asarray(x, np.float64), 4, 2, pool)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5)


def test_gradients_match_float64_finite_differences():
  """The custom VJPs (attention, GELU) against central differences of the NumPy float64
  forward: directional derivatives along random directions in the parameters and the input."""
  model = _nano('cls')
  x = _images((2, 8, 12, 3))
  params = random_params(model, x)
  w = np.random.default_rng(2).normal(size=(2, 5))
  loss = lambda p, xx: jnp.sum(model.apply({'params': p}, xx, train=False) * w)
  g_params, g_x = jax.grad(loss, argnums=(0, 1))(params, x)
  p64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  x64 = np.asarray(x, np.float64)
  ref = lambda p, xx: float(np.sum(_np_vit(p, xx, 4, 2, 'cls') * w))
  rng = np.random.default_rng(3)
  for _ in range(3):
    d_p = jax.tree.map(lambda a: rng.normal(size=a.shape), p64)
    d_x = rng.normal(size=x64.shape)
    eps = 1e-5
    shift = lambda sign: ref(jax.tree.map(lambda a, d: a + sign * eps * d, p64, d_p),
                             x64 + sign * eps * d_x)
    want = (shift(1) - shift(-1)) / (2 * eps)
    got = sum(float(np.sum(np.asarray(g, np.float64) * d)) for g, d in
              zip(jax.tree.leaves(g_params), jax.tree.leaves(d_p)))
    got += float(np.sum(np.asarray(g_x, np.float64) * d_x))
    np.testing.assert_allclose(got, want, rtol=2e-4)


def test_tokens_shape_and_encode_visible_consistency():
  enc = vit.Encoder(width=32, depth=2, num_heads=2, patch_size=4)
  x = _images((2, 8, 12, 3))
  variables = {'params': random_params(enc, x)}
  tokens = enc.apply(variables, x, train=False)
  assert tokens.shape == (2, 1 + 6, 32)
  all_ids = jnp.tile(jnp.arange(6), (2, 1))
  same = enc.apply(variables, x, all_ids, train=False, method=vit.Encoder.encode_visible)
  np.testing.assert_allclose(same, tokens, rtol=1e-5, atol=1e-5)
  some = enc.apply(variables, x, all_ids[:, 2:5], train=False, method=vit.Encoder.encode_visible)
  assert some.shape == (2, 1 + 3, 32)


def test_bad_image_size_is_a_clear_error():
  model = _nano('cls')
  with pytest.raises(ValueError, match='not divisible by the patch size 4'):
    jax.eval_shape(lambda: model.init({'params': jax.random.key(0)}, jnp.zeros((1, 10, 8, 3)),
                                      train=False))


def test_drop_path_only_in_training_and_remat_gives_the_same_numbers():
  model = _nano('gap', drop_path=0.5)
  x = _images((2, 8, 12, 3))
  variables = {'params': random_params(model, x)}
  ev = [model.apply(variables, x, train=False, rngs={'dropout': jax.random.key(s)})
        for s in (1, 2)]
  np.testing.assert_array_equal(ev[0], ev[1])
  tr = [model.apply(variables, x, train=True, rngs={'dropout': jax.random.key(s)})
        for s in (1, 2)]
  assert not np.allclose(tr[0], tr[1])
  # jit and remat change speed and memory, not numbers (same rng -> same drop-path draws).
  remat = _nano('gap', drop_path=0.5, remat=True)
  r = jax.jit(remat.apply, static_argnames='train')(
      variables, x, train=True, rngs={'dropout': jax.random.key(1)})
  np.testing.assert_allclose(r, tr[0], rtol=1e-5, atol=1e-5)


def test_drop_path_drops_whole_samples_and_rescales_the_kept_ones():
  x = np.random.default_rng(0).uniform(0.5, 1.5, (4000, 3, 4)).astype(np.float32)
  masks = []
  for rate in (0.1, 0.5, 0.8):
    keep = 1.0 - rate
    out = np.asarray(kernels.drop_path(jnp.asarray(x), rate, jax.random.key(7)))
    dropped = np.all(out == 0, axis=(1, 2))
    kept = np.all(np.abs(out - x / keep) <= 1e-6 * x / keep, axis=(1, 2))
    assert np.all(dropped ^ kept)  # per sample: the whole branch, or none of it (scaled)
    # The dropped share is the rate (binomial, 4 sigma).
    assert abs(dropped.mean() - rate) < 4 * math.sqrt(rate * keep / len(x)), (rate, dropped.mean())
    # Unbiased: the mean over samples is the input's.
    np.testing.assert_allclose(out.mean(0) / x.mean(0), 1.0, atol=6 * math.sqrt(rate / keep / len(x)))
    masks.append(dropped)
  other = np.asarray(kernels.drop_path(jnp.asarray(x), 0.5, jax.random.key(8)))
  assert not np.array_equal(np.all(other == 0, axis=(1, 2)), masks[1])  # the key decides


def test_block_drop_path_draws_each_branch_per_sample():
  block = vit.Block(num_heads=2, drop_path=0.5)
  x = _images((200, 3, 16))
  params = random_params(block, x)
  p64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  x64 = np.asarray(x, np.float64)

  def reference(keep_attn, keep_mlp, scale):
    y = x64 + keep_attn * scale * _np_attn_branch(p64, x64, 2)
    return y + keep_mlp * scale * _np_mlp_branch(p64, y)

  # One compile for both modes (eager dispatch of every small op is slower here).
  eval_out, got = jax.jit(lambda v, k: (block.apply(v, x, False),
                                        block.apply(v, x, True, rngs={'dropout': k})))(
                                            {'params': params}, jax.random.key(3))
  # Eval: both branches, unscaled.
  np.testing.assert_allclose(eval_out, reference(1, 1, 1.0), rtol=1e-4, atol=1e-4)
  # Train: each sample matches one of the 4 (attn kept?, mlp kept?) outcomes, kept branches
  # scaled by 1 / keep_prob = 2; the two branches are drawn independently, each kept ~half.
  got = np.asarray(got)
  outcomes = [(a, m) for a in (0, 1) for m in (0, 1)]
  err = np.stack([np.abs(got - reference(a, m, 2.0)).max(axis=(1, 2)) for a, m in outcomes])
  best = err.argmin(0)
  assert np.all(err[best, np.arange(len(x))] < 1e-3), err.min(0).max()
  assert np.all(np.sort(err, 0)[1] > 0.1)  # the outcomes are far apart: no ambiguity
  counts = np.bincount(best, minlength=4)
  assert counts.min() > 25, counts  # all four, ~50 each
  kept_attn = np.isin(best, (2, 3)).mean()
  kept_mlp = np.isin(best, (1, 3)).mean()
  assert 0.36 < kept_attn < 0.64 and 0.36 < kept_mlp < 0.64, (kept_attn, kept_mlp)


def test_drop_path_rate_grows_linearly_with_depth(monkeypatch):
  calls = []

  def recording_drop_path(x, rate, rng):
    calls.append(rate)
    return x

  monkeypatch.setattr(kernels, 'drop_path', recording_drop_path)
  enc = vit.Encoder(width=16, depth=4, num_heads=2, patch_size=4, drop_path=0.3)
  x = jnp.zeros((1, 4, 4, 1))
  variables = {'params': random_params(enc, x)}
  jax.eval_shape(lambda: enc.apply(variables, x, train=True, rngs={'dropout': jax.random.key(0)}))
  # timm: linspace(0, rate, depth); block 0 (rate 0) draws nothing; both branches per block.
  np.testing.assert_allclose(calls, np.repeat([0.1, 0.2, 0.3], 2), rtol=1e-6)
  calls.clear()
  jax.eval_shape(lambda: enc.apply(variables, x, train=False))
  assert calls == []


def test_bfloat16_compute_keeps_float32_params_and_logits():
  model = _nano('gap', dtype=jnp.bfloat16)
  x = jnp.ones((2, 8, 8, 3))
  shapes = jax.eval_shape(lambda: model.init({'params': jax.random.key(0)}, x, train=False))
  assert {a.dtype for a in jax.tree.leaves(nn.unbox(shapes))} == {jnp.dtype(jnp.float32)}
  logits = jax.jit(model.apply, static_argnames='train')(
      {'params': random_params(model, x)}, x, train=False)
  assert logits.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(logits)))


def test_sharded_init_on_a_data_fsdp_mesh():
  mesh = Mesh(np.asarray(jax.devices()[:8]).reshape(2, 4), ('data', 'fsdp'),
              axis_types=(AxisType.Auto, AxisType.Auto))
  model = vit.ViT(width=32, depth=1, num_heads=2, patch_size=4, num_classes=5)
  init = lambda r: model.init({'params': r}, jnp.zeros((1, 8, 8, 3)), train=False)
  boxed = jax.eval_shape(init, jax.random.key(0))['params']
  is_boxed = lambda l: isinstance(l, nn.LogicallyPartitioned)
  assert all(is_boxed(l) for l in jax.tree.leaves(boxed, is_leaf=is_boxed))
  specs = nn.get_partition_spec(boxed)
  shardings = nn.logical_to_mesh_sharding(specs, mesh, vit.LOGICAL_AXIS_RULES_FSDP)
  blk = shardings['encoder']['block_0']
  assert blk['attn']['qkv']['kernel'].spec == P('fsdp', None)
  assert blk['mlp']['fc2']['kernel'].spec == P(None, 'fsdp')
  assert shardings['encoder']['patch_embed']['kernel'].spec == P(None, None, None, 'fsdp')
  assert shardings['head']['kernel'].spec == P('fsdp', None)
  assert blk['norm1']['scale'].spec == P(None)
  assert shardings['encoder']['cls_token'].spec == P(None, None, None)
  # Only matrices are split; every vector (bias, norm) is replicated.
  flat = jax.tree_util.tree_flatten_with_path(boxed, is_leaf=is_boxed)[0]
  for (path, leaf), s in zip(flat, jax.tree.leaves(shardings)):
    assert ('fsdp' in s.spec) == (len(leaf.value.shape) == 2 or len(leaf.value.shape) == 4), path
  # The engine's path: one jitted, sharded init. It also checks the MAE-style init values.
  params = jax.jit(lambda r: nn.unbox(init(r))['params'], out_shardings=shardings)(
      jax.random.key(0))
  enc = params['encoder']
  assert enc['block_0']['attn']['qkv']['kernel'].sharding.spec == P('fsdp', None)
  np.testing.assert_array_equal(enc['block_0']['mlp']['fc1']['bias'], 0.0)
  np.testing.assert_array_equal(enc['block_0']['norm2']['scale'], 1.0)
  np.testing.assert_array_equal(params['head']['bias'], 0.0)
  limit = math.sqrt(6.0 / (32 + 96))  # xavier-uniform bound of the qkv kernel
  qkv = np.asarray(enc['block_0']['attn']['qkv']['kernel'])
  assert np.abs(qkv).max() <= limit and np.abs(qkv).max() > 0.8 * limit
