"""Resolves a config into concrete numbers: steps, learning rates, batch per device.

Used by the dry run (printed before a pod is spent) and by the training engine, so the two can
never disagree.
"""
import dataclasses

from livt_jax.data import fashion_mnist
from livt_jax.runtime import paths
from livt_jax.data import registry
from livt_jax.models import factory
from livt_jax.models import vit
from livt_jax import validate


@dataclasses.dataclass(frozen=True)
class StagePlan:
  stage: str
  image_size: int
  global_batch: int
  batch_per_device: int
  steps_per_epoch: int
  total_steps: int   # the schedule's length (epochs x steps per epoch)
  run_steps: int     # where this run stops: total_steps, or config.max_steps if smaller
  warmup_steps: int
  peak_lr: float
  min_lr: float


def stage_plan(config, stage: str, num_train: int, num_devices: int) -> StagePlan:
  sc = config[stage]
  batch = sc.batch_size
  if num_train < batch:
    raise validate.ConfigError(
        f'config.{stage}.batch_size={batch}: larger than the {num_train} training images; '
        'use a smaller batch')
  steps_per_epoch = num_train // batch  # the remainder batch is dropped
  total = max(1, round(sc.epochs * steps_per_epoch))
  run = min(total, config.max_steps) if config.max_steps else total
  warmup = min(round(sc.warmup_epochs * steps_per_epoch), total)
  return StagePlan(
      stage=stage, image_size=sc.image_size, global_batch=batch,
      batch_per_device=batch // num_devices, steps_per_epoch=steps_per_epoch,
      total_steps=total, run_steps=run, warmup_steps=warmup, peak_lr=sc.base_lr * batch / 256,
      min_lr=sc.min_lr)


def data_location_note(config) -> str:
  """Says whether the training data is present, without reading it."""
  info = registry.get_info(config.dataset.name)
  try:
    if info.name == 'fashion_mnist_lt':
      present = fashion_mnist.find_idx_dir(config.dataset.data_dir) is not None
    else:
      present = bool(config.dataset.data_dir) and paths.is_dir(config.dataset.data_dir)
  except FileNotFoundError as e:  # e.g. a bucket this machine may not read
    return f'not readable from here ({e})'
  if present:
    return 'present'
  return ('not there yet (the dry run uses the known size and class count; set '
          '--config.dataset.data_dir before training)')


def describe(config, num_devices: int) -> str:
  """The dry-run report: everything that can be known without training."""
  stages = validate.parse_stages(config)
  info = registry.get_info(config.dataset.name)
  num_train = registry.lt_train_size(info, config.dataset.imbalance,
                                     config.dataset.get('val_per_class', 0))
  num_classes = info.num_classes
  val_note = ''
  if num_train is None:  # a user's image folder: its size is known only by reading it
    from livt_jax.data import sources  # pylint: disable=g-import-not-at-top
    from livt_jax.data import image_folder  # pylint: disable=g-import-not-at-top
    source = sources.load_source(config.dataset, 'train')
    num_train, num_classes = len(source), source.num_classes
    validate.check_image_folder(config)  # the splits read later, as a real run checks them
    val_note = '; ' + image_folder.val_note(config.dataset.data_dir,
                                            int(config.dataset.get('val_per_class', 0) or 0))
  variant = vit.config_size(config.model)
  overrides = ''.join(f', model.{k}={v}' for k, v in vit.size_overrides(config.model).items())
  data_axis, fsdp_axis = validate.mesh_shape(config, num_devices)
  channels = info.num_channels
  lines = [
      f'stages: {", ".join(stages)}',
      f'devices: {num_devices} (mesh data={data_axis} x fsdp={fsdp_axis}), precision '
      f'{factory.resolved_precision(config)} ({config.precision})',
      f'dataset: {info.name}, {num_classes} classes, {num_train} training images'
      + (f' (imbalance {config.dataset.imbalance:g})' if info.lt_n_max else '')
      + f', {info.test_size} test images; data '
      f'{data_location_note(config)}{val_note}',
      f'shot groups: many > {config.dataset.many_threshold}, medium '
      f'{config.dataset.few_threshold}..{config.dataset.many_threshold}, few < '
      f'{config.dataset.few_threshold} training images',
      f'model: ViT-{config.model.variant} (width {variant["width"]}, depth {variant["depth"]}, '
      f'heads {variant["heads"]}{overrides}), patch {config.model.patch_size}, pool '
      f'{config.model.pool}',
  ]
  for stage in ('mgp', 'bft'):
    if stage not in stages:
      continue
    p = stage_plan(config, stage, num_train, num_devices)
    shape = (p.image_size, p.image_size, channels)
    if stage == 'mgp':
      n = factory.count_params(factory.build_mae(config), shape)
      extra = (f'mask ratio {config.mgp.mask_ratio}, decoder depth {config.model.decoder_depth} '
               f'width {config.model.decoder_width}; MAE parameters {n:,}')
    else:
      n = factory.count_params(factory.build_vit(config, num_classes), shape)
      extra = (f'loss {config.bft.loss} (tau {config.bft.tau}, bias {config.bft.bias_form}), '
               f'layer decay {config.bft.layer_decay}, drop path {config.bft.drop_path}; '
               f'ViT parameters {n:,}')
    sc = config[stage]
    lines.append(
        f'{stage}: {p.image_size}px, {sc.epochs} epochs = {p.total_steps} steps '
        + (f'(stopping at {p.run_steps}) ' if p.run_steps < p.total_steps else '') +
        f'({p.steps_per_epoch}/epoch, warmup {p.warmup_steps}), global batch {p.global_batch} '
        f'({p.batch_per_device}/device), lr {sc.base_lr:g} x {p.global_batch}/256 = '
        f'{p.peak_lr:.4g} -> {p.min_lr:g}, AdamW({sc.b1}, {sc.b2}) wd {sc.weight_decay}; {extra}')
  pretrain = config.mgp.image_size // config.model.patch_size
  grid = config.bft.image_size // config.model.patch_size
  if 'bft' in stages and pretrain != grid:  # posemb.resize_bicubic, as MAE's interpolate_pos_embed
    lines.append(f"position table: MGP's {pretrain}x{pretrain} grid ({config.mgp.image_size}px) "
                 f'resized to {grid}x{grid} for BFT (torch bicubic, as MAE)')
  if 'evaluate' in stages:
    lines.append(f'evaluate: batch {config.evaluate.batch_size}, ECE/MCE with '
                 f'{config.evaluate.num_bins} bins')
  return '\n'.join(lines)
