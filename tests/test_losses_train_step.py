"""A Table 7 loss through the real jitted train step: IB needs both the train step (its CE
warm-up ends at bft.ib_epoch) and the head's input features, so it checks that both arrive."""
import jax
import numpy as np

import numpy_reference as ref
import table7_reference as R
from engine_helpers import COUNTS, past_warmup
from livt_jax.engine import sharding
from livt_jax.engine import steps
from livt_jax.engine import train


def test_ib_loss_through_the_train_step():
  steps_per_epoch = int(COUNTS.sum()) // 16                   # 76 steps of 16 images
  config = past_warmup(**{'bft.loss': 'ib', 'bft.ib_alpha': 100.0,
                          'bft.ib_epoch': 2 / steps_per_epoch,  # IB from step 2
                          'bft.mix_prob': 0.0, 'bft.drop_path': 0.0,
                          'bft.label_smoothing': 0.0})
  mesh = sharding.make_mesh(config, jax.devices()[:1])
  stage = train.build_stage(config, 'bft', mesh, int(COUNTS.sum()), 1, 10)
  state = stage.init_state(jax.random.key(0), None)
  step_fn = train.compile_step(stage, steps.bft_loss_fn(stage.model, config, COUNTS), mesh,
                               config)
  forward = jax.jit(lambda p, x: stage.model.apply({'params': p}, x, train=False,
                                                   mutable=['intermediates']))
  rng = np.random.default_rng(0)
  batch = {'image': rng.integers(0, 256, (16, 28, 28, 1)).astype(np.uint8),
           'label': rng.integers(0, 10, 16).astype(np.int32)}
  model_input = train.device_preprocess(config)(batch)['image']
  y = np.eye(10)[batch['label']]
  seen = []
  for step in range(4):
    params = jax.device_get(state.params)
    logits, inter = forward(params, model_input)
    z = np.asarray(logits, np.float64)
    h = np.asarray(inter['intermediates']['pre_logits'][0], np.float64)
    if step < 2:
      want = float(np.mean([-np.dot(yb, ref._log_softmax(zb)) for zb, yb in zip(z, y)]))
    else:
      want = R.ib(z, y, h, COUNTS, 100.0)
    state, metrics = step_fn(state, sharding.global_batch(batch, mesh))
    assert bool(metrics['finite'])
    np.testing.assert_allclose(float(metrics['loss']), want, rtol=1e-4)
    seen.append(float(metrics['loss']))
  # The switch is visible: IB's weights (alpha * C n^-1 / sum n^-1 over the influence) differ
  # from CE's 1 by far more than one step of training moves the loss.
  assert abs(seen[2] - seen[1]) > 10 * abs(seen[1] - seen[0]), seen

