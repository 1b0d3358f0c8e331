"""PyTorch checkpoints where the run takes orbax ones: bft.init_from and evaluate.checkpoint.

    --config.bft.init_from=mae_pretrain_vit_base.pth        (an MAE / LiVT MGP encoder)
    --config.stages=evaluate --config.evaluate.checkpoint=livt.pth   (a fine-tuned ViT)
"""
import jax

from livt_jax.interop import torch_files
from livt_jax.interop import torch_import

is_torch_file = torch_files.is_torch_file


def encoder_loader(stage, path):
  """A function -> BFT's encoder parameters read from the PyTorch file `path` (host arrays;
  the stage's init places them with its shardings)."""
  return lambda: torch_import.load(path, stage.model, stage.image_shape, 'encoder')


def classifier_params(stage, path):
  """The fine-tuned classifier of a PyTorch file, sharded as the BFT stage's parameters."""
  params = torch_import.load(path, stage.model, stage.image_shape, 'classifier')
  return jax.device_put(params, stage.params_sharding)


def adapt_config(config, stages, say) -> None:
  """A checkpoint whose position table was trained needs model.posemb='learned': set it for
  evaluate (a fine-tuned timm/LiVT ViT always has one) or BFT from such an encoder, and say so,
  rather than stopping on a setting the user cannot know."""
  for field, wanted in (('evaluate.checkpoint', 'evaluate' in stages and 'bft' not in stages),
                        ('bft.init_from', 'bft' in stages and 'mgp' not in stages)):
    section, name = field.split('.')
    path = config[section][name]
    if not (wanted and path and is_torch_file(path)):
      continue
    if config.model.posemb != 'learned' and torch_import.needs_learned_posemb(path):
      with config.unlocked():
        config.model.posemb = 'learned'
      say(f'{field}: {path} has a trained position table; using model.posemb=learned')
