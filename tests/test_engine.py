"""The training engine after real updates: sharding, accumulation, precision and remat change
nothing but speed and memory; the NaN guard; the Bal-BCE bias lives in the training loss only.

Every run here starts at the peak learning rate (no warm-up) and takes several steps, so the
parameters move by orders of magnitude more than the tolerances (see engine_helpers).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from engine_helpers import COUNTS, assert_same_training, past_warmup, update_distance
from livt_jax.evals import evaluate
from livt_jax.losses import balanced
from livt_jax.engine import sharding
from livt_jax.engine import steps
from livt_jax.engine import train


def _mesh(config, n):
  config.mesh.data, config.mesh.fsdp = (1, 1) if n == 1 else (n // 2, 2)
  return sharding.make_mesh(config, jax.devices()[:n])


def _batch(rng, n=16):
  return {'image': rng.normal(size=(n, 28, 28, 1)).astype(np.float32),
          'label': rng.integers(0, 10, n).astype(np.int32)}


def _loss_fn(stage, config):
  if stage.name == 'mgp':
    return steps.mgp_loss_fn(stage.model)
  return steps.bft_loss_fn(stage.model, config, COUNTS)


def _train(config, stage_name, n_devices=1, n_steps=4):
  """(start params, final params, losses, stage, mesh) after n_steps on seeded random batches."""
  mesh = _mesh(config, n_devices)
  stage = train.build_stage(config, stage_name, mesh, 1000, 1, 10)
  state = stage.init_state(jax.random.key(0), None)
  start = jax.device_get(state.params)
  step = train.compile_step(stage, _loss_fn(stage, config), mesh, config)
  rng, losses_seen = np.random.default_rng(5), []
  for _ in range(n_steps):
    batch = sharding.global_batch(_batch(rng, config[stage_name].batch_size), mesh)
    state, metrics = step(state, batch)
    assert bool(metrics['finite'])
    losses_seen.append(float(metrics['loss']))
  return start, jax.device_get(state.params), losses_seen, stage, mesh


@pytest.mark.parametrize('stage_name', ['mgp', 'bft'])
def test_sharded_training_matches_single_device(stage_name):
  runs = {n: _train(past_warmup(), stage_name, n) for n in (1, 8)}
  (start, p1, l1, stage1, _), (start8, p8, l8, stage8, mesh8) = runs[1], runs[8]
  specs = [s.spec for s in jax.tree.leaves(stage8.params_sharding)]
  assert any('fsdp' in str(s) for s in specs)  # parameters really are split over fsdp
  for a, b in zip(jax.tree.leaves(start), jax.tree.leaves(start8)):
    np.testing.assert_array_equal(a, b)  # same initial parameters on any mesh
  assert len(set(np.round(l1, 4))) == len(l1)  # the loss changed from step to step
  assert_same_training(start, p1, p8)
  np.testing.assert_allclose(l8, l1, rtol=2e-5)

  # Gradients of the same parameters agree elementwise (no optimizer in between).
  config = past_warmup()
  batch = _batch(np.random.default_rng(0))
  grads = []
  for stage, mesh in ((stage1, _mesh(config, 1)), (stage8, mesh8)):
    fn = jax.jit(jax.grad(lambda p, b, r, f=_loss_fn(stage, config): f(p, b, r)[0]),
                 in_shardings=(stage.params_sharding, sharding.batch_sharding(mesh), None))
    params = jax.device_put(p1, stage.params_sharding)
    grads.append(jax.device_get(fn(params, sharding.global_batch(batch, mesh),
                                   jax.random.key(3))))
  for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=2e-6)


@pytest.mark.parametrize('n_devices', [1, 8])
def test_gradient_accumulation_equals_one_big_batch(n_devices):
  out = {}
  for k in (1, 4):
    config = past_warmup(grad_accum_steps=k, **{'bft.batch_size': 32, 'bft.mix_prob': 0.0,
                                                 'bft.drop_path': 0.0})
    out[k] = _train(config, 'bft', n_devices, n_steps=3)
  (start, p1, l1, _, _), (_, p4, l4, _, _) = out[1], out[4]
  assert_same_training(start, p1, p4)
  np.testing.assert_allclose(l4, l1, rtol=1e-5)


def test_nan_guard_keeps_state_and_reports():
  config = past_warmup()
  mesh = _mesh(config, 1)
  stage = train.build_stage(config, 'bft', mesh, 1000, 1, 10)
  state = stage.init_state(jax.random.key(0), None)
  before = jax.device_get(state.params)
  step = train.compile_step(stage, _loss_fn(stage, config), mesh, config)
  batch = _batch(np.random.default_rng(2))
  batch['image'][0, 0, 0, 0] = np.nan
  state, metrics = step(state, sharding.global_batch(batch, mesh))
  assert not bool(metrics['finite'])
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(jax.device_get(state.params))):
    np.testing.assert_array_equal(a, b)
  # The next finite batch trains normally from the untouched state.
  state, metrics = step(state, sharding.global_batch(_batch(np.random.default_rng(3)), mesh))
  assert bool(metrics['finite'])
  assert update_distance(before, jax.device_get(state.params), before)[1] > 1e-5
  with pytest.raises(train.NonFiniteError, match='NaN/inf at step 7'):
    train._check_finite([(7, metrics['finite'] & False)], 'bft', '/tmp/x')  # pylint: disable=protected-access


@pytest.mark.parametrize('precision', ['bfloat16', 'bf16_matmul'])
@pytest.mark.parametrize('stage_name', ['mgp', 'bft'])
def test_bf16_compute_stays_close_to_float32(stage_name, precision):
  start, ref, ref_losses, _, _ = _train(past_warmup(), stage_name)
  _, bf16, bf16_losses, _, _ = _train(past_warmup(precision=precision), stage_name)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(bf16))  # f32 master params
  np.testing.assert_allclose(bf16_losses, ref_losses, rtol=3e-2)
  assert bf16_losses != ref_losses  # bf16 really was used
  # Adam's sign-like first steps amplify bf16 rounding on small gradients, so the updates
  # agree in direction, not to float32 precision.
  assert_same_training(start, ref, bf16, rel=0.15)


def test_remat_changes_memory_not_numbers():
  start, ref, ref_losses, _, _ = _train(past_warmup(), 'bft', n_steps=3)
  _, remat, remat_losses, _, _ = _train(past_warmup(remat=True), 'bft', n_steps=3)
  np.testing.assert_allclose(remat_losses, ref_losses, rtol=1e-6)
  assert_same_training(start, ref, remat, rel=1e-4)


def test_bal_bce_bias_is_in_the_training_loss_only():
  config = past_warmup(**{'bft.mix_prob': 0.0, 'bft.drop_path': 0.0,
                          'bft.label_smoothing': 0.0, 'bft.tau': 1.3})
  mesh = _mesh(config, 1)
  stage = train.build_stage(config, 'bft', mesh, 1000, 1, 10)
  params = stage.init_state(jax.random.key(0), None).params
  # A trained-looking head, so logits are not all ~0.
  params = jax.tree.map(lambda x: x, params)
  params['head']['kernel'] = jax.random.normal(jax.random.key(1), params['head']['kernel'].shape)
  batch = _batch(np.random.default_rng(4))
  raw = np.asarray(stage.model.apply({'params': params}, batch['image'], train=False),
                   np.float64)

  # Training loss: sigmoid BCE (float64 NumPy) of the logits plus tau * B (Eq. 10).
  pi = COUNTS / COUNTS.sum()
  bias = 1.3 * (np.log(pi) - np.log1p(-pi) + np.log(len(COUNTS) - 1))
  z = raw + bias
  y = np.eye(10)[batch['label']]
  expected = np.mean(np.sum(np.logaddexp(0, z) - y * z, axis=-1))
  loss, _ = steps.bft_loss_fn(stage.model, config, COUNTS)(params, batch, jax.random.key(0))
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
  unbiased = np.mean(np.sum(np.logaddexp(0, raw) - y * raw, axis=-1))
  assert abs(expected - unbiased) > 0.1  # the bias matters for this loss value

  # Evaluation logits are the raw model outputs: no bias.
  predict = evaluate.predict_fn(stage.model, mesh, stage.params_sharding)
  eval_batch = dict(batch, mask=np.ones(16, np.float32))
  logits, labels, _ = predict(params, sharding.global_batch(eval_batch, mesh))
  np.testing.assert_allclose(np.asarray(logits), raw, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(np.asarray(labels), batch['label'])
  assert np.abs(np.asarray(logits) - z).max() > 1.0
  np.testing.assert_array_equal(balanced.bal_bce_bias(COUNTS, 1.3), bias)


class _Dispatched:
  """Stands for a step's output array: records whether the host waited for it."""

  def __init__(self):
    self.waited = False

  def block_until_ready(self):
    self.waited = True
    return self


@pytest.mark.parametrize('limit', [1, 3])
def test_host_runs_at_most_limit_steps_ahead(limit):
  pending = []
  for step in range(1, 9):
    pending.append((step, _Dispatched()))
    train.bound_in_flight(pending, limit)
    # Every step older than the newest `limit` was waited for, none of the newest `limit`.
    waited = [s for s, out in pending if out.waited]
    assert waited == list(range(1, max(step - limit, 0) + 1))


def test_in_flight_bound_zero_never_waits():
  pending = [(s, _Dispatched()) for s in range(1, 20)]
  train.bound_in_flight(pending, 0)
  assert not any(out.waited for _, out in pending)


def test_training_loop_bounds_steps_in_flight_by_the_config(tmp_path, monkeypatch):
  from livt_jax.engine import run  # pylint: disable=g-import-not-at-top
  config = past_warmup(**{'stages': 'bft', 'bft.init_from': 'scratch', 'max_steps': 5,
                          'log_every_steps': 100, 'checkpoint_every_steps': 100,
                          'max_steps_in_flight': 2})
  calls = []
  real = train.bound_in_flight

  def recording(pending, limit):
    real(pending, limit)
    calls.append((pending[-1][0], limit, [bool(out.is_ready()) for _, out in pending[:-limit]]))

  monkeypatch.setattr(train, 'bound_in_flight', recording)
  run.run(config, str(tmp_path))
  assert [step for step, _, _ in calls] == [1, 2, 3, 4, 5]
  assert all(limit == 2 for _, limit, _ in calls)
  # After the bound, every step but the newest two has finished.
  assert all(all(ready) for _, _, ready in calls)
  assert [len(ready) for _, _, ready in calls] == [0, 0, 1, 2, 3]
