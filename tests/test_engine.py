"""The training engine: sharded steps equal single-device ones, resume is exact, NaN guard."""
import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from livt_jax import sharding
from livt_jax import steps
from livt_jax import train

ROOT = os.path.join(os.path.dirname(__file__), '..')


def tiny_config(**overrides):
  spec = importlib.util.spec_from_file_location(
      'fm', os.path.join(ROOT, 'configs', 'fashion_mnist_lt.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  c.model.variant = 'nano'
  c.model.decoder_depth, c.model.decoder_width, c.model.decoder_heads = 1, 32, 2
  c.mgp.batch_size = c.bft.batch_size = 16
  c.evaluate.batch_size = 1000
  c.log_every_steps = 2
  for k, v in overrides.items():
    node = c
    *parents, leaf = k.split('.')
    for p in parents:
      node = node[p]
    node[leaf] = v
  return c


COUNTS = np.array([600, 300, 150, 80, 40, 20, 12, 8, 5, 3])


def _mesh(config, n):
  config.mesh.data, config.mesh.fsdp = (1, 1) if n == 1 else (4, 2)
  return sharding.make_mesh(config, jax.devices()[:n])


def _batch(rng, n=16):
  return {'image': rng.normal(size=(n, 28, 28, 1)).astype(np.float32),
          'label': rng.integers(0, 10, n).astype(np.int32)}


@pytest.mark.parametrize('stage_name', ['mgp', 'bft'])
def test_sharded_step_matches_single_device(stage_name):
  config = tiny_config()
  batch = _batch(np.random.default_rng(0))
  results = []
  for n in (1, 8):
    mesh = _mesh(config, n)
    stage = train.build_stage(config, stage_name, mesh, num_train=1000, image_channels=1,
                              num_classes=10)
    loss_fn = (steps.mgp_loss_fn(stage.model) if stage_name == 'mgp'
               else steps.bft_loss_fn(stage.model, config, COUNTS))
    state = stage.init_state(jax.random.key(0), None)
    gbatch = sharding.global_batch(batch, mesh)
    grad_fn = jax.jit(jax.grad(lambda p, b, r: loss_fn(p, b, r)[0]),
                      in_shardings=(stage.params_sharding, sharding.batch_sharding(mesh), None))
    grads = jax.device_get(grad_fn(state.params, gbatch, jax.random.key(3)))
    step = train.compile_step(stage, loss_fn, mesh, config)
    state, metrics = step(state, gbatch)
    if n == 8:  # parameters really are split over the fsdp axis
      specs = [s.spec for s in jax.tree.leaves(stage.params_sharding)]
      assert any('fsdp' in str(s) for s in specs)
    results.append((jax.device_get(metrics), grads))
  (m1, g1), (m8, g8) = results
  assert np.isfinite(m1['loss'])
  np.testing.assert_allclose(m8['loss'], m1['loss'], rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(m8['grad_norm'], m1['grad_norm'], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g8)):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=2e-6)


def test_gradient_accumulation_equals_one_big_batch():
  batch = _batch(np.random.default_rng(1), 32)
  out = []
  for k in (1, 4):
    config = tiny_config(grad_accum_steps=k, **{'bft.batch_size': 32, 'bft.mix_prob': 0.0,
                                                 'bft.drop_path': 0.0})
    mesh = _mesh(config, 1)
    stage = train.build_stage(config, 'bft', mesh, 1000, 1, 10)
    loss_fn = steps.bft_loss_fn(stage.model, config, COUNTS)
    state = stage.init_state(jax.random.key(0), None)
    state, metrics = train.compile_step(stage, loss_fn, mesh, config)(
        state, sharding.global_batch(batch, mesh))
    out.append((jax.device_get(metrics), jax.device_get(state.params)))
  np.testing.assert_allclose(out[1][0]['loss'], out[0][0]['loss'], rtol=1e-6)
  np.testing.assert_allclose(out[1][0]['grad_norm'], out[0][0]['grad_norm'], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(out[0][1]), jax.tree.leaves(out[1][1])):
    np.testing.assert_allclose(b, a, atol=1e-6)


def test_nan_guard_keeps_state_and_reports():
  config = tiny_config()
  mesh = _mesh(config, 1)
  stage = train.build_stage(config, 'bft', mesh, 1000, 1, 10)
  loss_fn = steps.bft_loss_fn(stage.model, config, COUNTS)
  state = stage.init_state(jax.random.key(0), None)
  before = jax.device_get(state.params)
  batch = _batch(np.random.default_rng(2))
  batch['image'][0, 0, 0, 0] = np.nan
  state, metrics = train.compile_step(stage, loss_fn, mesh, config)(
      state, sharding.global_batch(batch, mesh))
  assert not bool(metrics['finite'])
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(jax.device_get(state.params))):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(train.NonFiniteError, match='NaN/inf at step 7'):
    train._check_finite([(7, metrics['finite'])], 'bft', '/tmp/x')  # pylint: disable=protected-access


def _losses_after_steps(config, stage_name, n_steps=3):
  mesh = _mesh(config, 1)
  stage = train.build_stage(config, stage_name, mesh, 1000, 1, 10)
  loss_fn = (steps.mgp_loss_fn(stage.model) if stage_name == 'mgp'
             else steps.bft_loss_fn(stage.model, config, COUNTS))
  state = stage.init_state(jax.random.key(0), None)
  step = train.compile_step(stage, loss_fn, mesh, config)
  rng, losses = np.random.default_rng(5), []
  for _ in range(n_steps):
    state, metrics = step(state, sharding.global_batch(_batch(rng), mesh))
    losses.append(float(metrics['loss']))
  return losses, state


@pytest.mark.parametrize('stage_name', ['mgp', 'bft'])
def test_bf16_compute_stays_close_to_float32(stage_name):
  ref, _ = _losses_after_steps(tiny_config(), stage_name)
  bf16, state = _losses_after_steps(tiny_config(precision='bfloat16'), stage_name)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.params))  # f32 master params
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.opt_state)
             if hasattr(x, 'dtype') and x.ndim)
  np.testing.assert_allclose(bf16, ref, rtol=3e-2)
  assert bf16 != ref  # bf16 really was used


def test_remat_changes_memory_not_numbers():
  ref, _ = _losses_after_steps(tiny_config(), 'bft', 2)
  remat, _ = _losses_after_steps(tiny_config(remat=True), 'bft', 2)
  np.testing.assert_allclose(remat, ref, rtol=1e-6)
