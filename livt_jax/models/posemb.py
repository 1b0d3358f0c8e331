"""Fixed 2-D sine-cosine position embeddings (MAE's `get_2d_sincos_pos_embed`).

For a grid of `grid_h x grid_w` patches, numbered row-major, the embedding of the patch at row
`r` and column `c` is `concat(E(c), E(r))` with the 1-D table

    E(x)[k]       = sin(x * omega_k),   k < D/4
    E(x)[D/4 + k] = cos(x * omega_k),   omega_k = 10000 ** (-k / (D/4)),

where D is the embedding width. As in MAE the *column* coordinate fills the first half of the
channels. With `cls_token=True` a row of zeros is prepended for the class token, so the class
token carries no position.
"""
import numpy as np


def sincos_1d(embed_dim: int, positions: np.ndarray) -> np.ndarray:
  """1-D sin-cos table: [len(positions), embed_dim], sines first, then cosines (float64)."""
  if embed_dim % 2:
    raise ValueError(f'sincos_1d: embed_dim={embed_dim} must be even')
  half = embed_dim // 2
  omega = 1.0 / 10000.0 ** (np.arange(half, dtype=np.float64) / half)
  angles = np.outer(np.asarray(positions, np.float64).reshape(-1), omega)
  return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_2d(embed_dim: int, grid_h: int, grid_w: int, cls_token: bool = True) -> np.ndarray:
  """2-D sin-cos table [grid_h * grid_w (+1), embed_dim] as float32 (a constant, not a param).

  Args:
    embed_dim: the width D; must be divisible by 4 (sin and cos for each of two coordinates).
    grid_h: number of patch rows.
    grid_w: number of patch columns.
    cls_token: prepend a zero row for the class token.

  Returns:
    A NumPy float32 array; row `1 + r * grid_w + c` (or `r * grid_w + c` without the class
    row) belongs to the patch at row r, column c.
  """
  if embed_dim % 4:
    raise ValueError(f'sincos_2d: embed_dim={embed_dim} must be divisible by 4')
  rows, cols = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing='ij')
  emb = np.concatenate([sincos_1d(embed_dim // 2, cols), sincos_1d(embed_dim // 2, rows)], axis=1)
  if cls_token:
    emb = np.concatenate([np.zeros((1, embed_dim)), emb], axis=0)
  return emb.astype(np.float32)


# Keys' parameter of torch's bicubic kernel (UpSample.h, get_cubic_upsample_coefficients).
TORCH_CUBIC_A = -0.75


def _cubic_weights(t: np.ndarray, a: float) -> np.ndarray:
  """The four tap weights [..., 4] for source offsets -1, 0, +1, +2 at fraction t in [0, 1)."""
  def near(x):  # |x| <= 1
    return ((a + 2) * x - (a + 3)) * x * x + 1
  def far(x):  # 1 < |x| < 2
    return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
  return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


def torch_bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
  """[out_size, in_size] float64 matrix of torch's 1-D bicubic resampling.

  `F.interpolate(mode='bicubic', align_corners=False)` without antialias (PyTorch
  aten/src/ATen/native/UpSample.h: area_pixel_compute_scale, area_pixel_compute_source_index
  with cubic=True, get_cubic_upsample_coefficients with A = -0.75, upsample_get_value_bounded):
  output i samples the input at x = (i + 0.5) * in / out - 0.5, from the four inputs
  floor(x) - 1 .. floor(x) + 2, indices clamped to the border (so a border input takes the
  weight of the taps beyond it). The same taps when shrinking: no antialias filter.
  """
  scale = in_size / out_size if out_size > 1 else 0.0  # area_pixel_compute_scale
  x = scale * (np.arange(out_size, dtype=np.float64) + 0.5) - 0.5
  base = np.floor(x)
  weights = _cubic_weights(x - base, TORCH_CUBIC_A)
  taps = np.clip(base[:, None].astype(np.int64) + np.arange(-1, 3), 0, in_size - 1)
  matrix = np.zeros((out_size, in_size))
  np.add.at(matrix, (np.repeat(np.arange(out_size), 4), taps.reshape(-1)), weights.reshape(-1))
  return matrix


def resize_bicubic(table: np.ndarray, grid_h: int, grid_w: int,
                   new_h: int, new_w: int) -> np.ndarray:
  """A patch table [grid_h * grid_w, D] resized bicubically to [new_h * new_w, D] (float32).

  As MAE/LiVT carry a pre-training table to a fine-tuning grid: facebookresearch/mae
  util/pos_embed.py, `interpolate_pos_embed` (the same function in XuZhengzhuo/LiVT), resizes the
  patch rows with torch's `F.interpolate(mode='bicubic', align_corners=False)`; here that
  resize (torch_bicubic_matrix) along rows and columns, computed in float64. (Before, this used
  `jax.image.resize`'s bicubic: Keys a = -0.5, antialiased when shrinking; on ViT-B's 768-wide
  table 8x8 -> 14x14 that differs from torch's by 0.8% in relative norm, 0.05 at most.)
  """
  width = table.shape[-1]
  grid = np.asarray(table, np.float64).reshape(grid_h, grid_w, width)
  # Separable, as torch: each output is a 4x4-tap sum with row weights times column weights.
  out = np.einsum('ih,hwd,jw->ijd', torch_bicubic_matrix(grid_h, new_h), grid,
                  torch_bicubic_matrix(grid_w, new_w))
  return out.astype(np.float32).reshape(new_h * new_w, width)


def encoder_table(embed_dim: int, grid: tuple[int, int],
                  pretrain_grid: tuple[int, int] | None = None) -> np.ndarray:
  """The patch position table [N, D] of an encoder on `grid`.

  The sin-cos table of the grid; or, when the encoder was pre-trained on another grid
  (`pretrain_grid`: MGP at 128 px, BFT at 224 px), the pre-training table resized to this grid.
  """
  if pretrain_grid is None or tuple(pretrain_grid) == tuple(grid):
    return sincos_2d(embed_dim, *grid, cls_token=False)
  source = sincos_2d(embed_dim, *pretrain_grid, cls_token=False)
  return resize_bicubic(source, *pretrain_grid, *grid)
