"""One training loop for both LiVT stages (MGP and BFT).

Shapes first (`eval_shape`), shardings from the model's logical axes, the state created already
sharded by a jitted init, the state donated to the step, checkpoints with the data position, and
a NaN/inf guard that stops the run without saving anything corrupt.
"""
import dataclasses
import os
import time
from typing import Any

from absl import logging
from clu import metric_writers
from clu import periodic_actions
import flax.linen as nn
import jax

from livt_jax import checkpointing
from livt_jax import optim
from livt_jax import plan as plan_lib
from livt_jax import sharding
from livt_jax import steps
from livt_jax import train_state
from livt_jax.data import pipeline
from livt_jax.models import factory
from livt_jax.models import vit


class NonFiniteError(RuntimeError):
  """The loss or gradient norm became NaN/inf."""


@dataclasses.dataclass
class Stage:
  """Everything about a stage that is known before any array is allocated."""
  name: str
  model: nn.Module
  tx: Any
  schedule: Any
  plan: plan_lib.StagePlan
  image_shape: tuple
  params_sharding: Any
  state_sharding: Any
  abstract_state: Any  # ShapeDtypeStructs carrying their shardings
  init_state: Any      # jitted: (rng, encoder_params or None) -> sharded TrainState


def build_stage(config, name: str, mesh, num_train: int, image_channels: int,
                num_classes: int) -> Stage:
  sc = config[name]
  p = plan_lib.stage_plan(config, name, num_train, mesh.size)
  model = factory.build_mae(config) if name == 'mgp' else factory.build_vit(config, num_classes)
  image_shape = (sc.image_size, sc.image_size, image_channels)
  init_vars = factory.init_fn(model, image_shape)
  boxed = jax.eval_shape(init_vars, jax.random.key(0))['params']
  params_sharding = sharding.param_shardings(boxed, mesh)
  schedule = optim.lr_schedule(sc.base_lr, p.global_batch, p.total_steps, p.warmup_steps,
                               sc.min_lr)
  depth = vit.get_variant(config.model.variant)['depth']
  tx = optim.make_optimizer(
      nn.unbox(boxed), learning_rate=schedule, b1=sc.b1, b2=sc.b2, weight_decay=sc.weight_decay,
      layer_decay=sc.layer_decay if name == 'bft' else None, depth=depth,
      grad_clip_norm=sc.grad_clip_norm)

  def init(rng, encoder_params):
    params = nn.unbox(init_vars(rng))['params']
    if encoder_params is not None:
      params = {**params, 'encoder': encoder_params}
    return train_state.create(params, tx)

  abstract = jax.eval_shape(init, jax.random.key(0), None)
  state_sharding = sharding.state_shardings(abstract, params_sharding, mesh)
  fresh = jax.jit(lambda rng: init(rng, None), out_shardings=state_sharding)
  if name == 'bft':
    from_encoder = jax.jit(init, out_shardings=state_sharding, in_shardings=(
        sharding.replicated(mesh), params_sharding['encoder']))
  init_jit = lambda rng, enc: fresh(rng) if enc is None else from_encoder(rng, enc)
  return Stage(name, model, tx, schedule, p, image_shape, params_sharding, state_sharding,
               checkpointing.abstract_with_shardings(abstract, state_sharding), init_jit)


def compile_step(stage: Stage, loss_fn, mesh, config):
  step = steps.make_train_step(loss_fn, stage.tx, seed=config.seed,
                               accum_steps=config.grad_accum_steps)
  return jax.jit(step, in_shardings=(stage.state_sharding, sharding.batch_sharding(mesh)),
                 out_shardings=(stage.state_sharding, sharding.replicated(mesh)),
                 donate_argnums=0)


def _check_finite(pending: list, stage_name: str, ckpt_dir: str):
  for step, finite in pending:
    if not bool(jax.device_get(finite)):
      raise NonFiniteError(
          f'{stage_name}: the loss or gradient norm became NaN/inf at step {step}; the update '
          f'was skipped and no corrupt state was saved (last good checkpoint in {ckpt_dir}). '
          f'Lower --config.{stage_name}.base_lr, set --config.{stage_name}.grad_clip_norm=1.0, '
          'or use --config.precision=float32.')
  pending.clear()


def train(config, stage: Stage, loss_fn, source, info, mesh, workdir: str,
          encoder_params=None):
  """Trains one stage to its last step (resuming from the workdir); returns the final state."""
  stage_dir = os.path.join(workdir, stage.name)
  ckpt_dir = os.path.join(stage_dir, 'checkpoints')
  mngr = checkpointing.manager(ckpt_dir, config)
  iterator = pipeline.train_iterator(
      source, stage=stage.name, stage_config=config[stage.name], dataset_info=info,
      global_batch_size=stage.plan.global_batch, seed=config.seed,
      process_index=jax.process_index(), process_count=jax.process_count(),
      read_threads=config.dataset.read_threads, prefetch_buffer=config.dataset.prefetch_buffer)
  if mngr.latest_step() is not None:
    state = checkpointing.restore(mngr, stage.abstract_state, iterator)
    logging.info('%s: resumed from step %d in %s', stage.name, int(state.step), ckpt_dir)
  else:
    state = stage.init_state(jax.random.key(config.seed), encoder_params)
  start, total = int(jax.device_get(state.step)), stage.plan.run_steps
  if start >= total:
    logging.info('%s: already finished (%d steps)', stage.name, total)
    return state

  step_fn = compile_step(stage, loss_fn, mesh, config)
  writer = metric_writers.create_default_writer(
      os.path.join(workdir, 'tensorboard', stage.name), just_logging=jax.process_index() > 0)
  hooks = [periodic_actions.ReportProgress(num_train_steps=total, writer=writer,
                                           every_steps=config.log_every_steps)]
  if config.profile and jax.process_index() == 0:
    hooks.append(periodic_actions.Profile(logdir=os.path.join(workdir, 'profile', stage.name)))
  pending, t0, n0 = [], time.perf_counter(), start
  metrics = None
  for step in range(start + 1, total + 1):
    with jax.profiler.StepTraceAnnotation(stage.name, step_num=step):
      batch = sharding.global_batch(next(iterator), mesh)
      state, metrics = step_fn(state, batch)
    pending.append((step, metrics['finite']))
    for hook in hooks:
      hook(step)
    if step % config.log_every_steps == 0 or step == total:
      _check_finite(pending, stage.name, ckpt_dir)
      m = jax.device_get(metrics)
      dt = time.perf_counter() - t0
      scalars = {k: float(v) for k, v in m.items() if k != 'finite'}
      scalars['learning_rate'] = float(stage.schedule(step - 1))
      scalars['images_per_sec'] = (step - n0) * stage.plan.global_batch / max(dt, 1e-9)
      writer.write_scalars(step, scalars)
      t0, n0 = time.perf_counter(), step
    if step % config.checkpoint_every_steps == 0 or step == total:
      _check_finite(pending, stage.name, ckpt_dir)
      checkpointing.save(mngr, step, state, iterator)
  mngr.wait_until_finished()
  writer.flush()
  return state


def load_params(config, stage: Stage, checkpoint_dir: str):
  """Restores the parameters of a finished (or interrupted) stage from its checkpoint dir."""
  mngr = checkpointing.manager(checkpoint_dir, config)
  if mngr.latest_step() is None:
    raise FileNotFoundError(
        f'no checkpoint in {checkpoint_dir}; point the setting at WORKDIR/<stage>/checkpoints of '
        'a run that saved at least once')
  return checkpointing.restore(mngr, stage.abstract_state).params


def encoder_from(params) -> Any:
  """The encoder part of an MGP (MAE) or BFT (ViT) parameter tree: the decoder is dropped."""
  return params['encoder']

