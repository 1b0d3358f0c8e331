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


# ---- Table 7 / Appendix E.2 losses, one sample at a time, from the papers' formulas ----------

def _log_softmax(v):
  v = np.asarray(v, np.float64)
  return v - v.max() - math.log(np.exp(v - v.max()).sum())


def _softplus(v):
  return np.logaddexp(0.0, v)


def effective_number_weights(counts, beta):
  """Cui et al. Eq. 3-4: E_n = (1 - beta^n) / (1 - beta), w = 1 / E_n, then sum(w) = C."""
  counts = np.asarray(counts, np.float64)
  w = np.array([(1 - beta) / (1 - beta ** n) for n in counts])
  return w * len(counts) / w.sum()


def cb_loss(z, y, counts, beta, kind):
  """Cui et al. Eq. 5 with softmax CE ('ce') or class-summed sigmoid BCE ('bce')."""
  w = effective_number_weights(counts, beta)
  total = 0.0
  for zb, yb in zip(np.asarray(z, np.float64), np.asarray(y, np.float64)):
    if kind == 'ce':
      per = -np.dot(yb, _log_softmax(zb))
    else:
      per = sum(yc * _softplus(-zc) + (1 - yc) * _softplus(zc) for zc, yc in zip(zb, yb))
    total += np.dot(yb, w) * per
  return total / len(z)


def focal(z, y, gamma):
  """Lin et al. Eq. 5 (alpha = 1) on softmax probabilities: -(1 - p_t)^gamma log p_t."""
  total = 0.0
  for zb, yb in zip(np.asarray(z, np.float64), np.asarray(y, np.float64)):
    logp = _log_softmax(zb)
    total += -sum(yc * (1 - math.exp(lp)) ** gamma * lp for yc, lp in zip(yb, logp))
  return total / len(z)


def ldam_drw(z, y, counts, max_margin, s, beta, deferred):
  """Cao et al. Eq. 13 with Delta_j = C / n_j^(1/4) (the rarest gets max_margin), logits
  scaled by s; DRW: class-balanced weights (Cui) once deferred, a weighted batch mean."""
  counts = np.asarray(counts, np.float64)
  const = max_margin * counts.min() ** 0.25      # Delta_j = const / n_j^(1/4)
  w = effective_number_weights(counts, beta) if deferred else np.ones(len(counts))
  num = den = 0.0
  for zb, yb in zip(np.asarray(z, np.float64), np.asarray(y, np.float64)):
    margin_z = np.array([zc - yc * const / n ** 0.25 for zc, yc, n in zip(zb, yb, counts)])
    wb = np.dot(yb, w)
    num += wb * -np.dot(yb, _log_softmax(s * margin_z))
    den += wb
  return num / den


def lade(z, y, counts, alpha, remine_lambda, test_prior=None):
  """Hong et al.: PC-softmax CE + alpha * LADER (per-class Donsker-Varadhan estimate with
  importance weights p_t(y_i) / p_s(y_i) and the ReMINE penalty), f = z - log p_t."""
  z, y = np.asarray(z, np.float64), np.asarray(y, np.float64)
  counts = np.asarray(counts, np.float64)
  ps = counts / counts.sum()
  pt = np.full(len(ps), 1 / len(ps)) if test_prior is None else np.asarray(test_prior) / np.sum(
      test_prior)
  f = z - np.log(pt)
  b, c = z.shape
  pc = np.mean([-np.dot(y[i], _log_softmax(f[i] + np.log(ps))) for i in range(b)])
  lader = 0.0
  for k in range(c):
    mass = y[:, k].sum()
    if mass <= 0:
      continue
    first = sum(y[i, k] * f[i, k] for i in range(b)) / mass
    r = [sum(y[i, j] * pt[j] / ps[j] for j in range(c)) for i in range(b)]
    m = math.log(sum(r[i] * math.exp(f[i, k]) for i in range(b)) / b)
    lader -= ps[k] * (first - m - remine_lambda * m * m)
  return pc + alpha * lader


def ib(z, y, h, counts, alpha, eps=1e-3):
  """Park et al.: lambda_y * CE / (||softmax(z) - y||_1 * ||h||_1 + eps), lambda_k =
  alpha * n_k^-1 / sum n^-1, averaged over the batch."""
  counts = np.asarray(counts, np.float64)
  lam = alpha * (1 / counts) / np.sum(1 / counts)
  total = 0.0
  for zb, yb, hb in zip(np.asarray(z, np.float64), np.asarray(y, np.float64),
                        np.asarray(h, np.float64)):
    logp = _log_softmax(zb)
    influence = np.abs(np.exp(logp) - yb).sum() * np.abs(hb).sum()
    total += np.dot(yb, lam) * -np.dot(yb, logp) / (influence + eps)
  return total / len(z)


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
