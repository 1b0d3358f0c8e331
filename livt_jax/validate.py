"""Checks a config before anything expensive runs: one clear line per mistake."""
import os

import ml_collections

from livt_jax.data import registry
from livt_jax.models import vit

STAGES = ('mgp', 'bft', 'evaluate')
LOSSES = ('ce', 'bal_ce', 'bce', 'bal_bce')
BIAS_FORMS = ('paper', 'official')
PRECISIONS = ('auto', 'float32', 'bfloat16')


class ConfigError(ValueError):
  """A config value that cannot work; the message names the field and what to do."""


def _fail(field, value, what_to_do):
  raise ConfigError(f'config.{field}={value!r}: {what_to_do}')


def parse_stages(config) -> tuple[str, ...]:
  stages = tuple(s.strip() for s in str(config.stages).split(',') if s.strip())
  bad = [s for s in stages if s not in STAGES]
  if not stages or bad:
    _fail('stages', config.stages,
          f'use a comma-separated subset of {",".join(STAGES)}, e.g. --config.stages=bft,evaluate')
  return stages


def mesh_shape(config, num_devices: int) -> tuple[int, int]:
  """Returns (data, fsdp) sizes; -1 in one axis takes the remaining devices."""
  data, fsdp = int(config.mesh.data), int(config.mesh.fsdp)
  if fsdp == -1 and data == -1:
    _fail('mesh', (data, fsdp), 'at most one of mesh.data and mesh.fsdp may be -1')
  if fsdp == -1:
    fsdp = num_devices // max(data, 1)
  if data == -1:
    data = num_devices // max(fsdp, 1)
  if data < 1 or fsdp < 1 or data * fsdp != num_devices:
    _fail('mesh', f'data={config.mesh.data},fsdp={config.mesh.fsdp}',
          f'data x fsdp must equal the {num_devices} devices; set --config.mesh.data=-1 '
          'to use all devices for data parallelism')
  return data, fsdp


def _check_batch(field, batch, num_devices, accum=1):
  if batch <= 0 or batch % (num_devices * accum):
    per = f' x {accum} accumulation steps' if accum > 1 else ''
    _fail(field, batch,
          f'the global batch must be a positive multiple of the {num_devices} devices{per}; '
          f'use e.g. --config.{field}={max(1, batch // (num_devices * accum)) * num_devices * accum}')


def validate(config: ml_collections.ConfigDict, num_devices: int, check_data: bool = True):
  """Raises ConfigError (a ValueError) for the first mistake found in `config`."""
  stages = parse_stages(config)
  info = registry.get_info(config.dataset.name)  # raises on an unknown dataset name
  if (None not in (config.dataset.num_classes, info.num_classes)
      and config.dataset.num_classes != info.num_classes):
    _fail('dataset.num_classes', config.dataset.num_classes,
          f'{info.name} has {info.num_classes} classes; drop the override or fix it')
  vit.get_variant(config.model.variant)  # raises on an unknown variant
  if config.dataset.class_order not in ('natural', 'shuffled'):
    _fail('dataset.class_order', config.dataset.class_order, "use 'natural' or 'shuffled'")
  if config.dataset.imbalance < 1:
    _fail('dataset.imbalance', config.dataset.imbalance, 'use an imbalance factor >= 1')
  if not 0 < config.mgp.mask_ratio < 1:
    _fail('mgp.mask_ratio', config.mgp.mask_ratio, 'use a ratio strictly between 0 and 1, e.g. 0.75')
  if config.bft.tau < 0:
    _fail('bft.tau', config.bft.tau, 'use tau >= 0 (1.0 is the paper default; 0 gives plain BCE)')
  if config.bft.loss not in LOSSES:
    _fail('bft.loss', config.bft.loss, f'use one of {", ".join(LOSSES)}')
  if config.bft.bias_form not in BIAS_FORMS:
    _fail('bft.bias_form', config.bft.bias_form, f'use one of {", ".join(BIAS_FORMS)}')
  if not 0 < config.bft.layer_decay <= 1:
    _fail('bft.layer_decay', config.bft.layer_decay, 'use a value in (0, 1]; 1 disables it')
  if config.precision not in PRECISIONS:
    _fail('precision', config.precision, f'use one of {", ".join(PRECISIONS)}')
  if config.grad_accum_steps < 1:
    _fail('grad_accum_steps', config.grad_accum_steps, 'use an integer >= 1')
  for stage in ('mgp', 'bft'):
    size, patch = config[stage].image_size, config.model.patch_size
    if size % patch:
      _fail(f'{stage}.image_size', size, f'must be divisible by model.patch_size={patch}')
  mesh_shape(config, num_devices)
  if 'mgp' in stages:
    _check_batch('mgp.batch_size', config.mgp.batch_size, num_devices, config.grad_accum_steps)
  if 'bft' in stages:
    _check_batch('bft.batch_size', config.bft.batch_size, num_devices, config.grad_accum_steps)
  if 'evaluate' in stages:
    _check_batch('evaluate.batch_size', config.evaluate.batch_size, num_devices)
    if stages == ('evaluate',) and not config.evaluate.checkpoint:
      _fail('evaluate.checkpoint', None,
            'evaluating alone needs a model: set --config.evaluate.checkpoint=WORKDIR/bft/checkpoints')
  if 'bft' in stages and 'mgp' not in stages and config.bft.init_from:
    if not os.path.exists(config.bft.init_from):
      _fail('bft.init_from', config.bft.init_from,
            'no such checkpoint directory; point it at a finished MGP run (WORKDIR/mgp/checkpoints)')
  if check_data and config.dataset.data_dir and not os.path.isdir(config.dataset.data_dir):
    _fail('dataset.data_dir', config.dataset.data_dir,
          'no such directory; point it at the TFDS data dir (or image folder) of '
          f'{info.name}, or leave it unset for the default location')
  return stages
