"""Test-time views: the classifier's raw logits averaged over mirrored and shifted copies.

`evaluate.views` (config) picks them for every evaluation of a BFT model (val evaluators and
the final test):
  'one'         the image as it is (the paper's evaluation);
  'flip'        the image and its horizontal mirror;
  'flip_shift'  those two, each also moved by one pixel up, down, left and right (10 views).
The Bal-BCE bias is not added to any view: the average is over raw logits.
"""
import jax
import jax.numpy as jnp

VIEWS = ('one', 'flip', 'flip_shift')
COUNT = {'one': 1, 'flip': 2, 'flip_shift': 10}


def shift(images: jax.Array, axis: int, offset: int) -> jax.Array:
  """[B, H, W, C] moved by `offset` (+-1) pixels along `axis` (1 rows, 2 columns); the vacated
  row or column is 0 (the pipeline's uint8 images: pixel value 0, the background of
  Fashion-MNIST and of most padded crops)."""
  size = images.shape[axis]
  kept = jax.lax.slice_in_dim(images, 0 if offset > 0 else -offset,
                              size - offset if offset > 0 else size, axis=axis)
  pad = [(0, 0)] * images.ndim
  pad[axis] = (offset, 0) if offset > 0 else (0, -offset)
  return jnp.pad(kept, pad)


def make(images: jax.Array, kind: str) -> jax.Array:
  """[B, H, W, C] -> [V, B, H, W, C], the views of `kind` (the first is the image itself)."""
  if kind not in VIEWS:
    raise ValueError(f'evaluate.views={kind!r}: use one of {", ".join(VIEWS)}')
  out = [images]
  if kind != 'one':
    out.append(images[:, :, ::-1])
  if kind == 'flip_shift':
    out += [shift(view, axis, offset) for view in out[:2]
            for axis in (1, 2) for offset in (1, -1)]
  return jnp.stack(out)


def mean_logits(classify, images: jax.Array, kind: str) -> jax.Array:
  """The mean of `classify(view)` over the views of `images`, one view at a time (lax.map),
  so the model's activations are those of one view (only the uint8 input is held V times)."""
  if kind == 'one':
    return classify(images)
  logits = jax.lax.map(lambda v: classify(v).astype(jnp.float32), make(images, kind))
  return logits.mean(axis=0)
