"""The logit-adjusting Table 7 losses' cores: LDAM's per-class margin CE and LADE.

Used by `table7.make_table7_loss` (which documents the formulas and options).
"""
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

# The constants inside hyperconnect/LADE's log(prior + 1e-9), log(1/C + 1e-9) and
# count + 1e-8 (loss/LADELoss.py, loss/PriorCELoss.py), kept so the values match.
LADE_LOG_EPS = 1e-9
LADE_COUNT_EPS = 1e-8


def ldam_per_class(z: jax.Array, delta: jax.Array, s: float) -> jax.Array:
  """l [B, C]: l_bc = CE(s (z_b - delta_c e_c), c), the LDAM loss of sample b were its label c.

  kaidic/LDAM-DRW losses.py LDAMLoss.forward subtracts the label's margin from its logit and
  takes the CE of s * that row. Here every column c is a candidate label (soft targets weight
  them), without a [B, C, C] tensor: the row's log-sum-exp with column c lowered is
  log(R_bc + e^{s (z_bc - delta_c)}), R_bc = sum_{k != c} e^{s z_bk}. R_bc = total - e_bc is
  exact enough except for the row's largest logit (where the subtraction would cancel), so
  that column takes the sum of the others directly.
  """
  x = s * z
  top = jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
  e = jnp.exp(x - top)                                             # the largest entry is 1
  is_top = jax.nn.one_hot(jnp.argmax(x, axis=-1), x.shape[-1], dtype=bool)
  total = jnp.sum(e, axis=-1, keepdims=True)
  others = jnp.sum(jnp.where(is_top, 0.0, e), axis=-1, keepdims=True)
  rest = jnp.where(is_top, others, total - e)
  shifted = x - s * delta                                          # column c, its margin off
  return top + jnp.log(rest + jnp.exp(shifted - top)) - shifted


def make_lade(counts: Sequence[float], test_prior: np.ndarray | None, alpha: float,
              remine_lambda: float, form: str) -> Callable:
  """core(z, y, step, h) of 'lade' (see table7's docstring for the formula).

  hyperconnect/LADE: PriorCELoss (CE of z + log(pi + 1e-9)) with weight 1 plus LADELoss with
  weight alpha (its config/*/lade.yaml: 0.1), both on the classifier's logits. LADELoss keeps
  every class: a class absent from the batch contributes pi_c (T2_c + lam T2_c^2).
  form 'livt': XuZhengzhuo/LiVT util/loss.py LADE_loss, the same regulariser alone.
  A non-uniform test prior pi^t (our extension; the references use 1/C) shifts the logits by
  log(1/C) - log(pi^t) before both terms, so the raw logits predict under pi^t.
  """
  n = np.asarray(counts, np.float64)
  c = n.size
  pi = n / n.sum()
  log_bal = np.log(1.0 / c + LADE_LOG_EPS)
  shift = np.zeros(c) if test_prior is None else log_bal - np.log(
      np.asarray(test_prior, np.float64) + LADE_LOG_EPS)
  log_prior = np.log(pi + LADE_LOG_EPS)
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  shift_j, log_prior_j, spread_j, pi_j = (f32(shift), f32(log_prior), f32(log_bal - log_prior),
                                          f32(pi))
  alpha, lam, with_ce = float(alpha), float(remine_lambda), form == 'hyperconnect'

  def core(z, y, step, h):
    del step, h
    g = z + shift_j
    first = jnp.sum(y * g, axis=0) / (jnp.sum(y, axis=0) + LADE_COUNT_EPS)       # [C]
    second = jax.nn.logsumexp(g + spread_j, axis=0) - jnp.log(float(z.shape[0]))   # [C]
    reg = -jnp.sum(pi_j * (first - second - lam * second ** 2))
    if not with_ce:
      return reg
    prior_ce = jnp.mean(-jnp.sum(y * jax.nn.log_softmax(g + log_prior_j, axis=-1), axis=-1))
    return prior_ce + alpha * reg

  return core
