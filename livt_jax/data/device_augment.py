"""The per-pixel part of the input pipeline, run inside the jitted step on the accelerator.

The host sends uint8 images (a quarter of float32's host-to-device bytes) and, for random
erasing, one box and one noise seed per image drawn from that record's generator, so the
erasing of a record is the same on any device count, and likewise the RandAugment draws when
it runs here (`bft.randaug_on`). Here: RandAugment, normalise, then erase (timm RandomErasing,
'pixel' mode: N(0, 1) noise on the normalised image).
"""
import jax
import jax.numpy as jnp

from livt_jax.data import device_randaugment
from livt_jax.data import randaugment


def normalize(images: jax.Array, mean, std) -> jax.Array:
  """uint8 [B, H, W, C] -> float32 (x / 255 - mean) / std."""
  mean = jnp.asarray(mean, jnp.float32)
  std = jnp.asarray(std, jnp.float32)
  return images.astype(jnp.float32) * (1 / 255 / std) - mean / std


def random_erase(images: jax.Array, boxes: jax.Array, seeds: jax.Array) -> jax.Array:
  """Fills box i of image i with N(0, 1) noise drawn from seeds[i].

  Args:
    images: float32 [B, H, W, C], normalised.
    boxes: int32 [B, 4] (top, left, height, width); height 0 leaves the image as it is.
    seeds: uint32 [B].
  """
  _, height, width, channels = images.shape
  rows = jnp.arange(height)[None, :, None]
  cols = jnp.arange(width)[None, None, :]
  top, left, h, w = (boxes[:, i, None, None] for i in range(4))
  inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
  noise = jax.vmap(lambda s: jax.random.normal(
      jax.random.key(s), (height, width, channels), jnp.float32))(seeds)
  return jnp.where(inside[..., None], noise, images)


def preprocess(batch: dict, mean, std) -> dict:
  """A host batch -> the model's input: RandAugment (when the batch carries its 'randaug'
  draws), uint8 images normalised, erasing applied.

  Float images are taken as already normalised (tests and custom pipelines feed those).
  """
  batch = dict(batch)
  if 'randaug' in batch:
    if batch['image'].dtype != jnp.uint8:
      raise ValueError('RandAugment on the device needs the uint8 images of the pipeline, got '
                       f'{batch["image"].dtype}')
    mode = 'L' if batch['image'].shape[-1] == 1 else 'RGB'
    batch['image'] = device_randaugment.rand_augment(
        batch['image'], batch.pop('randaug'), randaugment.fill_color(mean, mode))
  if batch['image'].dtype == jnp.uint8:
    batch['image'] = normalize(batch['image'], mean, std)
  if 'erase_box' in batch:
    batch['image'] = random_erase(batch['image'], batch.pop('erase_box'),
                                  batch.pop('erase_seed'))
  return batch
