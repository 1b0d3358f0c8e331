"""Masked autoencoder (MAE, He et al. 2022) for LiVT's Masked Generative Pretraining (Sec. 4.1).

Per sample, uniform noise ranks the N patches; the `int(N * (1 - mask_ratio))` lowest are kept
and encoded (with the class token) by the shared ViT `Encoder`. A light decoder gets the encoded
tokens plus a learned `mask_token` for every removed patch, put back in image order, adds its own
fixed sin-cos position embedding and predicts the pixels of every patch. The loss (Eq. 4) is the
per-patch MSE averaged over the removed patches of the whole batch, against per-patch normalised
pixels when `norm_pix_loss` (mean and unbiased variance of each target patch).
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from livt_jax.models import posemb
from livt_jax.models import vit

patchify = vit.patchify  # [B, H, W, C] -> [B, N, p*p*C]; lives next to the patch embedding


def unpatchify(x: jax.Array, p: int, channels: int,
               grid_hw: tuple[int, int] | None = None) -> jax.Array:
  """Inverse of `patchify`: [B, N, p*p*C] -> [B, h*p, w*p, C] (square grid unless grid_hw)."""
  b, n, _ = x.shape
  if grid_hw is None:
    side = int(round(n ** 0.5))
    if side * side != n:
      raise ValueError(f'unpatchify: {n} patches is not a square grid; pass grid_hw')
    grid_hw = (side, side)
  h, w = grid_hw
  x = x.reshape(b, h, w, p, p, channels).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h * p, w * p, channels)


def random_masking(noise: jax.Array, mask_ratio: float):
  """Per-sample random masking from uniform noise [B, N].

  Returns:
    keep_ids: [B, K] indices of the kept patches, K = int(N * (1 - mask_ratio)), in the order
      of increasing noise.
    mask: [B, N] float32, 1 = removed, 0 = kept, in image order.
    ids_restore: [B, N] the inverse permutation of the shuffle: gathering the shuffled sequence
      (kept tokens, then mask tokens) with it gives image order back.
  """
  n = noise.shape[1]
  len_keep = int(n * (1 - mask_ratio))
  ids_shuffle = jnp.argsort(noise, axis=1)
  ids_restore = jnp.argsort(ids_shuffle, axis=1)
  keep_ids = ids_shuffle[:, :len_keep]
  # Position in the shuffle >= len_keep means the patch was removed.
  mask = (ids_restore >= len_keep).astype(jnp.float32)
  return keep_ids, mask, ids_restore


def mae_loss(pred: jax.Array, target_patches: jax.Array, mask: jax.Array,
             norm_pix_loss: bool) -> jax.Array:
  """Mean over the removed patches of the batch of the per-patch pixel MSE (float32 scalar).

  Args:
    pred: [B, N, P] predicted pixels.
    target_patches: [B, N, P] `patchify(images)`.
    mask: [B, N], 1 = removed (counted), 0 = visible (ignored).
    norm_pix_loss: normalise each target patch: (x - mean) / sqrt(var + 1e-6), unbiased var.
  """
  target = target_patches.astype(jnp.float32)
  if norm_pix_loss:
    mean = jnp.mean(target, axis=-1, keepdims=True)
    var = jnp.var(target, axis=-1, keepdims=True, ddof=1)  # unbiased, as torch.var in MAE
    target = (target - mean) / jnp.sqrt(var + 1e-6)
  per_patch = jnp.mean((pred.astype(jnp.float32) - target) ** 2, axis=-1)
  mask = mask.astype(jnp.float32)
  return jnp.sum(per_patch * mask) / jnp.sum(mask)


class MAE(nn.Module):
  """MAE with a ViT `encoder` (same tree as `vit.ViT`'s) and a light transformer decoder."""
  width: int
  depth: int
  num_heads: int
  patch_size: int
  mlp_ratio: float = 4.0
  decoder_width: int = 512
  decoder_depth: int = 8
  decoder_heads: int = 16
  mask_ratio: float = 0.75
  norm_pix_loss: bool = True
  dtype: Any = jnp.float32
  remat: bool = False
  gelu_approximate: bool = False
  bf16_matmul: bool = False  # precision 'bf16_matmul': see kernels.bf16_matmul
  attention: str = 'ours'  # see vit.Attention

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool = True):
    """Masks, encodes, decodes. Needs the rng stream 'mask'.

    Args:
      images: [B, H, W, C], H and W multiples of the patch size.
      train: passed to the blocks (no drop path in MAE; kept for a uniform interface).

    Returns:
      (loss, {'pred': [B, N, p*p*C] float32, 'mask': [B, N] with 1 = removed}).
    """
    b, h, w, c = images.shape
    p = self.patch_size
    gh, gw = h // p, w // p
    n = gh * gw
    noise = jax.random.uniform(self.make_rng('mask'), (b, n))
    keep_ids, mask, ids_restore = random_masking(noise, self.mask_ratio)

    encoder = vit.Encoder(self.width, self.depth, self.num_heads, p, self.mlp_ratio, 0.0,
                          self.dtype, self.remat, self.gelu_approximate,
                          bf16_matmul=self.bf16_matmul, attention=self.attention,
                          name='encoder')
    latent = encoder.encode_visible(images, keep_ids, train=train)  # [B, 1 + K, width]

    # Decoder input: kept tokens then one mask token per removed patch, un-shuffled.
    x = vit.dense(self.decoder_width, ('embed', None), self.dtype, 'decoder_embed',
                  bf16_matmul=self.bf16_matmul)(latent)
    mask_token = self.param('mask_token', nn.with_logical_partitioning(
        nn.initializers.normal(0.02), (None, None, 'vec')), (1, 1, self.decoder_width),
                            jnp.float32)
    fill = jnp.broadcast_to(mask_token.astype(x.dtype), (b, n - (x.shape[1] - 1),
                                                         self.decoder_width))
    patches = jnp.concatenate([x[:, 1:], fill], axis=1)
    patches = jnp.take_along_axis(patches, ids_restore[:, :, None], axis=1)
    x = jnp.concatenate([x[:, :1], patches], axis=1)
    x = x + jnp.asarray(posemb.sincos_2d(self.decoder_width, gh, gw, cls_token=True), x.dtype)

    block = vit.block_class(self.remat)
    for i in range(self.decoder_depth):
      x = block(self.decoder_heads, self.mlp_ratio, 0.0, self.dtype, self.gelu_approximate,
                self.bf16_matmul, self.attention, name=f'decoder_block_{i}')(x, train)
    x = vit.layer_norm(self.dtype, 'decoder_norm')(x)
    pred = vit.dense(p * p * c, ('embed', 'patch'), self.dtype, 'decoder_pred',
                     bf16_matmul=self.bf16_matmul)(x)
    pred = pred[:, 1:].astype(jnp.float32)

    loss = mae_loss(pred, patchify(images, p), mask, self.norm_pix_loss)
    return loss, {'pred': pred, 'mask': mask}
