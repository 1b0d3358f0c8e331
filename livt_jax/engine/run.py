"""Runs the configured LiVT stages in order: MGP -> BFT -> evaluate."""
import importlib
import os
import threading

import jax

from livt_jax.evals import evaluate
from livt_jax.evals import evaluators
from livt_jax.runtime import paths
from livt_jax.evals import reconstructions
from livt_jax.evals import report
from livt_jax.engine import sharding
from livt_jax.engine import steps
from livt_jax.engine import train
from livt_jax.engine import train_state
from livt_jax import validate
from livt_jax.data import registry
from livt_jax.data import sources
from livt_jax.interop import stages as torch_checkpoints
from livt_jax.models import factory

SCRATCH = validate.INIT_FROM_SCRATCH  # bft.init_from value for a randomly initialised encoder

_say = train.say


def _encoder_source(config, stages, workdir, build):
  """Where BFT's encoder comes from when it starts fresh: (description, loader or None).

  In order: MGP of this run; bft.init_from (a checkpoint dir, a PyTorch .pth/.safetensors
  file of an MAE/LiVT/timm encoder, or 'scratch'); a MGP checkpoint
  already in this workdir. With none of them BFT does not start (ConfigError): fine-tuning a
  random encoder has to be asked for.
  """
  init_from = config.bft.init_from
  if 'mgp' in stages:
    where = workdir / 'mgp' / 'checkpoints'
  elif init_from == SCRATCH:
    return 'random initialisation (bft.init_from=scratch)', None
  elif init_from and torch_checkpoints.is_torch_file(init_from):
    return (f'PyTorch checkpoint {init_from}',
            lambda: torch_checkpoints.encoder_loader(build('bft'), init_from)())
  elif init_from:
    where = paths.resolve(init_from)
  else:
    where = workdir / 'mgp' / 'checkpoints'
    step = train.latest_step(config, where)
    if step is None:
      raise validate.ConfigError(
          f'config.bft.init_from is unset and {workdir} holds no MGP checkpoint: BFT needs a '
          'pretrained encoder. Run MGP first (--config.stages=mgp,bft,evaluate), point '
          '--config.bft.init_from at WORKDIR/mgp/checkpoints of an MGP run, or fine-tune from '
          f'random initialisation with --config.bft.init_from={SCRATCH}')
    total = build('mgp').plan.run_steps
    note = '' if step >= total else f' (MGP unfinished: step {step} of {total})'
    return f'the MGP checkpoint in this workdir, {where}{note}', _loader(config, build, where)
  return f'{where}', _loader(config, build, where)


def _loader(config, build, where):
  return lambda: train.encoder_from(train.load_params(config, build('mgp'), where))


def _import_in_background(name: str):
  """Starts importing `name` on another thread. clu's metric writers load TensorFlow (~5 s of
  one core here), which the stages need only at their first log line: loaded meanwhile, it
  overlaps the data loading and the first compiles (which release the GIL). An `import` of the
  same module elsewhere waits for this one to finish (Python's per-module import lock)."""
  thread = threading.Thread(target=importlib.import_module, args=(name,), name=f'import {name}')
  thread.start()
  _background_imports.append(thread)


_background_imports = []


def wait_for_background_imports():
  """Waits for `_import_in_background`'s imports. Called before the interpreter shuts down
  (an early error exit): an import still running then fails with "RuntimeError: can't register
  atexit after shutdown" (TensorFlow -> keras -> scikit-learn -> concurrent.futures) and prints
  its traceback after our one-line error."""
  while _background_imports:
    _background_imports.pop().join()


def run(config, workdir) -> dict | None:
  """Runs every stage of `config.stages`; returns the evaluation result if evaluated."""
  _import_in_background('clu.metric_writers')
  jax.config.update('jax_threefry_partitionable', True)  # masks independent of the sharding
  stages = validate.parse_stages(config)
  torch_checkpoints.adapt_config(config, stages, _say)  # before config.json and any model
  workdir = paths.resolve(workdir)
  if jax.process_index() == 0:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / 'config.json').write_text(config.to_json_best_effort(indent=1))
  mesh = sharding.make_mesh(config)
  info = registry.get_info(config.dataset.name)
  train_source = sources.load_source(config.dataset, 'train')
  counts = train_source.class_counts
  if jax.process_index() == 0:
    sources.save_class_counts(os.fspath(workdir / 'class_counts.json'), counts,
                              getattr(train_source, 'class_names', None))
  channels = info.num_channels
  _say(f'{info.name}: {len(train_source)} training images, {len(counts)} classes '
       f'(largest {max(counts)}, smallest {min(counts)}); stages {",".join(stages)}; '
       f'devices {jax.device_count()}; workdir {workdir}')
  slow_bf16 = factory.slow_bf16_matmul_note(config, factory.cpu_flags())
  if slow_bf16:
    _say(slow_bf16)

  smoothing_note = steps.smoothing_note(config, counts) if 'bft' in stages else None
  if smoothing_note:
    _say(smoothing_note)
  head_bias = steps.initial_head_bias(config, counts)

  def build(name):
    return train.build_stage(config, name, mesh, len(train_source), channels,
                             train_source.num_classes,
                             head_bias=head_bias if name == 'bft' else None)

  # Checked before anything trains, so a missing encoder costs no MGP time.
  encoder = _encoder_source(config, stages, workdir, build) if 'bft' in stages else None

  if 'mgp' in stages:
    mgp = build('mgp')
    _say(f'mgp: {mgp.plan.run_steps} steps of {mgp.plan.global_batch} images')
    # The returned MGP state is dropped after the reconstructions figure, before BFT allocates
    # its own: BFT reads only the encoder back from the checkpoint, and only when it starts fresh.
    mgp_state = train.train(config, mgp, steps.mgp_loss_fn(mgp.model), train_source, info, mesh,
                            workdir)
    figure = workdir / 'report' / reconstructions.FILE_NAME
    if mgp_state is not None or not figure.exists():
      mgp_params = (mgp_state.params if mgp_state is not None else
                    train.load_params(config, mgp, workdir / 'mgp' / 'checkpoints'))
      del mgp_state
      reconstructions.write(config, mgp.model, mgp_params,
                            sources.load_source(config.dataset, 'test'), info, figure.parent,
                            seed=config.seed)
      del mgp_params
    _say(f'mgp: done, checkpoints in {workdir / "mgp" / "checkpoints"}; reconstructions in '
         f'{figure}')

  bft, bft_state, evals_at_end = None, None, {}
  if 'bft' in stages:
    bft = build('bft')
    description, init_encoder = encoder
    _say(f'bft: {bft.plan.run_steps} steps of {bft.plan.global_batch} images, loss '
         f'{config.bft.loss}; encoder from {description} (unless resuming)')
    loss_fn = steps.bft_loss_fn(bft.model, config, counts)
    hook = evaluators.EvalHook(
        evaluators.build(config, bft.model, bft.params_sharding, info, mesh, counts, _say),
        workdir, bft.plan.steps_per_epoch, bft.plan.run_steps, _say)
    try:
      bft_state = train.train(config, bft, loss_fn, train_source, info, mesh, workdir,
                              init_encoder=init_encoder, after_step=hook)
    finally:  # also on preemption: a best-on-val save in flight completes
      hook.close()
    evals_at_end = hook.last
    _say(f'bft: done, checkpoints in {workdir / "bft" / "checkpoints"}')

  if 'evaluate' not in stages:
    return None
  return _evaluate(config, workdir, bft or build('bft'), bft_state, 'bft' in stages, info, mesh,
                   counts, evals_at_end)


def _evaluate(config, workdir, bft, bft_state, trained_here: bool, info, mesh, counts,
              evals_at_end) -> dict:
  """Test metrics of the final BFT model and of the best-on-validation one, and the report.

  `evals_at_end`: the evaluators' metrics of the final model (when BFT ran here), kept in the
  report as `evals` so sweeps can compare runs on validation.
  """
  if trained_here:
    checkpoint = workdir / 'bft' / 'checkpoints'
    choice = 'final BFT model'
  else:
    checkpoint = paths.resolve(config.evaluate.checkpoint)
    choice = f'checkpoint {checkpoint}'
  # The state just trained is in memory; a finished or separate run's is read back.
  from_torch = not trained_here and torch_checkpoints.is_torch_file(config.evaluate.checkpoint)
  if bft_state is not None:
    params = train_state.model_params(bft_state)
  elif from_torch:  # an official LiVT / timm fine-tuned ViT
    params = torch_checkpoints.classifier_params(bft, config.evaluate.checkpoint)
  else:
    params = train.load_params(config, bft, checkpoint)
  test_source = sources.load_source(config.dataset, 'test')
  _say(f'evaluate: {len(test_source)} test images, {choice}')

  def test_metrics(p, label):
    r = evaluate.evaluate(config, bft.model, p, bft.params_sharding, test_source, info, mesh,
                          counts)
    r.update(split='test', model_choice=label)
    return r

  result = test_metrics(params, choice)
  result['evals'] = evals_at_end
  del params
  selected = evaluators.selection(config)
  best = None
  if selected is not None and not from_torch:
    name, metric = selected
    best = evaluators.restore_best(checkpoint.parent / 'best', metric, bft.abstract_state.params)
  if best is not None:
    best_params, step, val = best
    epoch = step / bft.plan.steps_per_epoch
    selected_on = f'{name} {metric}'
    label = f'best on {selected_on} (epoch {epoch:.1f}, {selected_on} {100 * val[metric]:.1f})'
    if trained_here and step == bft.plan.run_steps:
      # The best is the final model (the same parameters): its test figures are those above.
      _say(f'evaluate: {label} = the final model')
      same = {k: v for k, v in result.items() if k != 'evals'}
      result['best_on_val'] = {**same, 'model_choice': label, 'step': step, 'epoch': epoch,
                               'val': val, 'selected_on': selected_on}
    else:
      _say(f'evaluate: {label}')
      result['best_on_val'] = {**test_metrics(best_params, label), 'step': step,
                               'epoch': epoch, 'val': val, 'selected_on': selected_on}
    del best_params
  result['convention'] = {
      'many_threshold': config.dataset.many_threshold,
      'few_threshold': config.dataset.few_threshold, 'num_bins': config.evaluate.num_bins}
  if jax.process_index() == 0:
    out_dir = workdir / 'report'
    md = report.write(result, counts, out_dir,
                      f'LiVT on {info.name}: ViT-{config.model.variant}, loss {config.bft.loss}')
    from clu import metric_writers  # pylint: disable=g-import-not-at-top
    writer = metric_writers.create_default_writer(paths.native(workdir / 'tensorboard' / 'eval'))
    writer.write_scalars(0, {k: result[k] for k in ('top1', 'many', 'medium', 'few', 'ece', 'mce')
                             if result[k] is not None})
    writer.flush()
    print(md, flush=True)
    _say(f'report written to {out_dir} (report.md, report.json, reliability.png, '
         'per_class_accuracy.png)')
  return result
