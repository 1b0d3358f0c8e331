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
"""
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

LOSSES = ('ce', 'bal_ce', 'bce', 'bal_bce')
BIAS_FORMS = ('paper', 'official')

LossFn = Callable[[jax.Array, jax.Array], jax.Array]


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


def make_loss_fn(name: str, class_counts: Sequence[float] | None = None, tau: float = 1.0,
                 bias_form: str = 'paper') -> LossFn:
  """Returns loss(logits [B, C], targets [B, C]) -> float32 scalar for `bft.loss` = name.

  'bal_ce' uses tau * log pi (tau = 1: Eq. 3); 'bal_bce' uses `bal_bce_bias(..., tau,
  bias_form)`. The bias is a constant of the returned function.
  """
  if name not in LOSSES:
    raise ValueError(f'bft.loss={name!r} is not known; choices: {", ".join(LOSSES)}')
  if name in ('ce', 'bce'):
    return softmax_cross_entropy if name == 'ce' else sigmoid_bce
  if class_counts is None:
    raise ValueError(f'bft.loss={name!r} needs the training class counts')
  if name == 'bal_ce':
    bias_np, base = tau * bal_ce_bias(class_counts), softmax_cross_entropy
  else:
    bias_np, base = bal_bce_bias(class_counts, tau, bias_form), sigmoid_bce
  num_classes = bias_np.size
  bias = jnp.asarray(bias_np, jnp.float32)

  def loss_fn(logits: jax.Array, targets: jax.Array) -> jax.Array:
    if logits.shape[-1] != num_classes:
      raise ValueError(f'logits have {logits.shape[-1]} classes, class_counts {num_classes}')
    return base(logits.astype(jnp.float32) + bias, targets)

  return loss_fn
