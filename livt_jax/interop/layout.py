"""The one table of names between PyTorch ViT/MAE state dicts and our Flax parameter trees.

Import and export both walk `pairs()`, so the two directions cannot drift apart. Key names are
those of timm's `VisionTransformer` and facebookresearch/mae's `MaskedAutoencoderViT` (whose
encoder is timm's `Block`s), which LiVT's released checkpoints share.

How a tensor changes on the way (torch -> flax; export applies the inverse):
  'linear': nn.Linear weight [out, in] -> Dense kernel [in, out] (transpose);
  'conv':   patch conv weight [D, C, p, p] -> our patch kernel [p, p, C, D] (it multiplies
            `patchify` rows, which are (row, col, channel));
  None:     the same array (biases, LayerNorm weight -> scale, tokens).
The position tables (`pos_embed`, `decoder_pos_embed`) are not in the table: they need the
class-token row and grid logic of torch_import / torch_export.
"""
import numpy as np


def _linear(torch_name: str, path: tuple) -> list:
  return [(f'{torch_name}.weight', path + ('kernel',), 'linear'),
          (f'{torch_name}.bias', path + ('bias',), None)]


def _norm(torch_name: str, path: tuple) -> list:
  return [(f'{torch_name}.weight', path + ('scale',), None),
          (f'{torch_name}.bias', path + ('bias',), None)]


def _block(torch_name: str, path: tuple) -> list:
  return (_norm(f'{torch_name}.norm1', path + ('norm1',))
          + _linear(f'{torch_name}.attn.qkv', path + ('attn', 'qkv'))
          + _linear(f'{torch_name}.attn.proj', path + ('attn', 'proj'))
          + _norm(f'{torch_name}.norm2', path + ('norm2',))
          + _linear(f'{torch_name}.mlp.fc1', path + ('mlp', 'fc1'))
          + _linear(f'{torch_name}.mlp.fc2', path + ('mlp', 'fc2')))


def encoder_pairs(depth: int, with_norm: bool) -> list:
  """(torch key, flax path, transform) of the encoder, position table excluded."""
  enc = ('encoder',)
  out = [('patch_embed.proj.weight', enc + ('patch_embed', 'kernel'), 'conv'),
         ('patch_embed.proj.bias', enc + ('patch_embed', 'bias'), None),
         ('cls_token', enc + ('cls_token',), None)]
  for i in range(depth):
    out += _block(f'blocks.{i}', enc + (f'block_{i}',))
  if with_norm:
    out += _norm('norm', enc + ('encoder_norm',))
  return out


def classifier_pairs(depth: int, pool: str) -> list:
  """A ViT classifier: timm keeps `norm` for 'token' pooling and `fc_norm` for 'avg'."""
  out = encoder_pairs(depth, with_norm=pool == 'cls')
  if pool == 'gap':
    out += _norm('fc_norm', ('fc_norm',))
  return out + _linear('head', ('head',))


def mae_pairs(depth: int, decoder_depth: int) -> list:
  out = encoder_pairs(depth, with_norm=True)
  out += _linear('decoder_embed', ('decoder_embed',))
  out.append(('mask_token', ('mask_token',), None))
  for i in range(decoder_depth):
    out += _block(f'decoder_blocks.{i}', (f'decoder_block_{i}',))
  return out + _norm('decoder_norm', ('decoder_norm',)) + _linear('decoder_pred',
                                                                  ('decoder_pred',))


def to_flax(array: np.ndarray, transform) -> np.ndarray:
  if transform == 'linear':
    return array.T
  if transform == 'conv':
    return array.transpose(2, 3, 1, 0)
  return array


def to_torch(array: np.ndarray, transform) -> np.ndarray:
  if transform == 'linear':
    return array.T
  if transform == 'conv':
    return array.transpose(3, 2, 0, 1)
  return array


def get(tree: dict, path: tuple):
  for key in path:
    tree = tree[key]
  return tree


def put(tree: dict, path: tuple, value) -> None:
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value
