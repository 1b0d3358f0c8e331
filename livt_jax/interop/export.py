"""Exports a livt_jax run's checkpoint as a PyTorch state dict (timm / MAE load it strictly).

    python -m livt_jax.interop.export --workdir runs/x --out vit.safetensors          # BFT
    python -m livt_jax.interop.export --workdir runs/x --stage mgp --out mae.pth       # MGP

The model comes from WORKDIR/config.json (the run's resolved config), the parameters from the
stage's latest checkpoint (or --step). BFT gives a timm VisionTransformer state dict; the
arguments to build it are printed (and stored in a .safetensors file's metadata):

    model = timm.models.vision_transformer.VisionTransformer(**kwargs)
    timm.models.load_checkpoint(model, 'vit.safetensors', strict=True)

MGP gives a facebookresearch/mae MaskedAutoencoderViT state dict. torch is not needed.
The console shows our lines only (library logs: --verbose); a bad workdir, step or file name is
one `livt_jax: error:` line and exit code 2.
"""
import json
import logging as std_logging
import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from livt_jax.engine import optim
from livt_jax.runtime import paths
from livt_jax.data import registry
from livt_jax.interop import torch_export
from livt_jax.interop import torch_save
from livt_jax.models import factory

_WORKDIR = flags.DEFINE_string('workdir', None, 'the run directory (holds config.json)')
_STAGE = flags.DEFINE_enum('stage', 'bft', ['bft', 'mgp'], 'which stage to export')
_STEP = flags.DEFINE_integer('step', None, 'checkpoint step (default: the latest)')
_OUT = flags.DEFINE_string('out', None, 'output file: .pth (torch.save) or .safetensors')
_VERBOSE = flags.DEFINE_bool('verbose', False, 'show library logs (orbax, absl) on the console')


def read_params(checkpoint_dir, step=None) -> dict:
  """The parameters of a stage checkpoint as host NumPy arrays (no model or mesh needed): their
  average when the run kept one (bft.ema_decay > 0), the model it evaluated."""
  mngr = ocp.CheckpointManager(paths.native(paths.resolve(checkpoint_dir)),
                               item_names=('state', 'data'))
  step = mngr.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f'no checkpoint in {checkpoint_dir}')
  if step not in mngr.all_steps():
    raise FileNotFoundError(f'no step {step} in {checkpoint_dir}; it holds steps '
                            f'{", ".join(map(str, mngr.all_steps()))}')
  # Restored as host NumPy arrays, so the run's device layout (a sharding file that may name
  # devices this host lacks) is not used.
  tree = ocp.PyTreeCheckpointer().metadata(os.path.join(str(mngr.directory), str(step), 'state'))
  tree = getattr(tree, 'item_metadata', tree)
  tree = getattr(tree, 'tree', tree)
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  state = mngr.restore(step, args=ocp.args.Composite(
      state=ocp.args.PyTreeRestore(restore_args=restore_args)))['state']
  mngr.close()
  ema = optim.ema_params(state['opt_state'])
  return {'step': step, 'params': _to_numpy(state['params'] if ema is None else ema)}


def _to_numpy(tree):
  if isinstance(tree, dict):
    return {k: _to_numpy(v) for k, v in tree.items()}
  return np.asarray(tree)


def export(workdir, stage: str, out: str, step=None) -> dict:
  """Writes `out`; returns {'step', 'keys', 'timm_kwargs' (BFT only)}."""
  config_file = paths.resolve(workdir) / 'config.json'
  if not config_file.exists():
    raise FileNotFoundError(f'{config_file} does not exist; --workdir takes the directory of a '
                            'livt_jax run (it holds config.json)')
  config = ml_collections.ConfigDict(json.loads(config_file.read_text()))
  loaded = read_params(paths.resolve(workdir) / stage / 'checkpoints', step)
  params = loaded['params']
  info = registry.get_info(config.dataset.name)
  size = config[stage].image_size
  image_shape = (size, size, info.num_channels)
  kwargs = None
  if stage == 'bft':
    model = factory.build_vit(config, num_classes=int(params['head']['kernel'].shape[-1]))
    sd = torch_export.classifier_state_dict(params, model, image_shape)
    kwargs = torch_export.timm_kwargs(model, image_shape)
  else:
    model = factory.build_mae(config)
    sd = torch_export.mae_state_dict(params, model, image_shape)
  if out.lower().endswith('.safetensors'):
    meta = {'format': 'pt', 'livt_stage': stage, 'livt_step': str(loaded['step'])}
    if kwargs:
      meta['timm_kwargs'] = json.dumps(kwargs)
    torch_save.save_safetensors(out, sd, meta)
  else:
    torch_save.save_pth(out, sd)
  return {'step': loaded['step'], 'keys': len(sd), 'timm_kwargs': kwargs}


def main(argv):
  del argv
  if not _WORKDIR.value or not _OUT.value:
    print('usage: python -m livt_jax.interop.export --workdir=RUN --out=FILE.safetensors|.pth '
          '[--stage=bft|mgp] [--step=N]', file=sys.stderr)
    return 2
  if not _VERBOSE.value:  # as livt_jax.main: library INFO / WARNING lines stay off the console
    logging.get_absl_handler().setLevel(std_logging.ERROR)
  try:
    result = export(_WORKDIR.value, _STAGE.value, _OUT.value, _STEP.value)
  except (ValueError, FileNotFoundError) as e:
    print(f'livt_jax: error: {e}', file=sys.stderr)
    return 2
  print(f'livt_jax: wrote {_OUT.value}: {result["keys"]} tensors of the {_STAGE.value} '
        f'checkpoint at step {result["step"]}')
  if result['timm_kwargs']:
    print('timm: model = timm.models.vision_transformer.VisionTransformer('
          + ', '.join(f'{k}={v!r}' for k, v in result['timm_kwargs'].items()) + ')')
  return 0


if __name__ == '__main__':
  app.run(lambda argv: sys.exit(main(argv)))
