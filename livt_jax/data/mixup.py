"""Mixup / CutMix on device, timm batch-mode semantics, jit-friendly (static shapes only).

One lambda and one mode per batch; every image is mixed with its partner in the reversed
batch (x[::-1]). CutMix pastes a box chosen by a mask (no dynamic slicing), and lambda is
corrected to the pasted area, so targets match the pixels.
"""
import jax
import jax.numpy as jnp


def one_hot_smoothed(labels: jax.Array, num_classes: int, smoothing: float = 0.0) -> jax.Array:
  """timm's smoothed one-hot: off = smoothing / C, on = 1 - smoothing + off (rows sum to 1)."""
  off = smoothing / num_classes
  return jax.nn.one_hot(labels, num_classes) * (1.0 - smoothing) + off


def _cutmix_mask(rng: jax.Array, lam: jax.Array, height: int, width: int):
  """timm rand_bbox: a box of side sqrt(1 - lam) * size, centre uniform, clipped.

  Returns:
    (mask [H, W] float, True inside the box; corrected lambda = 1 - box area / image area).
  """
  ratio = jnp.sqrt(1.0 - lam)
  cut_h = jnp.floor(height * ratio).astype(jnp.int32)
  cut_w = jnp.floor(width * ratio).astype(jnp.int32)
  rng_y, rng_x = jax.random.split(rng)
  cy = jax.random.randint(rng_y, (), 0, height)
  cx = jax.random.randint(rng_x, (), 0, width)
  y_lo = jnp.clip(cy - cut_h // 2, 0, height)
  y_hi = jnp.clip(cy + cut_h // 2, 0, height)
  x_lo = jnp.clip(cx - cut_w // 2, 0, width)
  x_hi = jnp.clip(cx + cut_w // 2, 0, width)
  rows = jnp.arange(height)[:, None]
  cols = jnp.arange(width)[None, :]
  mask = (rows >= y_lo) & (rows < y_hi) & (cols >= x_lo) & (cols < x_hi)
  area = (y_hi - y_lo) * (x_hi - x_lo)
  return mask, 1.0 - area / (height * width)


def mixup_cutmix(rng: jax.Array, images: jax.Array, targets_onehot: jax.Array, *,
                 mixup_alpha: float, cutmix_alpha: float, switch_prob: float = 0.5,
                 mix_prob: float = 1.0) -> tuple[jax.Array, jax.Array]:
  """Mixes a batch.

  Args:
    rng: a JAX PRNG key.
    images: [B, H, W, C] float.
    targets_onehot: [B, num_classes] (one-hot, possibly label-smoothed).
    mixup_alpha: Beta(alpha, alpha) for mixup; 0 disables mixup.
    cutmix_alpha: Beta(alpha, alpha) for cutmix; 0 disables cutmix.
    switch_prob: probability of cutmix when both are enabled.
    mix_prob: probability that the batch is mixed at all.

  Returns:
    (images, targets): targets = lam * t + (1 - lam) * t[::-1].
  """
  # Alphas are Python numbers: the enabled modes are decided at trace time.
  use_mixup, use_cutmix = mixup_alpha > 0, cutmix_alpha > 0
  if not (use_mixup or use_cutmix) or mix_prob <= 0:
    return images, targets_onehot
  rng_mix, rng_switch, rng_mixup, rng_cutmix, rng_box = jax.random.split(rng, 5)
  do_mix = jax.random.uniform(rng_mix) < mix_prob
  if use_mixup and use_cutmix:
    choose_cutmix = jax.random.uniform(rng_switch) < switch_prob
  else:
    choose_cutmix = jnp.asarray(use_cutmix)
  lam_mixup = jax.random.beta(rng_mixup, mixup_alpha, mixup_alpha) if use_mixup else 1.0
  lam_cutmix = jax.random.beta(rng_cutmix, cutmix_alpha, cutmix_alpha) if use_cutmix else 1.0

  flipped = images[::-1]
  height, width = images.shape[1], images.shape[2]
  mask, lam_box = _cutmix_mask(rng_box, jnp.asarray(lam_cutmix, jnp.float32), height, width)
  mixed_cut = jnp.where(mask[None, :, :, None], flipped, images)
  lam_mixup = jnp.asarray(lam_mixup, images.dtype)
  mixed_blend = images * lam_mixup + flipped * (1.0 - lam_mixup)

  lam = jnp.where(choose_cutmix, lam_box, lam_mixup)
  lam = jnp.where(do_mix, lam, 1.0)
  out = jnp.where(choose_cutmix, mixed_cut, mixed_blend)
  out = jnp.where(do_mix, out, images)
  lam_t = lam.astype(targets_onehot.dtype)
  targets = targets_onehot * lam_t + targets_onehot[::-1] * (1.0 - lam_t)
  return out.astype(images.dtype), targets
