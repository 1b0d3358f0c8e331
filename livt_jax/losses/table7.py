"""The re-balancing losses of the paper's Table 7 and Appendix E.2, selected by `bft.loss`.

Each loss is written from its authors' released code (cited in the builder's docstring; the
reference computations are transcribed into float64 NumPy in tests/table7_reference.py).
docs/losses.md tabulates the references, where paper and code differ, and the options.

Notation as in `balanced.py`: logits z [B, C], soft targets y [B, C] (one-hot, smoothed or mixed),
class counts n_c, training prior pi_c = n_c / sum(n). The released codes take class indices;
for soft targets every loss here is the reference's per-class term weighted by y_bc (so a
one-hot y gives the reference exactly, and a two-class mixup target gives LiVT's
`lam * loss(y1) + (1 - lam) * loss(y2)`, its way of feeding mixup to LDAM / MiSLAS).

  cb_ce, cb_bce   Class-balanced (Cui et al. 2019); w_c = (1 - beta) / (1 - beta^n_c),
                  normalised to sum C. `cb_form`:
                    'livt' (default; LiVT util/loss.py, the likely source of Table 7's CB row):
                      cb_ce  = sum_bc w_c y_bc (-log p_bc) / sum_bc w_c y_bc   (torch weighted CE)
                      cb_bce = mean_b sum_c w_c bce(z_bc, y_bc)          (column c weighted w_c)
                    'cui' (richardaecn/class-balanced-loss, the per-sample weight w_b = y_b . w):
                      cb_ce  = mean_b w_b CE_b;  cb_bce = sum_bc w_b bce_bc / sum_bc y_bc.
  focal           `focal_form` 'sample' (default; kaidic/LDAM-DRW focal_loss):
                  mean_b (1 - e^-CE_b)^gamma CE_b;  'class' (Lin et al. 2017, Eq. 5 per class):
                  mean_b -sum_c y_bc (1 - p_bc)^gamma log p_bc. Equal for one-hot targets.
  ldam_drw        LDAM (kaidic/LDAM-DRW LDAMLoss): Delta_c = m_max n_c^(-1/4) / max_k n_k^(-1/4),
                  l_bc = CE(s (z_b - Delta_c e_c), c);  L = sum_bc v_bc l_bc / sum_bc v_bc,
                  v_bc = y_bc w_c with w = 1 before the DRW step and the class-balanced weights
                  (beta drw_beta) from it (`drw=False`: w = 1 always, LiVT's LDAM_loss).
  lade            LADE (hyperconnect/LADE PriorCELoss + LADELoss): with g = z (shifted by
                  log(1/C) - log pi^t for a non-uniform test prior),
                  L = CE(g + log pi, y) + alpha * R,  R = -sum_c pi_c (T1_c - T2_c - lam T2_c^2),
                  T1_c = sum_b y_bc g_bc / sum_b y_bc (0 for a class absent from the batch),
                  T2_c = logsumexp_b (g_bc - log pi_c + log 1/C) - log B, over every class.
                  `lade_form='livt'`: R alone (LiVT util/loss.py LADE_loss; alpha unused).
  ib              Influence-balanced (pseulki/IB-Loss IBLoss): after the IB start step
                  L = mean_b (alpha / (||softmax(z_b) - y_b||_1 ||h_b||_1 + 1e-3))
                              * sum_c w_c y_bc (-log p_bc),
                  w_c = n_c^-1 normalised to sum C (`ib_weights='code'`) or to sum 1
                  ('paper': lambda_k = alpha n_k^-1 / sum n^-1, the paper's formula as we
                  transcribed it earlier; docs/losses.md);
                  plain CE before the start step. Gradients flow through the influence term,
                  as in the reference (nothing is detached there).
  nt_bce          Negative-tolerant BCE (Wu et al. 2020; LiVT Appendix E.2):
                  L = mean_b sum_c [ y log(1 + e^-z) + (1 - y) / lambda * log(1 + e^{lambda z}) ].
  bal_nt_bce      NT-BCE* (E.2): nt_bce on z + B with B the Bal-BCE bias of `balanced.py`.

All losses return float32 scalars; weights, margins and priors are float64 NumPy constants.
"""
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from livt_jax.losses import margin

TABLE7_LOSSES = ('cb_ce', 'cb_bce', 'focal', 'ldam_drw', 'lade', 'ib', 'nt_bce', 'bal_nt_bce')
# Losses that need the head's input features (`features=` of the loss function).
NEEDS_FEATURES = ('ib',)
# Losses that depend on the train step (`step=` of the loss function).
NEEDS_STEP = ('ldam_drw', 'ib')
IB_EPS = 1e-3  # pseulki/IB-Loss IBLoss.epsilon

# Hyper-parameters of make_table7_loss and their defaults (config: bft.<name>).
DEFAULTS = dict(cb_beta=0.9999, cb_form='livt', focal_gamma=2.0, focal_form='sample',
                ldam_max_margin=0.5, ldam_scale=30.0, drw=True, drw_beta=0.9999,
                drw_start_step=0, lade_alpha=0.1, lade_remine_lambda=0.1,
                lade_form='hyperconnect', ib_alpha=1000.0, ib_weights='code', ib_start_step=0,
                nt_lambda=2.0)
# The string options and their choices (the first is the default).
FORMS = dict(cb_form=('livt', 'cui'), focal_form=('sample', 'class'),
             lade_form=('hyperconnect', 'livt'), ib_weights=('code', 'paper'))


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


def ib_class_weights(class_counts: Sequence[float], form: str = 'code') -> np.ndarray:
  """IB's class weights n_c^-1, normalised to sum C ('code': IBReweight) or 1 ('paper')."""
  inv = 1.0 / np.asarray(class_counts, np.float64)
  return inv / inv.sum() * (inv.size if form == 'code' else 1.0)


def _log_softmax(z):
  return jax.nn.log_softmax(z, axis=-1)


def _bce_terms(z, y):
  # -[y log sig(z) + (1 - y) log(1 - sig(z))], finite for any |z|.
  return -(y * jax.nn.log_sigmoid(z) + (1.0 - y) * jax.nn.log_sigmoid(-z))


def _cb(z, y, w, kind, form):
  if kind == 'ce':
    terms = -y * _log_softmax(z)                                   # [B, C]
    if form == 'livt':  # torch cross_entropy(weight=w): a w-weighted mean over the batch
      return jnp.sum(terms * w) / jnp.sum(y * w)
    return jnp.mean((y @ w) * jnp.sum(terms, axis=-1))
  terms = _bce_terms(z, y)
  if form == 'livt':  # C * binary_cross_entropy_with_logits(weight=w), mean over B x C
    return jnp.mean(jnp.sum(terms * w, axis=-1))
  return jnp.sum((y @ w)[:, None] * terms) / jnp.sum(y)


def _focal(z, y, gamma, form):
  logp = _log_softmax(z)
  # The floor keeps d(x^gamma)/dx finite at x = 0 for gamma < 1 (its term is 0 there anyway).
  if form == 'sample':
    ce = -jnp.sum(y * logp, axis=-1)
    return jnp.mean(jnp.maximum(-jnp.expm1(-ce), 1e-30) ** gamma * ce)
  one_minus_p = jnp.maximum(-jnp.expm1(logp), 1e-30)  # 1 - p, precise near p = 1
  return jnp.mean(-jnp.sum(y * one_minus_p ** gamma * logp, axis=-1))


def _ib(z, y, h, w, alpha, eps):
  ce = -jnp.sum(w * y * _log_softmax(z), axis=-1)
  influence = (jnp.sum(jnp.abs(jax.nn.softmax(z, axis=-1) - y), axis=-1)
               * jnp.sum(jnp.abs(h.astype(jnp.float32)), axis=-1))
  return jnp.mean(ce * alpha / (influence + eps))


def _nt_bce(z, y, lam):
  # log(1 - sig(lam z)) = log_sigmoid(-lam z): finite for any |z|.
  per = -(y * jax.nn.log_sigmoid(z) + (1.0 - y) / lam * jax.nn.log_sigmoid(-lam * z))
  return jnp.mean(jnp.sum(per, axis=-1))


def check_options(options: dict) -> dict:
  """DEFAULTS updated with `options`; unknown keys and unknown forms raise ValueError."""
  unknown = sorted(set(options) - set(DEFAULTS))
  if unknown:
    raise ValueError(f'unknown loss options {unknown}; known: {sorted(DEFAULTS)}')
  o = {**DEFAULTS, **options}
  for key, choices in FORMS.items():
    if o[key] not in choices:
      raise ValueError(f'bft.{key}={o[key]!r}: use one of {", ".join(choices)}')
  return o


def make_table7_loss(name: str, class_counts: Sequence[float], *, bce_bias: np.ndarray | None,
                     test_prior: np.ndarray | None, **options) -> Callable:
  """loss(logits, targets, *, step=None, features=None) -> float32 scalar for a Table 7 loss.

  References (repository, file, function) followed by each loss:
    cb_ce / cb_bce  XuZhengzhuo/LiVT util/loss.py CB_CE_loss.forward and BCE_loss(type='CB')
                    ('livt'); richardaecn/class-balanced-loss src/cifar_main.py model_fn's
                    softmax / sigmoid branches ('cui').
    focal           kaidic/LDAM-DRW losses.py focal_loss / FocalLoss ('sample').
    ldam_drw        kaidic/LDAM-DRW losses.py LDAMLoss.forward, cifar_train.py's 'DRW' rule;
                    LiVT util/loss.py LDAM_loss.forward for mixed targets.
    lade            hyperconnect/LADE loss/PriorCELoss.py PriorCELoss.forward and
                    loss/LADELoss.py LADELoss.forward (weights 1 and alpha as in its
                    config/*/lade.yaml); LiVT util/loss.py LADE_loss.forward ('livt').
    ib              pseulki/IB-Loss losses.py IBLoss.forward, cifar_train.py's 'IBReweight'
                    weights and start_ib_epoch switch.

  Args:
    name: one of TABLE7_LOSSES.
    class_counts: training images per class (every class > 0).
    bce_bias: the Bal-BCE bias [C] for 'bal_nt_bce' (from `losses.bal_bce_bias`).
    test_prior: pi^t [C] (normalised) for 'lade'; None: uniform.
    **options: DEFAULTS' keys (unknown keys raise).
  """
  o = check_options(options)
  counts = np.asarray(class_counts, np.float64)
  c = counts.size
  const = lambda a: jnp.asarray(a, jnp.float32)

  if name in ('cb_ce', 'cb_bce'):
    w, kind, form = const(effective_number_weights(counts, o['cb_beta'])), name[3:], o['cb_form']
    core = lambda z, y, step, h: _cb(z, y, w, kind, form)
  elif name == 'focal':
    gamma, form = float(o['focal_gamma']), o['focal_form']
    core = lambda z, y, step, h: _focal(z, y, gamma, form)
  elif name == 'ldam_drw':
    delta = const(ldam_margins(counts, o['ldam_max_margin']))
    w_drw = const(effective_number_weights(counts, o['drw_beta']) if o['drw'] else np.ones(c))
    s, start = float(o['ldam_scale']), int(o['drw_start_step'])

    def core(z, y, step, h):
      w = jnp.where(_step(step) >= start, w_drw, jnp.ones_like(w_drw))
      v = y * w
      return jnp.sum(v * margin.ldam_per_class(z, delta, s)) / jnp.sum(v)
  elif name == 'lade':
    core = margin.make_lade(counts, test_prior, o['lade_alpha'],
                                   o['lade_remine_lambda'], o['lade_form'])
  elif name == 'ib':
    w = const(ib_class_weights(counts, o['ib_weights']))
    alpha, start = float(o['ib_alpha']), int(o['ib_start_step'])

    def core(z, y, step, h):
      if h is None:
        raise ValueError("bft.loss='ib' needs the features h (the head's input): call the "
                         'loss with features=')
      plain = jnp.mean(-jnp.sum(y * _log_softmax(z), axis=-1))
      return jnp.where(_step(step) >= start, _ib(z, y, h, w, alpha, IB_EPS), plain)
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
