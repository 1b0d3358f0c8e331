"""The re-balancing losses of the paper's Table 7 and Appendix E.2, selected by `bft.loss`.

Notation as in `losses.py`: logits z [B, C], soft targets y [B, C] (one-hot, smoothed or mixed;
every formula below is the paper's for a one-hot y and is linear in y otherwise), class counts
n_c, training prior pi_c = n_c / sum(n), test prior pi^t (uniform unless `bft.test_prior`), t
the train step. Per-sample class weights of soft targets are w_b = sum_c y_bc w_c.

  cb_ce, cb_bce   Class-balanced loss (Cui et al. 2019, Eq. 2-5): effective number
                  E_n = (1 - beta^n) / (1 - beta), class weight w_c = 1 / E_{n_c} normalised to
                  sum_c w_c = C;  L = mean_b w_b * l_b  with l_b the per-sample CE (Eq. 1) or
                  the class-summed BCE (Eq. 5).
  focal           Focal loss (Lin et al. 2017, Eq. 5, softmax form, alpha = 1):
                  L = mean_b -sum_c y_bc (1 - p_bc)^gamma log p_bc,  p = softmax(z).
  ldam_drw        LDAM (Cao et al. 2019, Eq. 13) with deferred re-weighting (their Alg. 1):
                  margins Delta_c = m_max * n_c^(-1/4) / max_k n_k^(-1/4),
                  l_b = CE(s * (z_b - Delta * y_b), y_b); before the DRW step all weights are 1,
                  from it on w_c are the class-balanced weights above (beta = drw_beta), and
                  L = sum_b w_b l_b / sum_b w_b  (a weighted mean, so the switch does not change
                  the loss scale).
  lade            LADE (Hong et al. 2021): with f = z - log pi^t (the logits that estimate
                  log p(x|y) / p_t(x), so the raw logits z predict under pi^t),
                  L = CE(f + log pi, y)  [PC softmax]  + alpha * L_LADER, and
                  L_LADER = -sum_{c in batch} pi_c [ sum_b y_bc f_bc / sum_b y_bc - M_c
                                                     - lambda * M_c^2 ],
                  M_c = log( (1/B) sum_b r_b e^{f_bc} ),  r_b = sum_k y_bk pi^t_k / pi_k:
                  the Donsker-Varadhan bound of log p_t(x|c)/p_t(x) per class with the
                  p_t-expectation taken over training samples by importance weights r, and
                  the ReMINE penalty lambda * M_c^2. Classes with no target mass in the batch
                  are left out.
  ib              Influence-balanced loss (Park et al. 2021): influence of a sample on the last
                  layer IB_b = ||softmax(z_b) - y_b||_1 * ||h_b||_1 (h: the head's input);
                  class weights lambda_c = alpha * n_c^-1 / sum_k n_k^-1;
                  L = mean_b lambda_b CE_b / (IB_b + eps),  eps = 1e-3, after the IB start step;
                  plain CE before it (their CE warm-up phase). The weight is part of the loss
                  (gradients flow through it), as the formula is written.
  nt_bce          Negative-tolerant BCE (Wu et al. 2020; LiVT Appendix E.2):
                  L = mean_b sum_c [ y log(1 + e^-z) + (1 - y) / lambda * log(1 + e^{lambda z}) ]
                  (lambda = 1 is BCE).
  bal_nt_bce      NT-BCE* (E.2): nt_bce on z + B with B the Bal-BCE bias of `losses.py`
                  (E.2 writes the 'official' form log pi - log(1 - pi): `bft.bias_form=official`).

All of them are float32 scalars; biases, margins and weights are float64 NumPy constants.
"""
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

TABLE7_LOSSES = ('cb_ce', 'cb_bce', 'focal', 'ldam_drw', 'lade', 'ib', 'nt_bce', 'bal_nt_bce')
# Losses that need the head's input features (`features=` of the loss function).
NEEDS_FEATURES = ('ib',)
# Losses that depend on the train step (`step=` of the loss function).
NEEDS_STEP = ('ldam_drw', 'ib')
IB_EPS = 1e-3

# Hyper-parameters of make_table7_loss and their defaults (config: bft.<name>).
DEFAULTS = dict(cb_beta=0.9999, focal_gamma=2.0, ldam_max_margin=0.5, ldam_scale=30.0,
                drw_beta=0.9999, drw_start_step=0, lade_alpha=0.1, lade_remine_lambda=0.1,
                ib_alpha=1000.0, ib_start_step=0, nt_lambda=2.0)


def effective_number_weights(class_counts: Sequence[float], beta: float) -> np.ndarray:
  """Cui et al.'s class weights (1 - beta) / (1 - beta^n_c), normalised to sum C (float64)."""
  n = np.asarray(class_counts, np.float64)
  if not 0 <= beta < 1:
    raise ValueError(f'beta must be in [0, 1), got {beta}')
  w = np.ones_like(n) if beta == 0 else (1.0 - beta) / -np.expm1(n * np.log(beta))
  return w / w.sum() * n.size


def ldam_margins(class_counts: Sequence[float], max_margin: float) -> np.ndarray:
  """Delta_c proportional to n_c^(-1/4), the rarest class getting `max_margin` (float64)."""
  m = np.asarray(class_counts, np.float64) ** -0.25
  return m * (max_margin / m.max())


def ib_class_weights(class_counts: Sequence[float], alpha: float) -> np.ndarray:
  """lambda_c = alpha * n_c^-1 / sum_k n_k^-1 (float64)."""
  inv = 1.0 / np.asarray(class_counts, np.float64)
  return alpha * inv / inv.sum()


def _log_softmax(z):
  return jax.nn.log_softmax(z, axis=-1)


def _ce_per_sample(z, y):
  return -jnp.sum(y * _log_softmax(z), axis=-1)


def _bce_per_sample(z, y):
  return -jnp.sum(y * jax.nn.log_sigmoid(z) + (1.0 - y) * jax.nn.log_sigmoid(-z), axis=-1)


def _nt_bce(z, y, lam):
  # log(1 - sig(lam z)) = log_sigmoid(-lam z): finite for any |z|.
  per = -(y * jax.nn.log_sigmoid(z) + (1.0 - y) / lam * jax.nn.log_sigmoid(-lam * z))
  return jnp.mean(jnp.sum(per, axis=-1))


def _focal(z, y, gamma):
  logp = _log_softmax(z)
  # 1 - p = -expm1(log p) keeps precision near p = 1; the floor keeps d(x^gamma)/dx finite
  # at x = 0 for gamma < 1 (its term is 0 there either way).
  one_minus_p = jnp.maximum(-jnp.expm1(logp), 1e-30)
  return jnp.mean(-jnp.sum(y * one_minus_p ** gamma * logp, axis=-1))


def _lade(z, y, log_pi, log_pt, pi, alpha, remine_lambda):
  f = z - log_pt
  pc = jnp.mean(_ce_per_sample(f + log_pi, y))
  mass = jnp.sum(y, axis=0)                                        # [C]
  present = mass > 0
  first = jnp.sum(y * f, axis=0) / jnp.where(present, mass, 1.0)
  log_r = jnp.log(y @ jnp.exp(log_pt - log_pi))                    # [B] importance weights
  m = jax.nn.logsumexp(f + log_r[:, None], axis=0) - jnp.log(z.shape[0])
  lader = -jnp.sum(jnp.where(present, pi * (first - m - remine_lambda * m ** 2), 0.0))
  return pc + alpha * lader


def make_table7_loss(name: str, class_counts: Sequence[float], *, bce_bias: np.ndarray | None,
                     test_prior: np.ndarray | None, **options) -> Callable:
  """loss(logits, targets, *, step=None, features=None) -> float32 scalar for a Table 7 loss.

  Args:
    name: one of TABLE7_LOSSES.
    class_counts: training images per class (every class > 0).
    bce_bias: the Bal-BCE bias [C] for 'bal_nt_bce' (from `losses.bal_bce_bias`).
    test_prior: pi^t [C] (normalised) for 'lade'; None: uniform.
    **options: DEFAULTS' keys (unknown keys raise).
  """
  unknown = sorted(set(options) - set(DEFAULTS))
  if unknown:
    raise ValueError(f'unknown loss options {unknown}; known: {sorted(DEFAULTS)}')
  o = {**DEFAULTS, **options}
  counts = np.asarray(class_counts, np.float64)
  c = counts.size
  const = lambda a: jnp.asarray(a, jnp.float32)

  if name in ('cb_ce', 'cb_bce'):
    w = const(effective_number_weights(counts, o['cb_beta']))
    per = _ce_per_sample if name == 'cb_ce' else _bce_per_sample
    core = lambda z, y, step, h: jnp.mean((y @ w) * per(z, y))
  elif name == 'focal':
    core = lambda z, y, step, h: _focal(z, y, float(o['focal_gamma']))
  elif name == 'ldam_drw':
    delta = const(ldam_margins(counts, o['ldam_max_margin']))
    w_drw = const(effective_number_weights(counts, o['drw_beta']))
    s, start = float(o['ldam_scale']), int(o['drw_start_step'])

    def core(z, y, step, h):
      w = jnp.where(_step(step) >= start, w_drw, jnp.ones_like(w_drw))
      wb = y @ w
      return jnp.sum(wb * _ce_per_sample(s * (z - delta * y), y)) / jnp.sum(wb)
  elif name == 'lade':
    pi = counts / counts.sum()
    pt = np.full(c, 1.0 / c) if test_prior is None else np.asarray(test_prior, np.float64)
    args = (const(np.log(pi)), const(np.log(pt)), const(pi), float(o['lade_alpha']),
            float(o['lade_remine_lambda']))
    core = lambda z, y, step, h: _lade(z, y, *args)
  elif name == 'ib':
    lam, start = const(ib_class_weights(counts, o['ib_alpha'])), int(o['ib_start_step'])

    def core(z, y, step, h):
      if h is None:
        raise ValueError("bft.loss='ib' needs the features h (the head's input): call the "
                         'loss with features=')
      ce = _ce_per_sample(z, y)
      influence = (jnp.sum(jnp.abs(jax.nn.softmax(z, axis=-1) - y), axis=-1)
                   * jnp.sum(jnp.abs(h.astype(jnp.float32)), axis=-1))
      ib = jnp.mean((y @ lam) * ce / (influence + IB_EPS))
      return jnp.where(_step(step) >= start, ib, jnp.mean(ce))
  elif name in ('nt_bce', 'bal_nt_bce'):
    if name == 'bal_nt_bce' and bce_bias is None:
      raise ValueError("bft.loss='bal_nt_bce' needs the Bal-BCE bias")
    bias = const(bce_bias if name == 'bal_nt_bce' else np.zeros(c))
    core = lambda z, y, step, h: _nt_bce(z + bias, y, float(o['nt_lambda']))
  else:
    raise ValueError(f'bft.loss={name!r} is not a Table 7 loss; choices: '
                     f'{", ".join(TABLE7_LOSSES)}')

  def loss_fn(logits, targets, *, step=None, features=None):
    if logits.shape[-1] != c:
      raise ValueError(f'logits have {logits.shape[-1]} classes, class_counts {c}')
    return core(logits.astype(jnp.float32), targets.astype(jnp.float32), step, features)

  return loss_fn


def _step(step):
  # Step-free calls (tests, tools) count as step 0: before any deferred phase.
  return jnp.asarray(0 if step is None else step)
