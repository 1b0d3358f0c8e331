"""The PyTorch reference models: timm's ViT (or a replica of it) and an MAE on timm's `Block`.

Used by `torch_runner`, only in the --vs_torch child process; torch is imported inside the
functions, so this module imports without it.
"""
import functools

from livt_jax.models import posemb


def timm_classes():
  """timm's (Block, VisionTransformer, impl name), or replicas with the same modules and ops
  where timm cannot be imported."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top

  try:
    from timm.models.vision_transformer import Block  # pylint: disable=g-import-not-at-top
    from timm.models.vision_transformer import VisionTransformer  # pylint: disable=g-import-not-at-top
    return Block, VisionTransformer, 'timm'
  except Exception as e:  # pylint: disable=broad-except
    reason = f'{type(e).__name__}: {str(e).splitlines()[0][:80]}'

  class Attention(nn.Module):
    """timm's Attention on its fused path: qkv Linear -> SDPA -> proj."""

    def __init__(self, dim, num_heads):
      super().__init__()
      self.num_heads = num_heads
      self.qkv = nn.Linear(dim, 3 * dim)
      self.proj = nn.Linear(dim, dim)

    def forward(self, x):
      b, t, d = x.shape
      qkv = self.qkv(x).reshape(b, t, 3, self.num_heads, d // self.num_heads)
      q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
      x = F.scaled_dot_product_attention(q, k, v)
      return self.proj(x.transpose(1, 2).reshape(b, t, d))

  class DropPath(nn.Module):

    def __init__(self, rate):
      super().__init__()
      self.rate = rate

    def forward(self, x):
      if not self.training or self.rate == 0.0:
        return x
      keep = 1.0 - self.rate
      mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep).div_(keep)
      return x * mask

  class Block(nn.Module):  # pylint: disable=redefined-outer-name
    """timm's pre-norm Block (no layer scale): the signature subset used here."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=True, drop_path=0.0,
                 act_layer=nn.GELU, norm_layer=None):
      super().__init__()
      del qkv_bias  # always on, as in ViT/MAE
      norm_layer = norm_layer or functools.partial(nn.LayerNorm, eps=1e-6)
      hidden = int(dim * mlp_ratio)
      self.norm1 = norm_layer(dim)
      self.attn = Attention(dim, num_heads)
      self.drop_path1 = DropPath(drop_path)
      self.norm2 = norm_layer(dim)
      self.mlp = nn.Sequential(nn.Linear(dim, hidden), act_layer(), nn.Linear(hidden, dim))
      self.drop_path2 = DropPath(drop_path)

    def forward(self, x):
      x = x + self.drop_path1(self.attn(self.norm1(x)))
      return x + self.drop_path2(self.mlp(self.norm2(x)))

  class VisionTransformer(nn.Module):  # pylint: disable=redefined-outer-name
    """timm's VisionTransformer with class token, learned pos_embed, global_pool='avg', fc_norm."""

    def __init__(self, img_size, patch_size, in_chans, num_classes, embed_dim, depth, num_heads,
                 mlp_ratio, qkv_bias=True, global_pool='avg', fc_norm=True, drop_path_rate=0.0,
                 act_layer=nn.GELU):
      super().__init__()
      assert global_pool == 'avg' and fc_norm and qkv_bias
      n = (img_size // patch_size) ** 2
      self.patch_embed = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size)
      self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
      self.pos_embed = nn.Parameter(torch.randn(1, n + 1, embed_dim) * 0.02)
      rates = [float(r) for r in torch.linspace(0, drop_path_rate, depth)]
      self.blocks = nn.Sequential(*[
          Block(embed_dim, num_heads, mlp_ratio, drop_path=r, act_layer=act_layer)
          for r in rates])
      self.fc_norm = nn.LayerNorm(embed_dim, eps=1e-6)
      self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, x):
      x = self.patch_embed(x).flatten(2).transpose(1, 2)
      x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
      x = self.blocks(x)
      return self.head(self.fc_norm(x[:, 1:].mean(dim=1)))

  return Block, VisionTransformer, f'timm-replica (timm not importable: {reason})'


def mae_class(Block):  # pylint: disable=invalid-name
  """An MAE (He et al.) on `Block`: the same computation as livt_jax.models.mae.MAE."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top

  class MAE(nn.Module):
    """Patch embed + fixed sin-cos posemb, random masking, encoder, light decoder, norm-pix MSE."""

    def __init__(self, img_size, patch_size, in_chans, width, depth, num_heads, mlp_ratio,
                 decoder_width, decoder_depth, decoder_heads, mask_ratio, act_layer):
      super().__init__()
      g = img_size // patch_size
      self.p, self.mask_ratio = patch_size, mask_ratio
      self.patch_embed = nn.Conv2d(in_chans, width, patch_size, patch_size)
      self.cls_token = nn.Parameter(torch.randn(1, 1, width) * 0.02)
      self.register_buffer('pos', torch.from_numpy(posemb.sincos_2d(width, g, g))[None])
      norm = functools.partial(nn.LayerNorm, eps=1e-6)
      self.blocks = nn.Sequential(*[
          Block(width, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm, act_layer=act_layer)
          for _ in range(depth)])
      self.norm = norm(width)
      self.decoder_embed = nn.Linear(width, decoder_width)
      self.mask_token = nn.Parameter(torch.randn(1, 1, decoder_width) * 0.02)
      self.register_buffer('dec_pos',
                           torch.from_numpy(posemb.sincos_2d(decoder_width, g, g))[None])
      self.decoder_blocks = nn.Sequential(*[
          Block(decoder_width, decoder_heads, mlp_ratio, qkv_bias=True, norm_layer=norm,
                act_layer=act_layer) for _ in range(decoder_depth)])
      self.decoder_norm = norm(decoder_width)
      self.decoder_pred = nn.Linear(decoder_width, patch_size * patch_size * in_chans)

    def patchify(self, imgs):
      b, c, h, w = imgs.shape
      p = self.p
      x = imgs.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
      return x.reshape(b, (h // p) * (w // p), p * p * c)

    def forward(self, imgs):
      x = self.patch_embed(imgs).flatten(2).transpose(1, 2) + self.pos[:, 1:]
      b, n, d = x.shape
      keep = int(n * (1 - self.mask_ratio))
      ids_shuffle = torch.argsort(torch.rand(b, n, device=x.device), dim=1)
      ids_restore = torch.argsort(ids_shuffle, dim=1)
      x = torch.gather(x, 1, ids_shuffle[:, :keep, None].expand(-1, -1, d))
      mask = (ids_restore >= keep).float()
      x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1)
      x = self.decoder_embed(self.norm(self.blocks(x)))
      dw = x.shape[-1]
      y = torch.cat([x[:, 1:], self.mask_token.expand(b, n - keep, -1)], dim=1)
      y = torch.gather(y, 1, ids_restore[..., None].expand(-1, -1, dw))
      x = torch.cat([x[:, :1], y], dim=1) + self.dec_pos
      pred = self.decoder_pred(self.decoder_norm(self.decoder_blocks(x)))[:, 1:].float()
      target = self.patchify(imgs).float()
      mean = target.mean(dim=-1, keepdim=True)
      var = target.var(dim=-1, keepdim=True)  # unbiased, as MAE
      target = (target - mean) / (var + 1e-6).sqrt()
      per_patch = ((pred - target) ** 2).mean(dim=-1)
      return (per_patch * mask).sum() / mask.sum()

  return MAE
