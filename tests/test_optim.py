"""Optimizer: layer-decay multipliers, weight-decay mask, schedule, AdamW steps vs NumPy."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from livt_jax.engine import optim
from livt_jax.models import mae
from livt_jax.models import vit


def _paths(tree):
  return {'/'.join(str(getattr(k, 'key', k)) for k in p): leaf
          for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _vit_b_shapes():
  model = vit.ViT(width=768, depth=12, num_heads=12, patch_size=16, num_classes=1000)
  return nn.unbox(jax.eval_shape(lambda: model.init(
      {'params': jax.random.key(0)}, jnp.zeros((1, 224, 224, 3)), train=False))['params'])


def _expected_id(path, depth):
  parts = path.split('/')
  if parts[0] == 'encoder' and parts[1] in ('patch_embed', 'cls_token'):
    return 0
  if parts[0] == 'encoder' and parts[1].startswith('block_'):
    return int(parts[1].split('_')[1]) + 1
  return depth + 1


def test_layer_decay_multiplier_of_every_vit_b_parameter():
  shapes = _vit_b_shapes()
  scales = _paths(optim.layer_decay_scales(shapes, 12, 0.75))
  # 12 per block; patch_embed (2) + cls_token; encoder_norm, fc_norm, head (2 each).
  assert len(scales) == len(_paths(shapes)) == 12 * 12 + 3 + 2 + 2 + 2
  for path, s in scales.items():
    assert s == pytest.approx(0.75 ** (13 - _expected_id(path, 12)), rel=1e-12), path
  assert scales['head/kernel'] == 1.0 and scales['fc_norm/scale'] == 1.0
  assert scales['encoder/patch_embed/kernel'] == pytest.approx(0.75 ** 13)
  assert scales['encoder/block_11/mlp/fc2/bias'] == pytest.approx(0.75)
  assert optim.layer_id(('encoder', 'pos_embed'), 12) == 0


def test_weight_decay_mask_is_exactly_the_kernels():
  shapes = _vit_b_shapes()
  mask = _paths(optim.weight_decay_mask(shapes))
  decayed = {p for p, m in mask.items() if m}
  assert decayed == {p for p in mask if p.endswith('/kernel')}
  assert len(decayed) == 12 * 4 + 2  # qkv, proj, fc1, fc2 per block; patch_embed; head
  assert not mask['encoder/cls_token']
  mae_model = mae.MAE(width=32, depth=1, num_heads=2, patch_size=4, decoder_width=16,
                      decoder_depth=1, decoder_heads=2)
  mae_shapes = nn.unbox(jax.eval_shape(lambda: mae_model.init(
      {'params': jax.random.key(0), 'mask': jax.random.key(0)}, jnp.zeros((1, 8, 8, 3)),
      train=False))['params'])
  mae_mask = _paths(optim.weight_decay_mask(mae_shapes))
  assert not mae_mask['mask_token'] and mae_mask['decoder_pred/kernel']
  assert not mae_mask['decoder_norm/scale'] and not mae_mask['decoder_embed/bias']
  assert not optim.decays_weight(('encoder', 'pos_embed', 'kernel'))
  # MGP follows MAE pre-training: every 2-D+ parameter decays, the tokens included.
  pre = _paths(optim.pretraining_weight_decay_mask(mae_shapes))
  assert pre['mask_token'] and pre['encoder/cls_token'] and pre['decoder_pred/kernel']
  assert pre['encoder/patch_embed/kernel']
  assert not pre['decoder_norm/scale'] and not pre['decoder_embed/bias']
  assert {p for p, m in pre.items() if m} == {
      p for p, m in mae_mask.items() if m} | {'mask_token', 'encoder/cls_token'}


def test_schedule_endpoints():
  s = optim.lr_schedule(1e-3, 1024, total_steps=100, warmup_steps=10, min_lr=1e-6)
  peak = 1e-3 * 1024 / 256
  assert float(s(0)) == 0.0
  np.testing.assert_allclose(float(s(5)), peak / 2, rtol=1e-6)
  np.testing.assert_allclose(float(s(10)), peak, rtol=1e-6)
  np.testing.assert_allclose(float(s(55)), 1e-6 + (peak - 1e-6) / 2, rtol=1e-5)
  np.testing.assert_allclose(float(s(100)), 1e-6, rtol=1e-5)
  values = [float(s(i)) for i in range(10, 101)]
  assert all(a >= b for a, b in zip(values, values[1:]))
  warm_only = optim.lr_schedule(1e-3, 256, total_steps=4, warmup_steps=4, min_lr=0.0)
  np.testing.assert_allclose([float(warm_only(i)) for i in (0, 2, 4)], [0, 5e-4, 1e-3])
  with pytest.raises(ValueError, match='warmup_steps'):
    optim.lr_schedule(1e-3, 256, total_steps=4, warmup_steps=5, min_lr=0.0)


def _tiny_params():
  rng = np.random.default_rng(0)
  shapes = {'encoder': {'patch_embed': {'kernel': (2, 3), 'bias': (3,)}, 'cls_token': (1, 1, 3),
                        'block_0': {'fc': {'kernel': (3, 3), 'bias': (3,)}},
                        'block_1': {'norm': {'scale': (3,)}, 'fc': {'kernel': (3, 2)}},
                        'encoder_norm': {'scale': (2,)}},
            'head': {'kernel': (2, 4), 'bias': (4,)}}
  return jax.tree.map(lambda s: rng.normal(size=s), shapes, is_leaf=lambda s: isinstance(
      s, tuple))


def _np_adamw(params, grads_seq, lrs, b1, b2, eps, wd, depth, decay, clip):
  """Hand-written float64 AdamW with per-group lr = lr * decay ** (depth + 1 - layer)."""
  flat = _paths(params)
  p = {k: v.copy() for k, v in flat.items()}
  m = {k: np.zeros_like(v) for k, v in flat.items()}
  v = {k: np.zeros_like(x) for k, x in flat.items()}
  for t, (grads, lr) in enumerate(zip(grads_seq, lrs), start=1):
    g = _paths(grads)
    if clip:
      norm = np.sqrt(sum((x ** 2).sum() for x in g.values()))
      g = {k: x * min(1.0, clip / norm) for k, x in g.items()}
    for k in p:
      m[k] = b1 * m[k] + (1 - b1) * g[k]
      v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
      step = (m[k] / (1 - b1 ** t)) / (np.sqrt(v[k] / (1 - b2 ** t)) + eps)
      if k.endswith('kernel'):
        step = step + wd * p[k]
      mult = decay ** (depth + 1 - _expected_id(k, depth))
      p[k] = p[k] - lr * mult * step
  return p


@pytest.mark.parametrize('clip,use_schedule', [(0.0, False), (0.5, False), (0.0, True)])
def test_adamw_steps_with_layer_decay_match_numpy(clip, use_schedule):
  params64 = _tiny_params()
  rng = np.random.default_rng(1)
  grads_seq = [jax.tree.map(lambda x: rng.normal(size=x.shape), params64) for _ in range(2)]
  b1, b2, wd, decay = 0.9, 0.99, 0.05, 0.75
  if use_schedule:  # lr 0 then peak / 2 (warmup over 2 steps)
    lr = optim.lr_schedule(0.1, 512, total_steps=10, warmup_steps=2, min_lr=0.0)
    lrs = [float(lr(0)), float(lr(1))]
  else:
    lr, lrs = 0.01, [0.01, 0.01]
  f32 = lambda t: jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), t)  # noqa: E731
  params = f32(params64)
  tx = optim.make_optimizer(params, learning_rate=lr, b1=b1, b2=b2, weight_decay=wd,
                            layer_decay=decay, depth=2, grad_clip_norm=clip)
  state = tx.init(params)
  for grads in grads_seq:
    updates, state = tx.update(f32(grads), state, params)
    params = optax.apply_updates(params, updates)
  want = _np_adamw(params64, grads_seq, lrs, b1, b2, 1e-8, wd, 2, decay, clip)
  got = _paths(params)
  for k, w in want.items():
    np.testing.assert_allclose(np.asarray(got[k], np.float64), w, rtol=1e-5, atol=1e-6,
                               err_msg=k)
  assert all(np.abs(np.asarray(got[k]) - x).max() > 1e-4 for k, x in _paths(params64).items())


def test_make_optimizer_checks_layer_decay_setup():
  params = jax.tree.map(jnp.asarray, _tiny_params())
  with pytest.raises(ValueError, match='depth'):
    optim.make_optimizer(params, learning_rate=1e-3, b1=0.9, b2=0.99, weight_decay=0.05,
                         layer_decay=0.75)
  with pytest.raises(ValueError, match='block_4'):
    optim.make_optimizer(params, learning_rate=1e-3, b1=0.9, b2=0.99, weight_decay=0.05,
                         layer_decay=0.75, depth=5)
  # Without layer decay it is plain AdamW with the mask (one update vs optax.adamw).
  grads = jax.tree.map(jnp.ones_like, params)
  tx = optim.make_optimizer(params, learning_rate=1e-2, b1=0.9, b2=0.95, weight_decay=0.1)
  ref = optax.adamw(1e-2, b1=0.9, b2=0.95, weight_decay=0.1,
                    mask=jax.tree.map(lambda _: True, params))
  u = _paths(tx.update(grads, tx.init(params), params)[0])
  r = _paths(ref.update(grads, ref.init(params), params)[0])
  np.testing.assert_allclose(u['head/kernel'], r['head/kernel'], rtol=1e-6)
  assert not np.allclose(u['head/bias'], r['head/bias'])  # bias: no weight decay


def test_stages_use_their_weight_decay_rule():
  from engine_helpers import tiny_config  # pylint: disable=g-import-not-at-top
  from livt_jax.engine import sharding, train  # pylint: disable=g-import-not-at-top
  config = tiny_config(**{'mgp.weight_decay': 0.5, 'bft.weight_decay': 0.5,
                          'mgp.warmup_epochs': 0, 'bft.warmup_epochs': 0})
  mesh = sharding.make_mesh(config, jax.devices()[:1])
  for name, token in (('mgp', 'mask_token'), ('bft', None)):
    stage = train.build_stage(config, name, mesh, 1000, 1, 10)
    state = stage.init_state(jax.random.key(0), None)
    zeros = jax.tree.map(jnp.zeros_like, state.params)
    updates, _ = stage.tx.update(zeros, state.opt_state, state.params)  # decay only
    cls_update = np.asarray(updates['encoder']['cls_token'])
    if name == 'mgp':  # -lr * wd * p on the tokens, as MAE pre-training
      lr = stage.schedule(0)
      for leaf in (updates[token], updates['encoder']['cls_token']):
        assert np.abs(np.asarray(leaf)).max() > 0
      np.testing.assert_allclose(cls_update, -lr * 0.5 * np.asarray(
          state.params['encoder']['cls_token']), rtol=1e-5, atol=1e-12)
    else:  # fine-tuning exempts the class token
      assert not cls_update.any()
