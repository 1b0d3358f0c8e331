"""MAE reconstructions of an MGP model (the paper's Fig. 7): original / masked / reconstructed.

Written as WORKDIR/report/mae_reconstructions.png by every run with an MGP stage, from test
images (one per class, up to 8), with the MGP stage's mask ratio.
"""
import io

from etils import epath
import jax
from jax.experimental import multihost_utils
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from livt_jax.data import augment
from livt_jax.models import mae as mae_lib

FILE_NAME = 'mae_reconstructions.png'


def reconstruct(model, params, images: np.ndarray, rng) -> dict:
  """Masks, encodes and decodes `images` (normalised float [B, H, W, C]).

  Returns float32 arrays [B, H, W, C] in the normalised space of `images`:
    'masked': the input with the removed patches set to 0;
    'reconstruction': the decoder's prediction of every patch; with norm_pix_loss it predicts
      normalised patches, so each is mapped back with the mean and std of the true patch (as
      the MAE visualisation does);
    'pasted': the reconstruction on the removed patches, the input on the visible ones.
  And 'mask' [B, N] (1 = removed).
  """
  loss, out = jax.jit(lambda p, x, r: model.apply({'params': p}, x, train=False,
                                                  rngs={'mask': r}))(params, images, rng)
  del loss
  p, c = model.patch_size, images.shape[-1]
  grid = (images.shape[1] // p, images.shape[2] // p)
  target = np.asarray(mae_lib.patchify(images, p), np.float32)
  pred = np.asarray(out['pred'], np.float32)
  mask = np.asarray(out['mask'], np.float32)[..., None]
  if model.norm_pix_loss:
    mean = target.mean(-1, keepdims=True)
    std = np.sqrt(target.var(-1, keepdims=True, ddof=1) + 1e-6)
    pred = pred * std + mean
  back = lambda x: np.asarray(mae_lib.unpatchify(x, p, c, grid))
  return {'masked': back(target * (1 - mask)), 'reconstruction': back(pred),
          'pasted': back(target * (1 - mask) + pred * mask), 'mask': mask[..., 0]}


def pick_images(source, count: int = 8) -> np.ndarray:
  """uint8 images: the first record of each class in order, up to `count`."""
  firsts = [int(np.flatnonzero(source.labels == c)[0]) for c in range(source.num_classes)
            if np.any(source.labels == c)][:count]
  return np.stack([source[i]['image'] for i in firsts])


def figure(rows: dict, mean, std, path):
  """One column per image; rows original / masked / reconstruction / reconstruction + visible."""
  titles = ('original', 'masked', 'reconstruction', 'reconstruction + visible')
  keys = ('original', 'masked', 'reconstruction', 'pasted')
  n = len(rows['original'])
  fig, axes = plt.subplots(4, n, figsize=(1.4 * n, 6), squeeze=False)
  for r, (key, title) in enumerate(zip(keys, titles)):
    for i in range(n):
      pixels = np.clip(rows[key][i] * np.asarray(std) + np.asarray(mean), 0, 1)
      ax = axes[r][i]
      ax.imshow(pixels[..., 0] if pixels.shape[-1] == 1 else pixels,
                cmap='gray' if pixels.shape[-1] == 1 else None, vmin=0, vmax=1)
      ax.set_xticks([]), ax.set_yticks([])
      if i == 0:
        ax.set_ylabel(title, fontsize=7)
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format='png', dpi=100)
  plt.close(fig)
  epath.Path(path).write_bytes(buffer.getvalue())


def write(config, model, params, test_source, info, out_dir, seed: int = 0):
  """Draws the figure for up to 8 test images into `out_dir` (every process must call it)."""
  if jax.process_count() > 1:  # FSDP-sharded leaves are gathered on every host
    params = multihost_utils.process_allgather(params, tiled=True)
  params = jax.device_get(params)
  size = config.mgp.image_size
  native = max(info.image_shape[:2]) if info.image_shape else None
  images = np.stack([augment.eval_transform(im, size, native) for im in pick_images(test_source)])
  normalised = (images.astype(np.float32) / 255 - np.asarray(info.mean)) / np.asarray(info.std)
  rows = reconstruct(model, params, normalised, jax.random.key(seed))
  rows['original'] = normalised
  if jax.process_index() == 0:
    out_dir = epath.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figure(rows, info.mean, info.std, out_dir / FILE_NAME)
  return rows
