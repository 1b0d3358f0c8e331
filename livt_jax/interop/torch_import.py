"""PyTorch ViT / MAE state dicts -> our Flax parameter trees, checked against the model built.

Sources: timm `VisionTransformer` ('avg' pool -> our 'gap' with `fc_norm`, 'token' -> 'cls'
with `norm`), facebookresearch/mae `MaskedAutoencoderViT` (encoder + decoder) and its
fine-tuning `VisionTransformer`, and LiVT's released checkpoints (their 'model' entry).

The position table. Theirs is `pos_embed` [1, 1 + N, D] (the class token's row first) and is
added to the class token too; ours has no class row, so that row is folded into `cls_token`
(exact: it is the same addition). MAE pre-training keeps the fixed sin-cos table, which our
encoder rebuilds itself: such a table is only checked. A trained (learned) table becomes our
`pos_embedding` parameter (model.posemb='learned'), bicubically resized (posemb.resize_bicubic)
when the grids differ.

Every mismatch is one line naming the checkpoint's model and the config's, and the setting.
"""
import flax.linen as nn
import jax
import numpy as np

from livt_jax.engine.checkpointing import CheckpointMismatchError
from livt_jax.interop import layout
from livt_jax.interop import torch_files
from livt_jax.models import factory
from livt_jax.models import posemb
from livt_jax.models import vit

SINCOS_ATOL = 1e-5  # MAE's table is float32 of the same float64 formula: equal to ~1e-7


def describe(sd: dict) -> dict:
  """What a state dict holds: kind, width, depth, patch, channels, pool, classes, grid."""
  if 'patch_embed.proj.weight' not in sd:
    raise torch_files.TorchFileError(
        'no patch_embed.proj.weight: not the state dict of a ViT (timm VisionTransformer, MAE '
        'or LiVT)')
  w = sd['patch_embed.proj.weight']
  blocks = {int(k.split('.')[1]) for k in sd if k.startswith('blocks.')}
  decoder = {int(k.split('.')[1]) for k in sd if k.startswith('decoder_blocks.')}
  pos = sd.get('pos_embed')
  rows = pos.shape[-2] if pos is not None else None
  return dict(
      kind='MAE' if 'decoder_embed.weight' in sd else 'ViT',
      width=w.shape[0], depth=len(blocks), patch=w.shape[2], channels=w.shape[1],
      mlp=sd['blocks.0.mlp.fc1.weight'].shape[0] if blocks else None,
      pool='gap' if 'fc_norm.weight' in sd else 'cls',
      classes=sd['head.weight'].shape[0] if 'head.weight' in sd else None,
      decoder_width=sd['decoder_embed.weight'].shape[0] if decoder else None,
      decoder_depth=len(decoder), pos_rows=rows)


def _variant_name(width, depth) -> str:
  """'ViT-Ti' where a variant of livt_jax has this size, else 'ViT'."""
  names = [n for n, v in vit.VARIANTS.items() if (v['width'], v['depth']) == (width, depth)]
  return f'ViT-{names[0]}' if names else 'ViT'


def size_fix(have: dict) -> str:
  """The settings that build the checkpoint's size: its variant, or the size overrides."""
  ratio = have['mlp'] / have['width'] if have['mlp'] else 4.0
  name = next((n for n, v in vit.VARIANTS.items()
               if (v['width'], v['depth'], v['mlp_ratio']) == (have['width'], have['depth'],
                                                               ratio)), None)
  if name:
    return f'set --config.model.variant={name}'
  heads = max(1, have['width'] // 64)
  heads = heads if have['width'] % heads == 0 else 1
  fix = (f'no ViT variant of livt_jax has this size: set the variant\'s size overrides '
         f'--config.model.width={have["width"]} --config.model.depth={have["depth"]} '
         f'--config.model.heads={heads}')
  if ratio != 4.0:
    fix += f' --config.model.mlp_ratio={ratio:g}'
  return fix + ' (a state dict does not record the heads; ViTs use width / 64: check its source)'


def check_model(path, have: dict, model, num_classes=None) -> None:
  """Raises CheckpointMismatchError naming both sides when the checkpoint cannot fill `model`."""
  where = f'PyTorch checkpoint {path}'
  if (have['width'], have['depth']) != (model.width, model.depth):
    fix = size_fix(have)
    raise CheckpointMismatchError(
        f'{where} holds a {_variant_name(have["width"], have["depth"])} (width {have["width"]}, '
        f'depth {have["depth"]}) but the config asks for '
        f'{_variant_name(model.width, model.depth)} (width {model.width}, depth {model.depth}); '
        f'{fix} to use it')
  if have['patch'] != model.patch_size:
    raise CheckpointMismatchError(
        f'{where} has {have["patch"]}x{have["patch"]} patches but the config builds '
        f'{model.patch_size}x{model.patch_size}; set --config.model.patch_size={have["patch"]}')
  if have['mlp'] != int(model.width * model.mlp_ratio):
    raise CheckpointMismatchError(
        f'{where} has MLP width {have["mlp"]} but the config builds '
        f'{int(model.width * model.mlp_ratio)} (mlp_ratio {model.mlp_ratio}); set '
        f'--config.model.mlp_ratio={have["mlp"] / have["width"]:g}')
  pool = getattr(model, 'pool', None)
  if pool is not None and num_classes is not None:  # a classifier: pool and head must fit
    if have['classes'] is None:
      raise CheckpointMismatchError(
          f'{where} is an encoder without a head ({have["kind"]}); evaluate needs a fine-tuned '
          'classifier (use it as --config.bft.init_from to fine-tune one)')
    if have['pool'] != pool:
      raise CheckpointMismatchError(
          f'{where} pools with {have["pool"]} ({"fc_norm" if have["pool"] == "gap" else "norm"} '
          f'+ head) but the config asks for pool {pool}; set --config.model.pool={have["pool"]}')
    if have['classes'] != num_classes:
      raise CheckpointMismatchError(
          f'{where} has a {have["classes"]}-class head but the data has {num_classes} classes; '
          'evaluate it on the dataset it was trained on, or fine-tune a new head from it '
          '(--config.bft.init_from)')
  if hasattr(model, 'decoder_width') and (have['decoder_width'], have['decoder_depth']) != (
      model.decoder_width, model.decoder_depth):
    raise CheckpointMismatchError(
        f'{where} has a decoder of width {have["decoder_width"]}, depth {have["decoder_depth"]} '
        f'but the config builds width {model.decoder_width}, depth {model.decoder_depth}; set '
        f'--config.model.decoder_width={have["decoder_width"]} '
        f'--config.model.decoder_depth={have["decoder_depth"]}')


def split_table(sd: dict, path) -> tuple[np.ndarray, np.ndarray, int]:
  """(class-token row [D] (zeros if none), patch table [N, D], grid side) of `pos_embed`."""
  if 'pos_embed' not in sd:
    raise torch_files.TorchFileError(f'{path} has no pos_embed (position table)')
  table = np.asarray(sd['pos_embed'], np.float32).reshape(-1, sd['pos_embed'].shape[-1])
  for rows, cls_row in ((table.shape[0] - 1, True), (table.shape[0], False)):
    side = int(round(rows ** 0.5))
    if side * side == rows:
      return (table[0] if cls_row else np.zeros(table.shape[1], np.float32),
              table[1:] if cls_row else table, side)
  raise torch_files.TorchFileError(f'{path}: pos_embed of {table.shape[0]} rows is no square grid')


def is_sincos(table: np.ndarray, side: int) -> bool:
  return bool(np.allclose(table, posemb.sincos_2d(table.shape[1], side, side, False),
                          rtol=0, atol=SINCOS_ATOL))


def resized(table: np.ndarray, side: int, grid: tuple[int, int]) -> np.ndarray:
  return table if (side, side) == tuple(grid) else posemb.resize_bicubic(table, side, side, *grid)


def _unused(sd: dict, used: set, allowed_prefixes: tuple) -> list:
  return sorted(k for k in sd if k not in used and not k.startswith(allowed_prefixes))


def convert(sd: dict, pairs: list, path) -> tuple[dict, set]:
  """Our tree from the (torch key, flax path, transform) table; also the keys consumed."""
  tree = {}
  for key, where, transform in pairs:
    if key not in sd:
      raise CheckpointMismatchError(f'PyTorch checkpoint {path} lacks {key}, which the model needs')
    layout.put(tree, where, np.asarray(layout.to_flax(sd[key], transform), np.float32))
  return tree, {k for k, _, _ in pairs}


def _check_tree(tree: dict, abstract: dict, path) -> None:
  have = {'/'.join(map(str, p)): np.shape(v) for p, v in _flat(tree)}
  want = {'/'.join(map(str, p)): tuple(v.shape) for p, v in _flat(abstract)}
  diff = sorted(set(have) ^ set(want)) or sorted(k for k in have if have[k] != want[k])
  if diff:
    details = ', '.join(f'{k}: checkpoint {have.get(k, "absent")}, config '
                        f'{want.get(k, "absent")}' for k in diff[:3])
    raise CheckpointMismatchError(
        f'PyTorch checkpoint {path} does not fit the model of this config ({details})')


def _flat(tree, prefix=()):
  for k, v in tree.items():
    if isinstance(v, dict):
      yield from _flat(v, prefix + (k,))
    else:
      yield prefix + (k,), v


def abstract_params(model, image_shape) -> dict:
  shapes = jax.eval_shape(factory.init_fn(model, image_shape), jax.random.key(0))['params']
  return nn.unbox(shapes)


def _refuse_extra(sd, used, skip, path):
  extra = _unused(sd, used | {'pos_embed', 'decoder_pos_embed'}, skip)
  if extra:
    raise CheckpointMismatchError(
        f'PyTorch checkpoint {path} has parameters this ViT has no place for: '
        f'{", ".join(extra[:4])}{" ..." if len(extra) > 4 else ""} (layer scale, register or '
        'distillation tokens, q/k norms and relative positions are not supported)')


def _place_table(sd, tree, model, grid, path, need_pretrain_grid: bool) -> None:
  """Folds the class row into cls_token; puts or checks the patch table (see module doc)."""
  cls_row, table, side = split_table(sd, path)
  tree['encoder']['cls_token'] = tree['encoder']['cls_token'] + cls_row.reshape(1, 1, -1)
  learned = not is_sincos(table, side)
  if learned and model.posemb != 'learned':
    raise CheckpointMismatchError(
        f'PyTorch checkpoint {path} has a trained (learned) position table but the config uses '
        "the fixed sin-cos one; set --config.model.posemb=learned")
  if learned:
    tree['encoder']['pos_embedding'] = resized(table, side, grid)
    return
  # A sin-cos table: ours is rebuilt from the pre-training grid (model.pretrain_grid).
  pretrain = tuple(model.pretrain_grid or grid)
  if need_pretrain_grid and pretrain != (side, side):
    raise CheckpointMismatchError(
        f'PyTorch checkpoint {path} was pre-trained on a {side}x{side} patch grid but the config '
        f'says {pretrain[0]}x{pretrain[1]} (mgp.image_size / model.patch_size); set '
        f'--config.mgp.image_size={side * model.patch_size}')
  if model.posemb == 'learned':
    tree['encoder']['pos_embedding'] = posemb.encoder_table(model.width, grid, pretrain)


def classifier_params(sd: dict, model: vit.ViT, image_shape, path) -> dict:
  """A fine-tuned timm/LiVT ViT -> our `vit.ViT` parameters (evaluate.checkpoint)."""
  have = describe(sd)
  check_model(path, have, model, model.num_classes)
  pairs = layout.classifier_pairs(model.depth, model.pool)
  tree, used = convert(sd, pairs, path)
  if model.pool == 'gap':  # unused under 'gap'; kept so that every tree has it
    norm = {'scale': np.ones(model.width, np.float32), 'bias': np.zeros(model.width, np.float32)}
    tree['encoder']['encoder_norm'] = norm
    used |= {'norm.weight', 'norm.bias'}
  grid = (image_shape[0] // model.patch_size, image_shape[1] // model.patch_size)
  _place_table(sd, tree, model, grid, path, need_pretrain_grid=True)
  _refuse_extra(sd, used, ('head_drop',), path)
  _check_tree(tree, abstract_params(model, image_shape), path)
  return tree


def encoder_params(sd: dict, model: vit.ViT, image_shape, path) -> dict:
  """The encoder of any of them -> our encoder parameters (bft.init_from); head, decoder and
  pooling norms are dropped. The encoder keeps BFT's own table unless the checkpoint's is a
  learned one (then it is carried over, resized)."""
  have = describe(sd)
  check_model(path, have, model)
  with_norm = 'norm.weight' in sd
  tree, used = convert(sd, layout.encoder_pairs(model.depth, with_norm), path)
  if not with_norm:
    tree['encoder']['encoder_norm'] = {'scale': np.ones(model.width, np.float32),
                                       'bias': np.zeros(model.width, np.float32)}
  grid = (image_shape[0] // model.patch_size, image_shape[1] // model.patch_size)
  _place_table(sd, tree, model, grid, path, need_pretrain_grid=True)
  _refuse_extra(sd, used, ('head', 'fc_norm', 'decoder', 'mask_token'), path)
  want = dict(abstract_params(model, image_shape)['encoder'])
  if 'pos_embedding' not in tree['encoder']:
    want.pop('pos_embedding', None)  # BFT keeps its own (fresh) table: train.build_stage
  _check_tree(tree['encoder'], want, path)
  return tree['encoder']


def mae_params(sd: dict, model, image_shape, path) -> dict:
  """A facebookresearch/mae MaskedAutoencoderViT -> our `mae.MAE` parameters."""
  have = describe(sd)
  if have['kind'] != 'MAE':
    raise CheckpointMismatchError(
        f'PyTorch checkpoint {path} is a ViT without an MAE decoder; MGP needs '
        'MaskedAutoencoderViT weights (or use it as --config.bft.init_from)')
  check_model(path, have, model)
  tree, used = convert(sd, layout.mae_pairs(model.depth, model.decoder_depth), path)
  grid = (image_shape[0] // model.patch_size, image_shape[1] // model.patch_size)
  cls_row, table, side = split_table(sd, path)
  tree['encoder']['cls_token'] = tree['encoder']['cls_token'] + cls_row.reshape(1, 1, -1)
  for name, t in (('pos_embed', table),
                  ('decoder_pos_embed', split_table({'pos_embed': sd['decoder_pos_embed']},
                                                    path)[1])):
    if (side, side) != grid or not is_sincos(t, side):
      raise CheckpointMismatchError(
          f'PyTorch checkpoint {path}: its {name} is not the fixed sin-cos table of a '
          f'{grid[0]}x{grid[1]} grid, which our MAE uses; set --config.mgp.image_size='
          f'{side * model.patch_size} (a learned MAE table is not supported)')
  _refuse_extra(sd, used, (), path)
  _check_tree(tree, abstract_params(model, image_shape), path)
  return tree


def load(path, model, image_shape, part: str) -> dict:
  """Reads `path` (.pth/.pt/.bin/.safetensors) for `part`: 'classifier', 'encoder' or 'mae'."""
  sd = torch_files.load_state_dict(path)
  fn = {'classifier': classifier_params, 'encoder': encoder_params, 'mae': mae_params}[part]
  return fn(sd, model, image_shape, path)


def needs_learned_posemb(path) -> bool:
  """Whether a checkpoint's position table was trained (so model.posemb must be 'learned')."""
  sd = torch_files.load_state_dict(path)
  _, table, side = split_table(sd, path)
  return not is_sincos(table, side)
