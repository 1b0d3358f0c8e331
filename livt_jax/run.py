"""Runs the configured LiVT stages in order: MGP -> BFT -> evaluate."""
import json
import os

from absl import logging
from clu import metric_writers
import jax

from livt_jax import evaluate
from livt_jax import report
from livt_jax import sharding
from livt_jax import steps
from livt_jax import train
from livt_jax import validate
from livt_jax.data import registry
from livt_jax.data import sources


def _say(msg: str):
  logging.info(msg)
  if jax.process_index() == 0:
    print(f'livt_jax: {msg}', flush=True)


def run(config, workdir: str) -> dict | None:
  """Runs every stage of `config.stages`; returns the evaluation result if evaluated."""
  jax.config.update('jax_threefry_partitionable', True)  # masks independent of the sharding
  stages = validate.parse_stages(config)
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=1))
  mesh = sharding.make_mesh(config)
  info = registry.get_info(config.dataset.name)
  train_source = sources.load_source(config.dataset, 'train')
  counts = train_source.class_counts
  if jax.process_index() == 0:
    sources.save_class_counts(os.path.join(workdir, 'class_counts.json'), counts,
                              getattr(train_source, 'class_names', None))
  channels = info.num_channels
  _say(f'{info.name}: {len(train_source)} training images, {len(counts)} classes '
       f'(largest {max(counts)}, smallest {min(counts)}); stages {",".join(stages)}; '
       f'{jax.device_count()} devices')

  def build(name):
    return train.build_stage(config, name, mesh, len(train_source), channels,
                             train_source.num_classes)

  encoder = None
  if 'mgp' in stages:
    mgp = build('mgp')
    _say(f'mgp: {mgp.plan.total_steps} steps of {mgp.plan.global_batch} images')
    state = train.train(config, mgp, steps.mgp_loss_fn(mgp.model), train_source, info, mesh,
                        workdir)
    encoder = train.encoder_from(state.params)
    _say(f'mgp: done, checkpoints in {os.path.join(workdir, "mgp", "checkpoints")}')
  elif 'bft' in stages and config.bft.init_from:
    encoder = train.encoder_from(train.load_params(config, build('mgp'), config.bft.init_from))
    _say(f'bft: encoder initialised from {config.bft.init_from}')

  params, bft = None, None
  if 'bft' in stages:
    bft = build('bft')
    if encoder is None:
      _say('bft: no MGP encoder (stage not run, bft.init_from unset): fine-tuning from scratch')
    _say(f'bft: {bft.plan.total_steps} steps of {bft.plan.global_batch} images, loss '
         f'{config.bft.loss}')
    loss_fn = steps.bft_loss_fn(bft.model, config, counts)
    params = train.train(config, bft, loss_fn, train_source, info, mesh, workdir,
                         encoder_params=encoder).params
    _say(f'bft: done, checkpoints in {os.path.join(workdir, "bft", "checkpoints")}')

  if 'evaluate' not in stages:
    return None
  bft = bft or build('bft')
  if params is None:
    params = train.load_params(config, bft, config.evaluate.checkpoint)
    choice = f'checkpoint {config.evaluate.checkpoint}'
  else:
    choice = 'final BFT model (no checkpoint selection on the test set)'
  test_source = sources.load_source(config.dataset, 'test')
  result = evaluate.evaluate(config, bft.model, params, bft.params_sharding, test_source, info,
                             mesh, counts)
  result.update(split='test', model_choice=choice, convention={
      'many_threshold': config.dataset.many_threshold,
      'few_threshold': config.dataset.few_threshold, 'num_bins': config.evaluate.num_bins})
  if jax.process_index() == 0:
    out_dir = os.path.join(workdir, 'report')
    md = report.write(result, counts, out_dir,
                      f'LiVT on {info.name}: ViT-{config.model.variant}, loss {config.bft.loss}')
    writer = metric_writers.create_default_writer(os.path.join(workdir, 'tensorboard', 'eval'))
    writer.write_scalars(0, {k: result[k] for k in ('top1', 'many', 'medium', 'few', 'ece', 'mce')
                             if result[k] is not None})
    writer.flush()
    print(md, flush=True)
    _say(f'report written to {out_dir} (report.md, report.json, reliability.png, '
         'per_class_accuracy.png)')
  return result
