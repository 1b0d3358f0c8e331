"""Checks a config before anything expensive runs: one clear line per mistake."""
import math

import ml_collections

from livt_jax.data import longtail
from livt_jax.data import pipeline
from livt_jax.evals import views
from livt_jax.losses import balanced
from livt_jax.losses import table7
from livt_jax.evals import metrics
from livt_jax.runtime import paths
from livt_jax.data import registry
from livt_jax.models import kernels
from livt_jax.models import vit

STAGES = ('mgp', 'bft', 'evaluate')
LOSSES = balanced.LOSSES
BIAS_FORMS = ('paper', 'official')
PRECISIONS = ('auto', 'float32', 'bfloat16', 'bf16_matmul')
POSEMBS = ('fixed', 'learned')
# PyTorch state-dict files that bft.init_from / evaluate.checkpoint also take (interop).
TORCH_SUFFIXES = ('.pth', '.pt', '.bin', '.safetensors', '.pth.tar', '.ckpt')
INIT_FROM_SCRATCH = 'scratch'  # bft.init_from value for a randomly initialised encoder (run.py)


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


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_positive(field, value, what_to_do):
  """A finite number > 0 (NaN fails every comparison, so `value <= 0` alone lets it through)."""
  if not _is_number(value) or not math.isfinite(value) or value <= 0:
    _fail(field, value, what_to_do)


def _check_schedule(config, stage):
  """Epochs, warm-up and learning rates of one stage: finite, positive, warm-up < epochs."""
  sc = config[stage]
  _check_positive(f'{stage}.epochs', sc.epochs,
                  f'use a positive number of epochs (to skip {stage}, leave it out of '
                  '--config.stages)')
  warmup = sc.warmup_epochs
  if not _is_number(warmup) or not math.isfinite(warmup) or warmup < 0:
    _fail(f'{stage}.warmup_epochs', warmup, 'use a warm-up of 0 or more epochs')
  if warmup >= sc.epochs:
    _fail(f'{stage}.warmup_epochs', warmup,
          f'the warm-up must be shorter than {stage}.epochs={sc.epochs!r} (the learning rate '
          f'would never leave it); use e.g. --config.{stage}.warmup_epochs='
          f'{_suggest_warmup(sc.epochs)}')
  _check_positive(f'{stage}.base_lr', sc.base_lr,
                  f'use a positive, finite base learning rate (it is scaled by batch / 256), '
                  f'e.g. --config.{stage}.base_lr={1.5e-4 if stage == "mgp" else 1e-3:g}')
  if not _is_number(sc.min_lr) or not math.isfinite(sc.min_lr) or sc.min_lr < 0:
    _fail(f'{stage}.min_lr', sc.min_lr, 'use a finite final learning rate >= 0, e.g. 0')
  _check_positive(f'{stage}.batch_size', sc.batch_size,
                  f'use a positive global batch size, e.g. --config.{stage}.batch_size=256')


def _suggest_warmup(epochs):
  return max(0, int(epochs) // 10) if epochs >= 1 else 0


def _check_batch(field, batch, num_devices, accum=1):
  if not _is_number(batch) or batch <= 0 or batch % (num_devices * accum):
    per = f' x {accum} accumulation steps' if accum > 1 else ''
    unit = num_devices * accum
    _fail(field, batch,
          f'the global batch must be a positive multiple of the {num_devices} devices{per}; '
          f'use e.g. --config.{field}={max(1, batch // unit) * unit}')


def validate(config: ml_collections.ConfigDict, num_devices: int, check_data: bool = True):
  """Raises ConfigError (a ValueError) for the first mistake found in `config`."""
  stages = parse_stages(config)
  info = registry.get_info(config.dataset.name)  # raises on an unknown dataset name
  if (None not in (config.dataset.num_classes, info.num_classes)
      and config.dataset.num_classes != info.num_classes):
    _fail('dataset.num_classes', config.dataset.num_classes,
          f'{info.name} has {info.num_classes} classes; drop the override or fix it')
  vit.get_variant(config.model.variant)  # raises on an unknown variant
  _check_model_size(config.model)
  if config.dataset.class_order not in ('natural', 'shuffled'):
    _fail('dataset.class_order', config.dataset.class_order, "use 'natural' or 'shuffled'")
  imbalance = config.dataset.imbalance
  if not _is_number(imbalance) or not math.isfinite(imbalance) or imbalance < 1:
    _fail('dataset.imbalance', imbalance, 'use a finite imbalance factor >= 1')
  if info.lt_n_max and min(longtail.lt_class_sizes(info.lt_n_max, info.num_classes,
                                                   imbalance)) < 1:
    # The LT rule keeps int(n_max / imbalance) images of the last class: 0 here, and the
    # balanced losses need log(pi_y) of every class.
    _fail('dataset.imbalance', imbalance,
          f'the smallest class of {info.name} would keep no training image (the largest '
          f'keeps {info.lt_n_max}); use a smaller imbalance factor, e.g. '
          f'--config.dataset.imbalance={min(100, info.lt_n_max // 2)}')
  if not 0 < config.mgp.mask_ratio < 1:
    _fail('mgp.mask_ratio', config.mgp.mask_ratio,
          'use a ratio strictly between 0 and 1, e.g. 0.75')
  tau = config.bft.tau
  if not _is_number(tau) or not math.isfinite(tau) or tau < 0:
    _fail('bft.tau', tau, 'use a finite tau >= 0 (1.0 is the paper default; 0 gives plain BCE)')
  if config.bft.loss not in LOSSES:
    _fail('bft.loss', config.bft.loss, f'use one of {", ".join(LOSSES)}')
  if config.bft.bias_form not in BIAS_FORMS:
    _fail('bft.bias_form', config.bft.bias_form, f'use one of {", ".join(BIAS_FORMS)}')
  _check_loss_options(config, info)
  head_init = config.bft.get('head_bias_init', 'zero')
  if head_init not in ('zero', 'prior'):
    _fail('bft.head_bias_init', head_init, "use 'zero' or 'prior'")
  randaug_on = config.bft.get('randaug_on', 'auto')
  if randaug_on not in pipeline.RANDAUG_ON:
    _fail('bft.randaug_on', randaug_on,
          "use 'host', 'device' or 'auto' (the device on GPU/TPU, the host on CPU)")
  if not 0 < config.bft.layer_decay <= 1:
    _fail('bft.layer_decay', config.bft.layer_decay, 'use a value in (0, 1]; 1 disables it')
  ema = config.bft.get('ema_decay', 0.0)
  if not (_is_number(ema) and 0 <= ema < 1):
    _fail('bft.ema_decay', ema, 'use a value in [0, 1), e.g. 0.999; 0 keeps no weight average')
  if config.model.get('posemb', 'fixed') not in POSEMBS:
    _fail('model.posemb', config.model.posemb, f'use one of {", ".join(POSEMBS)}')
  if config.model.get('attention', 'ours') not in kernels.ATTENTION:
    _fail('model.attention', config.model.attention,
          f'use one of {", ".join(kernels.ATTENTION)} (cudnn: NVIDIA GPUs only)')
  if config.precision not in PRECISIONS:
    _fail('precision', config.precision, f'use one of {", ".join(PRECISIONS)}')
  if config.grad_accum_steps < 1:
    _fail('grad_accum_steps', config.grad_accum_steps, 'use an integer >= 1')
  for stage in ('mgp', 'bft'):
    size, patch = config[stage].image_size, config.model.patch_size
    if size % patch:
      _fail(f'{stage}.image_size', size, f'must be divisible by model.patch_size={patch}')
  # The schedules of every stage whose model is built: mgp also for bft.init_from, bft also
  # for evaluating alone (its batch size plans the model; epochs and rates are then unused
  # but must still be sane numbers).
  for stage in ('mgp', 'bft'):
    _check_schedule(config, stage)
  _check_positive('evaluate.batch_size', config.evaluate.batch_size,
                  'use a positive batch size, e.g. --config.evaluate.batch_size=1024')
  if config.evaluate.get('views', 'one') not in views.VIEWS:
    _fail('evaluate.views', config.evaluate.views, f'use one of {", ".join(views.VIEWS)}')
  _check_evals(config)
  mesh_shape(config, num_devices)
  if 'mgp' in stages:
    _check_batch('mgp.batch_size', config.mgp.batch_size, num_devices, config.grad_accum_steps)
  if 'bft' in stages:
    _check_batch('bft.batch_size', config.bft.batch_size, num_devices, config.grad_accum_steps)
  if 'evaluate' in stages:
    _check_batch('evaluate.batch_size', config.evaluate.batch_size, num_devices)
    if 'bft' not in stages:
      # Only a BFT classifier can be evaluated: trained in this run, or read from a checkpoint.
      if not config.evaluate.checkpoint:
        _fail('stages', config.stages,
              'evaluate needs a classifier: add bft (e.g. --config.stages=mgp,bft,evaluate) '
              'or set --config.evaluate.checkpoint=WORKDIR/bft/checkpoints of a finished run')
      _check_checkpoint_dir('evaluate.checkpoint', config.evaluate.checkpoint,
                            'point it at a finished BFT run (WORKDIR/bft/checkpoints)')
  needed = config.bft.get('init_from_needed')
  if needed and 'bft' in stages and 'mgp' not in stages and not config.bft.init_from:
    _fail('bft.init_from', config.bft.init_from,
          f'this recipe fine-tunes {needed}: set --config.bft.init_from to it (an MGP run\'s '
          'WORKDIR/mgp/checkpoints or a PyTorch .pth/.safetensors)')
  if ('bft' in stages and 'mgp' not in stages and config.bft.init_from
      and config.bft.init_from != INIT_FROM_SCRATCH):
    _check_checkpoint_dir('bft.init_from', config.bft.init_from,
                          'point it at a finished MGP run (WORKDIR/mgp/checkpoints), or '
                          f'fine-tune from random weights with '
                          f'--config.bft.init_from={INIT_FROM_SCRATCH}')
  if check_data and config.dataset.data_dir and not _is_dir('dataset.data_dir',
                                                            config.dataset.data_dir):
    _fail('dataset.data_dir', config.dataset.data_dir,
          'no such directory; point it at the TFDS data dir (or image folder) of '
          f'{info.name}, or leave it unset for the default location')
  if check_data and info.name == 'image_folder':  # the dry run: plan.describe calls it
    check_image_folder(config)
  return stages


def check_image_folder(config):
  """The splits of an image folder that the run reads after training has begun: test/ (MGP's
  reconstructions figure, evaluate) and the val/ folder (BFT's val evaluator). The train
  split, and images held out of it for val, are read before MGP trains."""
  from livt_jax.data import image_folder  # pylint: disable=g-import-not-at-top
  from livt_jax.data import sources  # pylint: disable=g-import-not-at-top
  stages = parse_stages(config)
  dataset = config.dataset
  if dataset.get('val_max_per_class'):
    _fail('dataset.val_max_per_class', dataset.val_max_per_class,
          'an image folder holds out exactly dataset.val_per_class images per class; set it to 0')
  later = []
  if 'mgp' in stages or 'evaluate' in stages:
    later.append('test')
  evals = config.get('evals', {}).values()
  if 'bft' in stages and 'test' not in later and any(ev.get('split') == 'test' for ev in evals):
    later.append('test')
  if ('bft' in stages and any(ev.get('split') == 'val' for ev in evals)
      and image_folder.has_val_folder(dataset.data_dir)):
    later.append('val')
  for split in later:  # lists the files; raises the loader's one-line error
    sources.load_source(dataset, split)


def _is_dir(field, path) -> bool:
  try:
    return paths.is_dir(path)
  except FileNotFoundError as e:  # e.g. no permission on a bucket
    _fail(field, path, str(e))


def _check_checkpoint_dir(field, path, what_to_do):
  if str(path).lower().endswith(TORCH_SUFFIXES):  # a PyTorch file (livt_jax/interop)
    if not paths.is_file(path):
      _fail(field, path, 'no such PyTorch checkpoint file')
    return
  if not _is_dir(field, path):
    _fail(field, path, f'no such checkpoint directory; {what_to_do}')


EVAL_TYPES = ('classification',)
EVAL_SELECTABLE = tuple(metrics.SELECTABLE)


def _check_evals(config):
  """config.evals (livt_jax/evals/evaluators.py) and dataset.val_per_class."""
  vpc = config.dataset.get('val_per_class', 0)
  if not isinstance(vpc, int) or isinstance(vpc, bool) or vpc < 0:
    _fail('dataset.val_per_class', vpc, 'use a whole number of images per class >= 0, e.g. 20')
  vmax = config.dataset.get('val_max_per_class', 0) or 0
  if not isinstance(vmax, int) or isinstance(vmax, bool) or vmax < 0:
    _fail('dataset.val_max_per_class', vmax, 'use a whole number of images per class >= 0 '
          '(0: dataset.val_per_class each)')
  if vmax and not vpc:
    _fail('dataset.val_max_per_class', vmax, 'it enlarges the val split that '
          'dataset.val_per_class holds out: set that too, e.g. --config.dataset.val_per_class=20')
  selecting = []
  for name, ev in sorted(config.get('evals', {}).items()):
    if ev.get('type') not in EVAL_TYPES:
      _fail(f'evals.{name}.type', ev.get('type'), f'use one of {", ".join(EVAL_TYPES)}')
    if ev.get('split') not in ('train', 'val', 'test'):
      _fail(f'evals.{name}.split', ev.get('split'), "use 'val' (or 'test' / 'train' for curves)")
    _check_positive(f'evals.{name}.every_epochs', ev.get('every_epochs'),
                    'use a positive number of epochs between evaluations, e.g. 1')
    metric = ev.get('select_best')
    if metric:
      if metric not in EVAL_SELECTABLE:
        _fail(f'evals.{name}.select_best', metric, f'use one of {", ".join(EVAL_SELECTABLE)}'
              ' or leave it unset')
      if ev.split != 'val':
        _fail(f'evals.{name}.select_best', metric,
              f'models are chosen on the validation split only, not on {ev.split!r}: unset it '
              f'(--config.evals.{name}.select_best=) or use split val')
      selecting.append(name)
  if len(selecting) > 1:
    _fail('evals', ','.join(selecting), 'at most one evaluator may set select_best')


# bft.<field>: (lowest, highest, lowest allowed, highest allowed, what to use).
_LOSS_RANGES = {
    'cb_beta': (0.0, 1.0, True, False, 'a beta in [0, 1), e.g. 0.9999'),
    'drw_beta': (0.0, 1.0, True, False, 'a beta in [0, 1), e.g. 0.9999'),
    'focal_gamma': (0.0, math.inf, True, False, 'a gamma >= 0, e.g. 2 (0 is CE)'),
    'ldam_max_margin': (0.0, math.inf, False, False, 'a margin > 0, e.g. 0.5'),
    'ldam_scale': (0.0, math.inf, False, False, 'a scale > 0, e.g. 30'),
    'lade_alpha': (0.0, math.inf, True, False, 'an alpha >= 0, e.g. 0.1'),
    'lade_remine_lambda': (0.0, math.inf, True, False, 'a lambda >= 0, e.g. 0.1'),
    'ib_alpha': (0.0, math.inf, False, False, 'an alpha > 0, e.g. 1000'),
    'nt_lambda': (0.0, math.inf, False, False, 'a lambda > 0, e.g. 2 (1 is BCE)'),
    'drw_epoch': (0.0, math.inf, True, False, 'an epoch >= 0, or leave it unset (0.8 * epochs)'),
    'ib_epoch': (0.0, math.inf, True, False, 'an epoch >= 0, or leave it unset (0.5 * epochs)'),
}


def _check_loss_options(config, info):
  """The Table 7 hyper-parameters, bft.test_prior and dataset.test_imbalance."""
  bft = config.bft
  for field, (lo, hi, lo_ok, hi_ok, what) in _LOSS_RANGES.items():
    value = bft.get(field)
    if value is None and field.endswith('_epoch'):
      continue
    if (not _is_number(value) or math.isnan(value) or value < lo or (value == lo and not lo_ok)
        or value > hi or (value == hi and not hi_ok)):
      _fail(f'bft.{field}', value, f'use {what}')
  for field, choices in table7.FORMS.items():
    if bft.get(field, choices[0]) not in choices:
      _fail(f'bft.{field}', bft.get(field), f'use one of {", ".join(choices)}')
  head = bft.get('ldam_head', 'linear')
  if head not in vit.HEADS:
    _fail('bft.ldam_head', head, f'use one of {", ".join(vit.HEADS)}')
  if head != 'linear' and bft.loss != 'ldam_drw':
    _fail('bft.ldam_head', head, f"the cosine head is LDAM's (bft.loss=ldam_drw), not "
          f"bft.loss={bft.loss}'s: use --config.bft.ldam_head=linear")
  prior = bft.get('test_prior', 'uniform')
  if not (isinstance(prior, str) and prior.strip().lower() == 'uniform'):
    if bft.loss not in balanced.USES_TEST_PRIOR:
      _fail('bft.test_prior', prior,
            f'bft.loss={bft.loss} does not use a test prior; use one of '
            f'{", ".join(balanced.USES_TEST_PRIOR)} or --config.bft.test_prior=uniform')
    if bft.bias_form == 'official' and bft.loss in ('bal_bce', 'bal_nt_bce'):
      _fail('bft.test_prior', prior, "the 'official' bias has no test prior (Thm. 3 needs "
            "--config.bft.bias_form=paper), or use --config.bft.test_prior=uniform")
    if not (isinstance(prior, str) and prior.strip().lower() == 'train'):
      try:
        balanced.test_prior_from_config(prior, [1] * (info.num_classes or _count(prior)))
      except ValueError as e:
        _fail('bft.test_prior', prior, str(e).split(': ', 1)[-1])
  gamma = config.dataset.get('test_imbalance')
  if gamma is not None:
    if not info.lt_n_max:
      _fail('dataset.test_imbalance', gamma,
            f'{info.name} has a fixed test set; a long-tailed test split exists for the '
            'datasets we subsample ourselves (CIFAR-LT, Fashion-MNIST-LT): leave it unset')
    if not _is_number(gamma) or not math.isfinite(gamma) or gamma < 1:
      _fail('dataset.test_imbalance', gamma, 'use a finite imbalance factor >= 1, or leave it '
            'unset for the balanced test set')


def _count(prior) -> int:
  return len(prior.split(',')) if isinstance(prior, str) else len(prior)


def _check_model_size(model):
  """model.width / depth / heads / mlp_ratio: unset, or sizes a ViT can have."""
  for field in ('width', 'depth', 'heads'):
    value = model.get(field)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
      _fail(f'model.{field}', value, f'use a positive whole number, or leave it unset for '
            f'ViT-{model.variant}\'s')
  ratio = model.get('mlp_ratio')
  if ratio is not None:
    _check_positive('model.mlp_ratio', ratio, f'use a positive MLP width / width ratio, e.g. 4, '
                    f'or leave it unset for ViT-{model.variant}\'s')
  size = vit.config_size(model)
  if size['width'] % size['heads']:
    _fail('model.width', size['width'], f'must be divisible by the {size["heads"]} heads; set '
          f'--config.model.heads to a divisor (ViTs use width / 64)')
  if size['width'] % 4:  # the 2-D sin-cos table: sin and cos of two coordinates
    _fail('model.width', size['width'], 'must be divisible by 4 (the sin-cos position table)')
