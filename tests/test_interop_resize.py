"""The position-table resize equals torch's `F.interpolate(mode='bicubic', align_corners=False)`,
run in .venv-torch (launch/setup.sh installs it), as MAE's `interpolate_pos_embed` calls it
when fine-tuning at another resolution (facebookresearch/mae util/pos_embed.py)."""
import os
import subprocess

import numpy as np
import pytest

from livt_jax.models import posemb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH_PYTHON = os.environ.get('LIVT_TORCH_PYTHON', os.path.join(ROOT, '.venv-torch', 'bin',
                                                                'python'))
# (grid, new grid): MGP 128 px -> BFT 224 / 384 px, 224 -> 384, and shrinking 224 -> 64 / 128.
CASES = [((8, 8), (14, 14)), ((8, 8), (24, 24)), ((14, 14), (24, 24)), ((14, 14), (8, 8)),
         ((14, 14), (4, 4))]

# The torch side, as interpolate_pos_embed reshapes it: [1, D, h, w] float32 in, same out.
_TORCH_RESIZE = '''
import sys, numpy as np, torch
table, h, w, nh, nw, out = np.load(sys.argv[1]), *map(int, sys.argv[2:6]), sys.argv[6]
x = torch.from_numpy(table).reshape(1, h, w, -1).permute(0, 3, 1, 2)
y = torch.nn.functional.interpolate(x, size=(nh, nw), mode='bicubic', align_corners=False)
np.save(out, y.permute(0, 2, 3, 1).reshape(nh * nw, -1).numpy())
'''


@pytest.fixture(scope='module')
def torch_resized(tmp_path_factory):
  assert os.path.exists(TORCH_PYTHON), (
      f'{TORCH_PYTHON} is missing: run `bash launch/setup.sh` (it installs torch + timm from '
      'requirements-benchmark.txt into .venv-torch)')
  tmp = tmp_path_factory.mktemp('resize')
  out = {}
  for grid, new in CASES:
    table = posemb.sincos_2d(768, *grid, cls_token=False)  # ViT-B's MGP table, float32
    src, dst = tmp / f'{grid[0]}_in.npy', tmp / f'{grid[0]}_{new[0]}_out.npy'
    np.save(src, table)
    subprocess.run([TORCH_PYTHON, '-c', _TORCH_RESIZE, str(src), *map(str, grid + new), str(dst)],
                   check=True, env={**os.environ, 'PYTHONPATH': ''}, timeout=300)
    out[grid, new] = table, np.load(dst)
  return out


@pytest.mark.parametrize('grid, new', CASES)
def test_resize_equals_torch_interpolate(torch_resized, grid, new):
  table, want = torch_resized[grid, new]
  got = posemb.resize_bicubic(table, *grid, *new)
  # float32 precision: torch sums the 16 taps in float32, we in float64 then round.
  np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)
  if grid != new:
    assert np.abs(want - posemb.sincos_2d(768, *new, cls_token=False)).max() > 0.05
