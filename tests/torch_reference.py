"""The PyTorch side of tests/test_interop_torch.py; runs in .venv-torch (torch + timm), not in
the test process, so the main venv never imports torch.

    python tests/torch_reference.py make OUT_DIR     # random-weight models, inputs, outputs
    python tests/torch_reference.py check OUT_DIR    # loads OUT_DIR/exported_* strictly, runs

The classifiers are timm's own `VisionTransformer`. facebookresearch/mae is not a package: its
`MaskedAutoencoderViT` is rebuilt here from timm's `PatchEmbed` and `Block` with the state-dict
names and forward pass of models_mae.py (random_masking, forward_encoder/decoder/loss).
Nothing from livt_jax is imported: the reference is independent of the code under test.
"""
import functools
import json
import os
import sys

import numpy as np
import timm
from timm.models.vision_transformer import Block
from timm.models.vision_transformer import VisionTransformer
from timm.layers import PatchEmbed
from safetensors.torch import save_file
import torch
from torch import nn

IMG, PATCH, BATCH = 32, 8, 4
CLASSIFIERS = {  # name -> VisionTransformer kwargs (ViT-Ti and ViT-S sizes, both pools)
    'ti_gap': dict(embed_dim=192, depth=12, num_heads=3, global_pool='avg', num_classes=10),
    'ti_cls': dict(embed_dim=192, depth=12, num_heads=3, global_pool='token', num_classes=7),
    's_gap': dict(embed_dim=384, depth=12, num_heads=6, global_pool='avg', num_classes=5),
}
MAE = dict(embed_dim=192, depth=12, num_heads=3, decoder_embed_dim=64, decoder_depth=2,
           decoder_num_heads=2, mask_ratio=0.75)


def sincos_2d(dim, side):
  """MAE's get_2d_sincos_pos_embed (util/pos_embed.py), class row included."""
  def one_d(d, pos):
    omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
    out = np.einsum('m,d->md', pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)
  grid = np.meshgrid(np.arange(side, dtype=np.float32), np.arange(side, dtype=np.float32))
  emb = np.concatenate([one_d(dim // 2, grid[0]), one_d(dim // 2, grid[1])], axis=1)
  return np.concatenate([np.zeros([1, dim]), emb], axis=0)


class MaskedAutoencoderViT(nn.Module):
  """models_mae.py's module layout and forward, norm_pix_loss=True."""

  def __init__(self, embed_dim, depth, num_heads, decoder_embed_dim, decoder_depth,
               decoder_num_heads, mask_ratio):
    super().__init__()
    norm = functools.partial(nn.LayerNorm, eps=1e-6)  # as models_mae.py
    self.mask_ratio = mask_ratio
    self.patch_embed = PatchEmbed(IMG, PATCH, 3, embed_dim)
    n = self.patch_embed.num_patches
    self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
    self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, embed_dim), requires_grad=False)
    self.blocks = nn.ModuleList([Block(embed_dim, num_heads, 4.0, qkv_bias=True, norm_layer=norm)
                                 for _ in range(depth)])
    self.norm = norm(embed_dim)
    self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
    self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
    self.decoder_pos_embed = nn.Parameter(torch.zeros(1, n + 1, decoder_embed_dim),
                                          requires_grad=False)
    self.decoder_blocks = nn.ModuleList([
        Block(decoder_embed_dim, decoder_num_heads, 4.0, qkv_bias=True, norm_layer=norm)
        for _ in range(decoder_depth)])
    self.decoder_norm = norm(decoder_embed_dim)
    self.decoder_pred = nn.Linear(decoder_embed_dim, PATCH ** 2 * 3)
    side = int(n ** 0.5)
    self.pos_embed.data.copy_(torch.from_numpy(sincos_2d(embed_dim, side)).float()[None])
    self.decoder_pos_embed.data.copy_(
        torch.from_numpy(sincos_2d(decoder_embed_dim, side)).float()[None])

  def patchify(self, imgs):
    p, h = PATCH, imgs.shape[2] // PATCH
    x = imgs.reshape(imgs.shape[0], 3, h, p, h, p)
    return torch.einsum('nchpwq->nhwpqc', x).reshape(imgs.shape[0], h * h, p * p * 3)

  def random_masking(self, x, noise):
    n, length, d = x.shape
    keep = int(length * (1 - self.mask_ratio))
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    x = torch.gather(x, 1, ids_shuffle[:, :keep].unsqueeze(-1).repeat(1, 1, d))
    mask = torch.ones([n, length])
    mask[:, :keep] = 0
    return x, torch.gather(mask, 1, ids_restore), ids_restore

  def forward(self, imgs, noise):
    x = self.patch_embed(imgs) + self.pos_embed[:, 1:, :]
    x, mask, ids_restore = self.random_masking(x, noise)
    cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
    x = torch.cat((cls, x), dim=1)
    for blk in self.blocks:
      x = blk(x)
    x = self.decoder_embed(self.norm(x))
    fill = self.mask_token.repeat(x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], 1)
    x_ = torch.cat([x[:, 1:, :], fill], dim=1)
    x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
    x = torch.cat([x[:, :1, :], x_], dim=1) + self.decoder_pos_embed
    for blk in self.decoder_blocks:
      x = blk(x)
    pred = self.decoder_pred(self.decoder_norm(x))[:, 1:, :]
    target = self.patchify(imgs)
    mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
    target = (target - mean) / (var + 1.e-6) ** .5
    loss = ((pred - target) ** 2).mean(dim=-1)
    return (loss * mask).sum() / mask.sum(), pred, mask


def randomize(model, gen):
  """Every trainable parameter random and away from its init (LayerNorm scales around 1), so
  a swapped or transposed tensor changes the output."""
  with torch.no_grad():
    for name, p in model.named_parameters():
      if not p.requires_grad:
        continue  # MAE's fixed sin-cos tables
      noise = torch.randn(p.shape, generator=gen)
      p.copy_(1.0 + 0.2 * noise if name.endswith('norm1.weight') or name.endswith(
          'norm2.weight') or 'norm.weight' in name else 0.1 * noise)


def classifier(kw):
  return VisionTransformer(img_size=IMG, patch_size=PATCH, in_chans=3, **kw).eval()


def make(out):
  gen = torch.Generator().manual_seed(0)
  images = torch.randn(BATCH, 3, IMG, IMG, generator=gen)
  np.save(os.path.join(out, 'images.npy'), images.numpy())
  with torch.no_grad():
    for name, kw in CLASSIFIERS.items():
      model = classifier(kw)
      randomize(model, gen)
      torch.save({'model': model.state_dict(), 'epoch': 9}, os.path.join(out, f'{name}.pth'))
      np.save(os.path.join(out, f'{name}_logits.npy'), model(images).numpy())
      if name == 'ti_gap':  # the same weights as timm/HF hubs ship them
        save_file(model.state_dict(), os.path.join(out, f'{name}.safetensors'))
    mae = MaskedAutoencoderViT(**MAE).eval()
    randomize(mae, gen)
    torch.save({'model': mae.state_dict()}, os.path.join(out, 'mae.pth'))
    noise = torch.rand(BATCH, (IMG // PATCH) ** 2, generator=gen)
    loss, pred, mask = mae(images, noise)
    for key, value in (('mae_noise', noise), ('mae_loss', loss), ('mae_pred', pred),
                       ('mae_mask', mask)):
      np.save(os.path.join(out, f'{key}.npy'), value.numpy())
  json.dump({'classifiers': CLASSIFIERS, 'mae': MAE, 'img': IMG, 'patch': PATCH,
             'torch': torch.__version__, 'timm': timm.__version__},
            open(os.path.join(out, 'spec.json'), 'w'))


def check(out):
  """Loads our exports strictly (an unexpected or missing key fails) and runs them."""
  images = torch.from_numpy(np.load(os.path.join(out, 'images.npy')))
  with torch.no_grad():
    for name, kw in CLASSIFIERS.items():
      for suffix in ('pth', 'safetensors'):
        model = classifier(kw)
        timm.models.load_checkpoint(model, os.path.join(out, f'exported_{name}.{suffix}'),
                                    strict=True)
        np.save(os.path.join(out, f'exported_{name}_{suffix}_logits.npy'), model(images).numpy())
    mae = MaskedAutoencoderViT(**MAE).eval()
    mae.load_state_dict(torch.load(os.path.join(out, 'exported_mae.pth')), strict=True)
    noise = torch.from_numpy(np.load(os.path.join(out, 'mae_noise.npy')))
    np.save(os.path.join(out, 'exported_mae_loss.npy'), mae(images, noise)[0].numpy())


if __name__ == '__main__':
  torch.set_num_threads(1)
  {'make': make, 'check': check}[sys.argv[1]](sys.argv[2])
