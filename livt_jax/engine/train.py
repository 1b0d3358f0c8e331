"""One training loop for both LiVT stages (MGP and BFT).

Shapes first (`eval_shape`), shardings from the model's logical axes, the state created already
sharded by a jitted init, the state donated to the step, checkpoints with the data position, and
a NaN/inf guard that stops the run without saving anything corrupt.
"""
import concurrent.futures
import dataclasses
import functools
import os
import time
from typing import Any, Callable

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp

from livt_jax.engine import checkpointing
from livt_jax.runtime import chips
from livt_jax.engine import optim
from livt_jax.runtime import paths
from livt_jax import plan as plan_lib
from livt_jax.runtime import preemption
from livt_jax.engine import sharding
from livt_jax.engine import steps
from livt_jax.engine import train_state
from livt_jax.data import device_augment
from livt_jax.data import pipeline
from livt_jax.data import prefetch
from livt_jax.data import registry
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
                num_classes: int, head_bias=None) -> Stage:
  """`head_bias` (BFT, [num_classes]): the head's bias when the stage starts fresh."""
  sc = config[name]
  p = plan_lib.stage_plan(config, name, num_train, mesh.size)
  model = factory.build_mae(config) if name == 'mgp' else factory.build_vit(config, num_classes)
  image_shape = (sc.image_size, sc.image_size, image_channels)
  init_vars = factory.init_fn(model, image_shape)
  boxed = jax.eval_shape(init_vars, jax.random.key(0))['params']
  params_sharding = sharding.param_shardings(boxed, mesh)
  schedule = optim.lr_schedule(sc.base_lr, p.global_batch, p.total_steps, p.warmup_steps,
                               sc.min_lr)
  depth = vit.config_size(config.model)['depth']
  tx = optim.make_optimizer(
      nn.unbox(boxed), learning_rate=schedule, b1=sc.b1, b2=sc.b2, weight_decay=sc.weight_decay,
      layer_decay=sc.layer_decay if name == 'bft' else None, depth=depth,
      grad_clip_norm=sc.grad_clip_norm, pretraining=name == 'mgp',
      ema_decay=sc.get('ema_decay', 0.0))

  def init(rng, encoder_params):
    params = nn.unbox(init_vars(rng))['params']
    if encoder_params is not None:  # MGP's encoder; a learned BFT position table stays fresh
      params = {**params, 'encoder': {**params['encoder'], **encoder_params}}
    if head_bias is not None:
      params = {**params, 'head': {**params['head'],
                                   'bias': jnp.asarray(head_bias, params['head']['bias'].dtype)}}
    return train_state.create(params, tx)

  abstract = jax.eval_shape(init, jax.random.key(0), None)
  state_sharding = sharding.state_shardings(abstract, params_sharding, mesh)
  fresh = jax.jit(lambda rng: init(rng, None), out_shardings=state_sharding)
  if name == 'bft':
    # MGP's encoder has no learned position table (model.posemb='learned' adds one in BFT).
    mgp_encoder = {k: v for k, v in params_sharding['encoder'].items() if k != 'pos_embedding'}
    from_encoder = jax.jit(init, out_shardings=state_sharding, in_shardings=(
        sharding.replicated(mesh), mgp_encoder))
    # A PyTorch encoder with a trained position table (livt_jax/interop) brings it along.
    with_table = jax.jit(init, out_shardings=state_sharding, in_shardings=(
        sharding.replicated(mesh), params_sharding['encoder']))

  def init_jit(rng, enc):
    if enc is None:
      return fresh(rng)
    return (with_table if 'pos_embedding' in enc else from_encoder)(rng, enc)

  return Stage(name, model, tx, schedule, p, image_shape, params_sharding, state_sharding,
               checkpointing.abstract_with_shardings(abstract, state_sharding), init_jit)


def device_preprocess(config):
  """The on-device part of the input pipeline for this config's dataset."""
  info = registry.get_info(config.dataset.name)
  return functools.partial(device_augment.preprocess, mean=info.mean, std=info.std)


def compile_step(stage: Stage, loss_fn, mesh, config):
  step = steps.make_train_step(loss_fn, stage.tx, seed=config.seed,
                               accum_steps=config.grad_accum_steps,
                               preprocess=device_preprocess(config))
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


def bound_in_flight(pending: list, limit: int):
  """Blocks until at most `limit` of the dispatched steps in `pending` ((step, array) pairs,
  oldest first, all dispatched since the last check) can still be running."""
  if limit > 0 and len(pending) > limit:
    pending[-limit - 1][1].block_until_ready()


def _duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rest = divmod(seconds, 3600)
  return f'{h}h{rest // 60:02d}m' if h else f'{rest // 60}m{rest % 60:02d}s'


def progress_line(stage: str, step: int, total: int, images_per_sec: float, loss: float,
                  lr: float, eta_seconds: float) -> str:
  """The one console line per log step."""
  width = len(str(total))
  return (f'{stage} {step:>{width}}/{total} {100 * step / total:5.1f}% | '
          f'{images_per_sec:7.0f} img/s | loss {loss:.4f} | lr {lr:.2e} | '
          f'ETA {_duration(eta_seconds)}')


def train(config, stage: Stage, loss_fn, source, info, mesh, workdir,
          init_encoder: Callable[[], Any] | None = None,
          after_step: Callable[[int, Any], float | None] | None = None):
  """Trains one stage to its last step, resuming from the workdir.

  Args:
    init_encoder: called only when the stage starts fresh; returns the encoder parameters to
      start from (BFT after MGP), or None for a random initialisation.
    after_step: called with (step, state) after every step, before that step's checkpoint is
      saved (the evaluators: `evaluators.EvalHook`, which evaluates
      `train_state.model_params(state)`: the EMA when the stage keeps one).

  Returns:
    The final train state, or None when the stage had already finished (nothing restored).

  Raises:
    preemption.Preempted: a SIGTERM/SIGINT arrived; the step it interrupted was saved.
    NonFiniteError: the loss became NaN/inf.
  """
  ckpt_dir = paths.resolve(workdir) / stage.name / 'checkpoints'
  mngr = checkpointing.manager(ckpt_dir, config)
  start, total = mngr.latest_step(), stage.plan.run_steps
  if start is not None and start >= total:
    logging.info('%s: already finished (%d steps)', stage.name, total)
    mngr.close()
    return None
  iterator = pipeline.train_iterator(
      source, stage=stage.name, stage_config=config[stage.name], dataset_info=info,
      global_batch_size=stage.plan.global_batch, seed=config.seed,
      process_index=jax.process_index(), process_count=jax.process_count(),
      read_threads=config.dataset.read_threads, prefetch_buffer=config.dataset.prefetch_buffer,
      workers=config.dataset.workers)
  step_fn = compile_step(stage, loss_fn, mesh, config)
  # The step compiles on a second thread while the state is initialised or restored below (XLA
  # compiles each executable on one core; on the 2-core CPU host of the embedded default the
  # stages reached step 50 1-5 s sooner). jit keeps the executable: the first step call does
  # not compile again.
  abstract_batch = pipeline.abstract_train_batch(
      source, stage=stage.name, stage_config=config[stage.name], dataset_info=info,
      global_batch_size=stage.plan.global_batch, seed=config.seed,
      sharding=sharding.batch_sharding(mesh))
  compiling = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='compile_step')
  accounting_future = compiling.submit(
      chips.accounting_for_step, step_fn, stage.abstract_state, abstract_batch,
      list(mesh.devices.flat), config.get('peak_tflops'), config.grad_accum_steps)
  compiling.shutdown(wait=False)
  if start is not None:
    state = checkpointing.restore(mngr, stage.abstract_state, iterator)
    say(f'{stage.name}: resuming from step {int(state.step)} in {ckpt_dir}')
  else:
    encoder = init_encoder() if init_encoder is not None else None
    state = stage.init_state(jax.random.key(config.seed), encoder)
    del encoder
  start = int(jax.device_get(state.step))
  # Imported here: clu's writers load TensorFlow (~0.5 GB RSS, seconds of start-up), which the
  # step itself never needs (the benchmark builds steps with this module and no writer).
  from clu import metric_writers  # pylint: disable=g-import-not-at-top
  from clu import periodic_actions  # pylint: disable=g-import-not-at-top
  writer = metric_writers.create_default_writer(
      paths.native(paths.resolve(workdir) / 'tensorboard' / stage.name),
      just_logging=jax.process_index() > 0)
  hooks = [periodic_actions.ReportProgress(num_train_steps=total, writer=writer,
                                           every_steps=config.log_every_steps)]
  if config.profile and jax.process_index() == 0:
    hooks.append(periodic_actions.Profile(
        logdir=paths.native(paths.resolve(workdir) / 'profile' / stage.name)))
  batches = prefetch.DevicePrefetch(iterator, lambda b: sharding.global_batch(b, mesh),
                                    size=config.dataset.device_prefetch)
  # FLOPs of the compiled step and the device's peak: TFLOP/s and MFU.
  accounting = accounting_future.result()
  pending, t0, n0 = [], time.perf_counter(), start
  with preemption.StopOnSignal() as stopper:
    for step in range(start + 1, total + 1):
      with jax.profiler.StepTraceAnnotation(stage.name, step_num=step):
        batch = next(batches)
        state, metrics = step_fn(state, batch)
      pending.append((step, metrics['finite']))
      bound_in_flight(pending, config.max_steps_in_flight)
      for hook in hooks:
        hook(step)
      if step % config.log_every_steps == 0 or step == total:
        _check_finite(pending, stage.name, ckpt_dir)
        m = jax.device_get(metrics)
        dt = time.perf_counter() - t0
        scalars = {k: float(v) for k, v in m.items() if k != 'finite'}
        scalars['learning_rate'] = float(stage.schedule(step - 1))
        scalars['images_per_sec'] = (step - n0) * stage.plan.global_batch / max(dt, 1e-9)
        scalars.update(accounting.scalars((step - n0) / max(dt, 1e-9), stage.plan.global_batch))
        writer.write_scalars(step, scalars)
        say(progress_line(stage.name, step, total, scalars['images_per_sec'],
                          scalars['loss'], scalars['learning_rate'],
                          (total - step) * dt / max(step - n0, 1)))
        t0, n0 = time.perf_counter(), step
      if after_step is not None:
        # img/s and ETA count training time only: the hook returns the seconds it spent
        # after this step's result was ready (waiting for the step itself is training).
        t0 += after_step(step, state) or 0.0
      stop = stopper.should_stop(step)
      if stop or step == total or mngr.should_save(step):
        _check_finite(pending, stage.name, ckpt_dir)
        checkpointing.save(mngr, step, state, batches)
      if stop:
        checkpointing.wait(mngr)
        writer.flush()
        raise preemption.Preempted(stage.name, step, os.fspath(ckpt_dir))
  checkpointing.wait(mngr)
  writer.flush()
  iterator.close()  # stops grain's worker processes, if any
  return state


def say(message: str):
  """One line on the console (process 0) and in the log."""
  logging.info(message)
  if jax.process_index() == 0:
    print(f'livt_jax: {message}', flush=True)


def latest_step(config, checkpoint_dir) -> int | None:
  """The last saved step in a stage's checkpoint dir, or None (also if there is no dir)."""
  if not paths.resolve(checkpoint_dir).exists():
    return None
  mngr = checkpointing.manager(checkpoint_dir, config)
  step = mngr.latest_step()
  mngr.close()
  return step


def load_params(config, stage: Stage, checkpoint_dir):
  """Restores the parameters of a finished (or interrupted) stage from its checkpoint dir (their
  EMA when the stage keeps one: `train_state.model_params`)."""
  mngr = checkpointing.manager(checkpoint_dir, config)
  if mngr.latest_step() is None:
    raise FileNotFoundError(
        f'no checkpoint in {checkpoint_dir}; point the setting at WORKDIR/<stage>/checkpoints of '
        'a run that saved at least once')
  params = train_state.model_params(checkpointing.restore(mngr, stage.abstract_state))
  mngr.close()
  return params


def encoder_from(params) -> Any:
  """The encoder part of an MGP (MAE) or BFT (ViT) parameter tree: the decoder is dropped."""
  return params['encoder']

