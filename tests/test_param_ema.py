"""bft.ema_decay: an EMA of the weights kept in the optimizer state is the model evaluated, kept
as best, restored and exported; with 0 nothing changes."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from engine_helpers import past_warmup
from livt_jax.engine import checkpointing
from livt_jax.evals import evaluate
from livt_jax.engine import optim
from livt_jax.engine import run
from livt_jax.engine import sharding
from livt_jax.engine import steps
from livt_jax.engine import train
from livt_jax.engine import train_state
from livt_jax import validate
from livt_jax.data import registry
from livt_jax.data import sources
from livt_jax.interop import export

COUNTS = [600, 300, 150, 80, 40, 20, 12, 8, 5, 3]


def test_ema_follows_the_recurrence_in_float64():
  rng = np.random.default_rng(0)
  params = {'w': jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
            'b': jnp.asarray(rng.normal(size=3), jnp.float32)}
  decay = 0.8
  tx = optim.make_optimizer(params, learning_rate=0.05, b1=0.9, b2=0.99, weight_decay=0.0,
                            ema_decay=decay)
  state = train_state.create(params, tx)
  ref = jax.tree.map(lambda p: np.asarray(p, np.float64), params)  # starts at the initial params
  for _ in range(6):
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    state = state.replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state)
    ref = jax.tree.map(lambda e, p: decay * e + (1 - decay) * np.asarray(p, np.float64),
                       ref, state.params)
  got = train_state.model_params(state)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  # The average lags the parameters: it is not just a copy of them.
  assert max(float(np.abs(a - p).max()) for a, p in
             zip(jax.tree.leaves(got), jax.tree.leaves(state.params))) > 1e-3


def test_no_ema_by_default_and_bad_decays_are_refused():
  params = {'w': jnp.ones(3)}
  tx = optim.make_optimizer(params, learning_rate=0.1, b1=0.9, b2=0.99, weight_decay=0.0)
  state = train_state.create(params, tx)
  assert optim.ema_params(state.opt_state) is None
  assert train_state.model_params(state) is state.params
  for bad in (1.0, -0.1):
    with pytest.raises(ValueError, match='use a value in'):
      optim.track_param_ema(bad)
  with pytest.raises(validate.ConfigError, match=r'config.bft.ema_decay=1.0: use a value in \[0, 1\)'):
    validate.validate(past_warmup(**{'bft.ema_decay': 1.0}), 1, check_data=False)


def test_sharded_ema_follows_its_parameter_and_the_nan_guard_keeps_it():
  config = past_warmup(**{'bft.ema_decay': 0.9})
  config.mesh.data, config.mesh.fsdp = 4, 2
  mesh = sharding.make_mesh(config, jax.devices()[:8])
  stage = train.build_stage(config, 'bft', mesh, 1000, 1, 10)
  state = stage.init_state(jax.random.key(0), None)
  ema = optim.ema_params(state.opt_state)
  for p, e in zip(jax.tree.leaves(state.params), jax.tree.leaves(ema)):
    assert e.sharding == p.sharding
    np.testing.assert_array_equal(np.asarray(e), np.asarray(p))
  assert any('fsdp' in str(e.sharding.spec) for e in jax.tree.leaves(ema))
  step = train.compile_step(stage, steps.bft_loss_fn(stage.model, config, COUNTS), mesh, config)
  rng = np.random.default_rng(1)

  def batch(nan=False):
    b = {'image': rng.integers(0, 256, (16, 28, 28, 1)).astype(np.uint8),
         'label': rng.integers(0, 10, 16).astype(np.int32)}
    b = {**b, 'image': b['image'].astype(np.float32)}
    if nan:
      b['image'][0, 0, 0, 0] = np.nan
    return sharding.global_batch(b, mesh)

  start = jax.device_get(state.params)
  state, _ = step(state, batch())
  state, _ = step(state, batch())
  before = jax.device_get(train_state.model_params(state))
  moved = jax.device_get(state.params)
  # EMA after two steps: 0.81 start + 0.09 step 1 + 0.1 step 2; it moved, less than the params.
  d_ema = max(float(np.abs(a - s).max()) for a, s in
              zip(jax.tree.leaves(before), jax.tree.leaves(start)))
  d_par = max(float(np.abs(a - s).max()) for a, s in
              zip(jax.tree.leaves(moved), jax.tree.leaves(start)))
  assert 1e-5 < d_ema < d_par
  state, metrics = step(state, batch(nan=True))
  assert not bool(metrics['finite'])
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(train_state.model_params(state))):
    np.testing.assert_array_equal(a, np.asarray(b))


def test_a_run_with_ema_evaluates_keeps_and_exports_the_average(tmp_path):
  config = past_warmup(**{'stages': 'bft,evaluate', 'bft.init_from': 'scratch',
                          'max_steps': 6, 'checkpoint_every_steps': 100, 'bft.ema_decay': 0.5,
                          'evals.val.every_epochs': 3 / 924})  # every 3 steps of 16 images
  config.dataset.val_per_class = 100
  result = run.run(config, str(tmp_path))
  mesh = sharding.make_mesh(config, jax.devices()[:1])
  bft = train.build_stage(config, 'bft', mesh, 14786, 1, 10)
  where = tmp_path / 'bft' / 'checkpoints'
  restored = train.load_params(config, bft, where)
  mngr = checkpointing.manager(where, config)
  last = checkpointing.restore(mngr, bft.abstract_state).params
  mngr.close()
  # What is restored (and exported) is the average, not the last parameters.
  assert any(float(np.abs(np.asarray(a) - np.asarray(p)).max()) > 1e-6
             for a, p in zip(jax.tree.leaves(restored), jax.tree.leaves(last)))
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(export.read_params(where)['params'])):
    np.testing.assert_array_equal(np.asarray(a), b)
  # The final evaluation saw the average: evaluating it again gives the reported figures.
  counts = json.loads((tmp_path / 'class_counts.json').read_text())['class_counts']
  again = evaluate.evaluate(config, bft.model, restored, bft.params_sharding,
                            sources.load_source(config.dataset, 'test'),
                            registry.get_info(config.dataset.name), mesh, counts)
  assert again['top1'] == pytest.approx(result['top1'], abs=1e-9)
  assert again['ece'] == pytest.approx(result['ece'], abs=1e-9)
  # The val evaluator saw it too (its last evaluation, at step 6, is of the final average).
  val = evaluate.evaluate(config, bft.model, restored, bft.params_sharding,
                          sources.load_source(config.dataset, 'val'),
                          registry.get_info(config.dataset.name), mesh, counts)
  assert result['evals']['val']['step'] == 6
  assert val['top1'] == pytest.approx(result['evals']['val']['top1'], abs=1e-9)
  assert val['ece'] == pytest.approx(result['evals']['val']['ece'], abs=1e-6)
  assert result['best_on_val']['step'] in (3, 6)
  # A config without the average cannot read this run's state: one clear line says why.
  plain = past_warmup(**{'bft.ema_decay': 0.0})
  other = train.build_stage(plain, 'bft', mesh, 14786, 1, 10)
  with pytest.raises(checkpointing.CheckpointMismatchError,
                     match=r'written with a weight average.*bft.ema_decay > 0'):
    train.load_params(plain, other, where)
