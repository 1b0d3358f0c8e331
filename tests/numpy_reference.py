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


# ---- Appendix E.2's NT-BCE, one sample at a time, from the paper's formula -------------------
# (The Table 7 losses' references, transcribed from their released code: table7_reference.py.)

def _log_softmax(v):
  v = np.asarray(v, np.float64)
  return v - v.max() - math.log(np.exp(v - v.max()).sum())


def nt_bce(z, y, lam, bias=None):
  """LiVT Appendix E.2: -[1(y) log sig(z + B) + (1 - 1(y)) / lam * log(1 - sig(lam (z + B)))]
  summed over classes, averaged over the batch."""
  z = np.asarray(z, np.float64) + (0.0 if bias is None else np.asarray(bias, np.float64))
  total = 0.0
  for zb, yb in zip(z, np.asarray(y, np.float64)):
    for zc, yc in zip(zb, yb):
      sig = 1 / (1 + math.exp(-zc))
      sig_l = 1 / (1 + math.exp(-lam * zc))
      total += -(yc * math.log(sig) + (1 - yc) / lam * math.log(1 - sig_l))
  return total / len(z)
