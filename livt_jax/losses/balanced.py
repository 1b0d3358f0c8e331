"""Classification losses of LiVT's Balanced Fine-Tuning, with soft (mixup / smoothed) targets.

Notation: logits z [B, C], targets y [B, C], class counts n_c, training prior
pi_c = n_c / sum(n), test prior pi^t (uniform 1/C unless given), tau the bias scale.

  CE      (Eq. 1):  L = mean_b  -sum_c y_bc log softmax(z_b)_c
  Bal-CE  (Eq. 3):  CE on z + B^ce,  B^ce_c = tau * log pi_c   (Thm. 1; tau = 1 is Eq. 3; the
                    released code scales it by its bal_tau too)
  BCE     (Eq. 5):  L = mean_b  sum_c -[y log sig(z) + (1 - y) log(1 - sig(z))]
                    (summed over classes, averaged over the batch, as the released code's
                    `C * binary_cross_entropy_with_logits(reduction='mean')`; w_c = 1)
  Bal-BCE (Eq. 6):  BCE on z + B^bce, with one of
    'paper' (Eq. 10, the default):  B_c = tau * (log pi_c - log(1 - pi_c) + log(C - 1))
        = Thm. 3 with a uniform test prior pi^t = 1/C (Alg. 1, line 16: z + tau * B);
    'paper' with `test_prior` (Thm. 3):
        B_c = tau * ((log pi_c - log pi^t_c) - (log(1 - pi_c) - log(1 - pi^t_c)));
    'official' (Thm. 2 / Eq. 6, as in the released code, util/loss.py):
        B_c = log pi_c - log(1 - pi_c),  tau ignored.
    The two forms differ by the constant log(C - 1) on every logit. For a balanced test set it
    does not move the optimum (the paper: "no expected difference"), but it changes where the
    sigmoid saturates early in training, which the paper credits with better stability for
    large C; and 'official' has no tau (Places-LT's tau = 1.05 has no effect there).

Gradients (Appendix B): d BCE / dz = (sig(z + B) - y) / B_size and
d CE / dz = (softmax(z + B) - y) / B_size when every target row sums to 1.

The bias is computed once in float64 NumPy and added to the logits as a float32 constant inside
the loss function, i.e. in the training loss only; evaluation uses the raw logits.

The test prior pi^t comes from `bft.test_prior` (`test_prior_from_config`): 'uniform' (Eq. 10),
'train' (pi^t = pi: the bias vanishes, Bal-BCE is BCE and Bal-CE is CE), or one weight per
class. 'bal_ce' then uses tau * (log pi - log pi^t) (the logit adjustment of Thm. 1 for a
shifted test prior), 'bal_bce' Thm. 3.

The Table 7 losses (class-balanced, focal, LDAM-DRW, LADE, IB, NT-BCE) are in
`table7.py`; `make_loss_fn` builds every one of them.
"""
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from livt_jax.losses import table7
from livt_jax.losses.table7 import NEEDS_FEATURES, NEEDS_STEP  # pylint: disable=unused-import

BASE_LOSSES = ('ce', 'bal_ce', 'bce', 'bal_bce')
LOSSES = BASE_LOSSES + table7.TABLE7_LOSSES
BIAS_FORMS = ('paper', 'official')
# Losses whose bias or estimate depends on the test prior (bft.test_prior).
USES_TEST_PRIOR = ('bal_ce', 'bal_bce', 'lade', 'bal_nt_bce')

# loss(logits [B, C], targets [B, C], *, step=None, features=None) -> float32 scalar.
LossFn = Callable[..., jax.Array]


def one_hot(labels: jax.Array, num_classes: int, smoothing: float = 0.0) -> jax.Array:
  """Smoothed one-hot targets [B, C] (float32): off = smoothing / C, on = 1 - smoothing + off."""
  off = smoothing / num_classes
  on = 1.0 - smoothing + off
  hot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  return hot * (on - off) + off


def softmax_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Soft-target cross-entropy (Eq. 1), averaged over the batch; float32 scalar."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return jnp.mean(-jnp.sum(targets.astype(jnp.float32) * logp, axis=-1))


def sigmoid_bce(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Binary cross-entropy with logits (Eq. 5), summed over classes, mean over the batch."""
  z = logits.astype(jnp.float32)
  y = targets.astype(jnp.float32)
  # log(1 - sig(z)) = log_sigmoid(-z): both terms stay finite for any |z|.
  per = -(y * jax.nn.log_sigmoid(z) + (1.0 - y) * jax.nn.log_sigmoid(-z))
  return jnp.mean(jnp.sum(per, axis=-1))


def class_prior(class_counts: Sequence[float]) -> np.ndarray:
  """pi = n / sum(n) in float64; every class needs at least one training image."""
  counts = np.asarray(class_counts, dtype=np.float64).reshape(-1)
  if counts.size == 0:
    raise ValueError('class_counts is empty')
  bad = np.flatnonzero(~(counts > 0))
  if bad.size:
    raise ValueError(
        f'class_counts must be > 0 for every class for a balanced loss (log pi); classes '
        f'{bad[:10].tolist()} have {counts[bad[:10]].tolist()} training images')
  return counts / counts.sum()


def bal_ce_bias(class_counts: Sequence[float]) -> np.ndarray:
  """B^ce = log pi (Thm. 1 / Eq. 3), float64 [C]."""
  return np.log(class_prior(class_counts))


def bal_bce_bias(class_counts: Sequence[float], tau: float = 1.0, form: str = 'paper',
                 test_prior: Sequence[float] | None = None) -> np.ndarray:
  """The Bal-BCE logit bias (float64 [C]); see the module docstring for the forms.

  Args:
    class_counts: training images per class.
    tau: scale of the bias (Alg. 1, line 16); ignored by form='official'.
    form: 'paper' (Eq. 10, or Thm. 3 with `test_prior`) or 'official' (released code).
    test_prior: optional test class distribution pi^t (normalised here) for Thm. 3.
  """
  if form not in BIAS_FORMS:
    raise ValueError(f'bft.bias_form={form!r} is not known; choices: {", ".join(BIAS_FORMS)}')
  pi = class_prior(class_counts)
  c = pi.size
  if c < 2:
    raise ValueError(f'a Bal-BCE bias needs at least 2 classes, got {c}')
  if form == 'official':
    if test_prior is not None:
      raise ValueError("bal_bce_bias: test_prior needs form='paper' (Thm. 3)")
    return np.log(pi) - np.log1p(-pi)
  if test_prior is None:
    return tau * (np.log(pi) - np.log1p(-pi) + np.log(c - 1))
  pt = class_prior(test_prior)
  if pt.size != c:
    raise ValueError(f'test_prior has {pt.size} classes, class_counts {c}')
  return tau * ((np.log(pi) - np.log(pt)) - (np.log1p(-pi) - np.log1p(-pt)))


def test_prior_from_config(spec, class_counts: Sequence[float]) -> np.ndarray | None:
  """pi^t of `bft.test_prior`: None for 'uniform', pi for 'train', else C weights (normalised).

  `spec` is 'uniform', 'train', a comma-separated string of C positive weights (the command
  line form, e.g. '10,5,1'), or a sequence of them.
  """
  if isinstance(spec, str):
    key = spec.strip().lower()
    if key == 'uniform':
      return None
    if key == 'train':
      return class_prior(class_counts)
    try:
      spec = [float(v) for v in key.split(',')]
    except ValueError:
      raise ValueError(f"bft.test_prior={spec!r}: use 'uniform', 'train' or one weight per "
                       "class, e.g. '10,5,1'") from None
  weights = np.asarray(spec, np.float64).reshape(-1)
  if weights.size != len(class_counts) or not np.all(np.isfinite(weights) & (weights > 0)):
    raise ValueError(f'bft.test_prior has {weights.size} weights {weights.tolist()[:10]}: use '
                     f'{len(class_counts)} positive numbers (one per class), or uniform / train')
  return weights / weights.sum()


PRIOR_INIT_LOSSES = ('bce', 'bal_bce')


def prior_head_bias(name: str, class_counts: Sequence[float], tau: float = 1.0,
                    bias_form: str = 'paper', test_prior: Sequence[float] | None = None
                    ) -> np.ndarray:
  """`bft.head_bias_init='prior'`: the head bias b at which the training loss starts calibrated.

  Sigmoid losses start at p = 0.5 for every class when the head's bias is zero, so the first
  steps are spent pushing every logit down, the rare classes' furthest (each of their few
  positives faces many negatives). Lin et al. (2017, "prior probability" init) start the bias
  where the loss's probabilities equal the class shares instead: sig(b_y + o_y) = pi_y, o_y the
  loss's own logit adjustment (0 for bce, tau * B_y for bal_bce), so b_y = logit(pi_y) - o_y.
  For Bal-BCE (Eq. 10) with tau = 1 that is the same -log(C - 1) for every class: test-time
  predictions (raw logits) start uniform. Float64 [C].
  """
  if name not in PRIOR_INIT_LOSSES:
    raise ValueError(f"bft.head_bias_init='prior' is for the sigmoid losses "
                     f"{', '.join(PRIOR_INIT_LOSSES)}, not bft.loss={name!r}; use 'zero'")
  pi = class_prior(class_counts)
  offset = 0.0 if name == 'bce' else bal_bce_bias(class_counts, tau, bias_form, test_prior)
  return (np.log(pi) - np.log1p(-pi)) - offset


def training_bias(name: str, class_counts: Sequence[float], tau: float = 1.0,
                  bias_form: str = 'paper', test_prior: Sequence[float] | None = None
                  ) -> np.ndarray:
  """The logit bias 'bal_ce' or 'bal_bce' adds in the training loss only (float64 [C])."""
  if name == 'bal_ce':
    pt = None if test_prior is None else class_prior(test_prior)
    return tau * (bal_ce_bias(class_counts) - (0.0 if pt is None else np.log(pt)))
  if name == 'bal_bce':
    return bal_bce_bias(class_counts, tau, bias_form, test_prior)
  raise ValueError(f'training_bias is for bal_ce and bal_bce, not {name!r}')


def _smoothing_span(name: str, smoothing: float, num_classes: int) -> float:
  """How far apart the smoothed targets put a positive and a negative logit (the link's units)."""
  off = smoothing / num_classes
  on = 1.0 - smoothing + off
  if name == 'bal_ce':  # softmax: logits are fixed up to a constant per image
    return float(np.log(on) - np.log(off))
  return float(np.log(on) - np.log1p(-on) - (np.log(off) - np.log1p(-off)))


def smoothing_inversion_note(name: str, class_counts: Sequence[float], smoothing: float,
                             tau: float = 1.0, bias_form: str = 'paper',
                             test_prior: Sequence[float] | None = None) -> str | None:
  """A warning when label smoothing and a balanced loss's bias invert the raw logits' order.

  Smoothing sets every negative target to eps / C in the loss's (biased) space, so the raw
  logit it asks of class k on an image of class y is link(eps / C) - B_k, against
  link(1 - eps + eps / C) - B_y for class y itself. When the bias spans more than the targets,
  max(B) - min(B) > link(on) - link(off), the rarest class's raw logit is trained to exceed the
  head class's own on the head's images, and test time (raw logits) ranks them that way. Few
  classes make it likely: eps / C is then large (Fashion-MNIST-LT, 10 classes, tau 1.5, eps
  0.1: val top-1 74.0 instead of 84.3). Returns None when the order holds.
  """
  if name not in ('bal_ce', 'bal_bce') or not smoothing > 0:
    return None
  bias = training_bias(name, class_counts, tau, bias_form, test_prior)
  c = bias.size
  spread = float(bias.max() - bias.min())
  if _smoothing_span(name, smoothing, c) >= spread:
    return None
  lo, hi = 0.0, float(smoothing)  # the span falls as eps grows: bisect for the largest safe eps
  for _ in range(60):
    mid = 0.5 * (lo + hi)
    lo, hi = (mid, hi) if _smoothing_span(name, mid, c) >= spread else (lo, mid)
  counts = np.asarray(class_counts, dtype=np.float64).reshape(-1)
  rare, head = int(np.argmin(bias)), int(np.argmax(bias))
  scale = '' if name == 'bal_bce' and bias_form == 'official' else f' (tau {tau:g})'
  return (f'bft.label_smoothing={smoothing:g} with bft.loss={name}{scale} on {c} '
          f'classes: the smoothed targets train the raw logit of class {rare} '
          f'({counts[rare]:g} images) to exceed class {head}\'s ({counts[head]:g}) on class '
          f"{head}'s own images (the bias spans {spread:.2f}, the targets "
          f'{_smoothing_span(name, smoothing, c):.2f}), and test time uses the raw logits. '
          f'Use --config.bft.label_smoothing={np.floor(lo * 1e4) / 1e4:g} or less (or 0).')


def make_loss_fn(name: str, class_counts: Sequence[float] | None = None, tau: float = 1.0,
                 bias_form: str = 'paper', test_prior: Sequence[float] | None = None,
                 **options) -> LossFn:
  """Returns loss(logits [B, C], targets [B, C], *, step=None, features=None) for `bft.loss`.

  'bal_ce' uses tau * (log pi - log pi^t) (tau = 1, uniform pi^t: Eq. 3); 'bal_bce' uses
  `bal_bce_bias(..., tau, bias_form, test_prior)`; the Table 7 losses take `options`
  (`table7.DEFAULTS`). Biases are constants of the returned function. `step` (the train
  step) matters for NEEDS_STEP losses only, `features` (the head's input) for NEEDS_FEATURES.
  """
  if name not in LOSSES:
    raise ValueError(f'bft.loss={name!r} is not known; choices: {", ".join(LOSSES)}')
  if name in ('ce', 'bce'):
    base = softmax_cross_entropy if name == 'ce' else sigmoid_bce
    return lambda logits, targets, *, step=None, features=None: base(logits, targets)
  if class_counts is None:
    raise ValueError(f'bft.loss={name!r} needs the training class counts')
  pt = None if test_prior is None else class_prior(test_prior)
  if pt is not None and pt.size != len(class_counts):
    raise ValueError(f'test_prior has {pt.size} classes, class_counts {len(class_counts)}')
  if name in table7.TABLE7_LOSSES:
    bce_bias = (bal_bce_bias(class_counts, tau, bias_form, pt) if name == 'bal_nt_bce'
                else None)
    return table7.make_table7_loss(name, class_counts, bce_bias=bce_bias,
                                          test_prior=pt, **options)
  bias_np = training_bias(name, class_counts, tau, bias_form, pt)
  base = softmax_cross_entropy if name == 'bal_ce' else sigmoid_bce
  num_classes = bias_np.size
  bias = jnp.asarray(bias_np, jnp.float32)

  def loss_fn(logits: jax.Array, targets: jax.Array, *, step=None, features=None) -> jax.Array:
    del step, features  # not used by the balanced losses
    if logits.shape[-1] != num_classes:
      raise ValueError(f'logits have {logits.shape[-1]} classes, class_counts {num_classes}')
    return base(logits.astype(jnp.float32) + bias, targets)

  return loss_fn
