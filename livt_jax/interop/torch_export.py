"""Our Flax parameter trees -> PyTorch state dicts that timm / MAE code loads with strict=True.

A BFT classifier becomes a timm `VisionTransformer` state dict ('gap' -> global_pool='avg'
with `fc_norm`, 'cls' -> 'token' with `norm`; timm has no `norm` in 'avg' mode, so ours,
unused there, is left out). An MGP model becomes a facebookresearch/mae `MaskedAutoencoderViT`
state dict. The position table is written as timm holds it, [1, 1 + N, D] with a zero class
row (our class token carries no position); a fixed table is written as its values.
`timm_kwargs` gives the `VisionTransformer(...)` arguments of the exported model (also stored
in a .safetensors file's metadata).
"""
import numpy as np

from livt_jax.interop import layout
from livt_jax.models import posemb


def _grid(model, image_shape) -> tuple[int, int]:
  return image_shape[0] // model.patch_size, image_shape[1] // model.patch_size


def _with_class_row(table: np.ndarray) -> np.ndarray:
  table = np.asarray(table, np.float32)
  return np.concatenate([np.zeros((1, table.shape[1]), np.float32), table])[None]


def _from_pairs(params, pairs) -> dict:
  return {key: np.asarray(layout.to_torch(np.asarray(layout.get(params, path), np.float32), t))
          for key, path, t in pairs}


def encoder_table(params, model, image_shape) -> np.ndarray:
  """The patch table the encoder adds at this image size: learned, or the fixed one."""
  if 'pos_embedding' in params['encoder']:
    return np.asarray(params['encoder']['pos_embedding'], np.float32)
  return posemb.encoder_table(model.width, _grid(model, image_shape),
                              getattr(model, 'pretrain_grid', None))


def classifier_state_dict(params, model, image_shape) -> dict[str, np.ndarray]:
  """A `vit.ViT`'s parameters as a timm VisionTransformer state dict."""
  sd = _from_pairs(params, layout.classifier_pairs(model.depth, model.pool))
  sd['pos_embed'] = _with_class_row(encoder_table(params, model, image_shape))
  return dict(sorted(sd.items()))


def mae_state_dict(params, model, image_shape) -> dict[str, np.ndarray]:
  """An `mae.MAE`'s parameters as a MaskedAutoencoderViT state dict (models_mae.py names)."""
  sd = _from_pairs(params, layout.mae_pairs(model.depth, model.decoder_depth))
  grid = _grid(model, image_shape)
  sd['pos_embed'] = _with_class_row(posemb.sincos_2d(model.width, *grid, cls_token=False))
  sd['decoder_pos_embed'] = _with_class_row(
      posemb.sincos_2d(model.decoder_width, *grid, cls_token=False))
  return dict(sorted(sd.items()))


def timm_kwargs(model, image_shape) -> dict:
  """`timm.models.vision_transformer.VisionTransformer(**kwargs)` of an exported classifier."""
  return dict(img_size=int(image_shape[0]), patch_size=int(model.patch_size),
              in_chans=int(image_shape[2]), num_classes=int(model.num_classes),
              embed_dim=int(model.width), depth=int(model.depth),
              num_heads=int(model.num_heads), mlp_ratio=float(model.mlp_ratio),
              global_pool='avg' if model.pool == 'gap' else 'token')
