"""Float64 NumPy references shared by the model tests, written from the formulas."""
import math

import numpy as np


def sincos_2d(d, gh, gw):
  """MAE's 2-D sin-cos table, element by element: the column coordinate fills the first half,
  and row 0 (the class token) is zeros."""
  out = np.zeros((1 + gh * gw, d))
  q = d // 4
  for r in range(gh):
    for c in range(gw):
      for k in range(q):
        om = 10000.0 ** (-k / q)
        row = 1 + r * gw + c
        out[row, k], out[row, q + k] = math.sin(c * om), math.cos(c * om)
        out[row, 2 * q + k], out[row, 3 * q + k] = math.sin(r * om), math.cos(r * om)
  return out


def layer_norm(x, p, eps=1e-6):
  """LayerNorm over the last axis with the biased variance, then Flax's `scale` and `bias`."""
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu) ** 2).mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps) * p['scale'] + p['bias']
