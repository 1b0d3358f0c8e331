"""Float64 NumPy transcriptions of the Table 7 losses' released code, step by step.

Each function follows one reference function (named in its docstring). Where the reference
works on class indices (torch cross_entropy with targets, LDAM's margin index) it takes `labels`
[B]; where its tensor ops take the one-hot target (LADE's class mask, IB's F.one_hot, Cui's
one_hot_labels, LiVT's BCE target) it takes y [B, C], so a soft y runs the same computation.
For index-based references `soft(...)` gives the per-class extension the library uses for soft
targets (the loss with label c, weighted by y_bc); LiVT's own mixup form of LDAM is
`ldam_livt_mixup`.
"""
import numpy as np


def log_softmax(x):
  x = np.asarray(x, np.float64)
  m = x.max(-1, keepdims=True)
  return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def bce_with_logits(x, t):
  """torch binary_cross_entropy_with_logits, reduction 'none': max(x,0) - x t + log(1 + e^-|x|)."""
  return np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))


def cross_entropy(x, labels, weight=None, reduction='mean'):
  """torch F.cross_entropy with class indices: -w_y log softmax(x)_y; 'mean' divides by sum w_y."""
  nll = -log_softmax(x)[np.arange(len(labels)), labels]
  w = np.ones(x.shape[-1]) if weight is None else np.asarray(weight, np.float64)
  wy = w[labels]
  if reduction == 'none':
    return wy * nll
  return np.sum(wy * nll) / np.sum(wy)


def cb_weights(counts, beta):
  """LiVT util/loss.py CB_CE_loss.__init__ (= Cui's src/cifar_main.py): (1 - b) / (1 - b^n),
  normalised to sum C."""
  effective_num = 1.0 - np.power(beta, np.asarray(counts, np.float64))
  w = (1.0 - beta) / effective_num
  return w / np.sum(w) * len(counts)


def cb_ce_livt(x, labels, counts, beta):
  """LiVT util/loss.py CB_CE_loss.forward: F.cross_entropy(x, target, weight=w)."""
  return cross_entropy(x, labels, cb_weights(counts, beta))


def cb_bce_livt(x, y, counts, beta):
  """LiVT util/loss.py BCE_loss(type='CB').forward: C * BCE-with-logits(x, y, weight=w) averaged
  over B x C (w broadcast over the batch: column c weighted w_c). Takes soft y as LiVT does."""
  w = cb_weights(counts, beta)
  return x.shape[-1] * np.mean(bce_with_logits(x, y) * w[None, :])


def cb_cui(x, y, counts, beta, kind):
  """richardaecn/class-balanced-loss src/cifar_main.py model_fn (one_hot_labels = y): per-sample
  weight sum_c w_c y_bc tiled over the classes; 'ce': tf.losses.softmax_cross_entropy(weights=
  w_b) (the weighted sum over the batch divided by the count of non-zero weights), 'bce':
  sum(w * sigmoid CE) / sum(labels)."""
  c = x.shape[-1]
  weights = np.tile((np.tile(cb_weights(counts, beta)[None], (len(y), 1)) * y)
                    .sum(1, keepdims=True), (1, c))
  if kind == 'ce':
    wb = weights.mean(1)
    return np.sum(wb * -(y * log_softmax(x)).sum(1)) / np.count_nonzero(wb)
  return np.sum(weights * bce_with_logits(x, y)) / np.sum(y)


def focal_ldam_drw(x, labels, gamma):
  """kaidic/LDAM-DRW losses.py FocalLoss.forward / focal_loss (weight None):
  p = exp(-CE), mean((1 - p)^gamma CE)."""
  ce = cross_entropy(x, labels, reduction='none')
  p = np.exp(-ce)
  return np.mean((1 - p) ** gamma * ce)


def focal_sample_soft(x, y, gamma):
  """focal_loss on the soft-target CE -sum_c y_c log p_c (what FocalLoss computes when torch's
  cross_entropy is given probabilities): bft.focal_form='sample' for soft targets."""
  ce = -(y * log_softmax(x)).sum(1)
  return np.mean((1 - np.exp(-ce)) ** gamma * ce)


def focal_lin_class(x, y, gamma):
  """Lin et al. (2017) Eq. 5 per class, alpha 1: mean_b -sum_c y (1 - p)^gamma log p."""
  logp = log_softmax(x)
  return np.mean(-(y * (1 - np.exp(logp)) ** gamma * logp).sum(1))


def ldam_margins(counts, max_m):
  """kaidic/LDAM-DRW LDAMLoss.__init__: 1 / n^(1/4), scaled so the largest is max_m."""
  m_list = 1.0 / np.sqrt(np.sqrt(np.asarray(counts, np.float64)))
  return m_list * (max_m / np.max(m_list))


def drw_weights(counts, beta, deferred):
  """kaidic/LDAM-DRW cifar_train.py train_rule 'DRW': betas [0, beta][idx], normalised to C."""
  b = beta if deferred else 0.0
  effective_num = 1.0 - np.power(b, np.asarray(counts, np.float64))
  w = (1.0 - b) / effective_num
  return w / np.sum(w) * len(counts)


def ldam(x, labels, counts, max_m, s, weight=None, reduction='mean'):
  """kaidic/LDAM-DRW losses.py LDAMLoss.forward: the label's logit lowered by its margin,
  F.cross_entropy(s * output, target, weight)."""
  index = np.zeros(x.shape, bool)                      # torch.zeros_like(x).scatter_(1, target, 1)
  index[np.arange(len(labels)), labels] = True
  batch_m = (ldam_margins(counts, max_m)[None, :] @ index.T.astype(np.float64)).reshape(-1, 1)
  output = np.where(index, x - batch_m, x)
  return cross_entropy(s * output, labels, weight, reduction)


def ldam_livt_mixup(x, y, counts, max_m, s):
  """LiVT util/loss.py LDAM_loss.forward for mixed targets: the top-2 target classes i1, i2 with
  values v1, v2; mean(v1 * l(i1) + v2 * l(i2)), l = forward_oneway (LDAM, no weight)."""
  idx = np.argsort(-y, axis=1, kind='stable')[:, :2]
  rows = np.arange(len(x))
  v1, v2 = y[rows, idx[:, 0]], y[rows, idx[:, 1]]
  l1 = ldam(x, idx[:, 0], counts, max_m, s, reduction='none')
  l2 = ldam(x, idx[:, 1], counts, max_m, s, reduction='none')
  return np.mean(v1 * l1 + v2 * l2)


def prior_ce(x, labels, counts):
  """hyperconnect/LADE loss/PriorCELoss.py PriorCELoss.forward: CE(x + log(prior + 1e-9), y)."""
  n = np.asarray(counts, np.float64)
  return cross_entropy(x + np.log(n / n.sum() + 1e-9), labels)


def lade_regulariser(y_pred, y, counts, remine_lambda):
  """hyperconnect/LADE loss/LADELoss.py LADELoss.forward (= LiVT util/loss.py LADE_loss), its
  class mask `target == arange(C)` (C x N) taken as y.T, which a soft y extends."""
  n = np.asarray(counts, np.float64)
  num_classes = y.shape[-1]
  prior = n / n.sum()
  balanced_prior = 1.0 / num_classes
  cls_weight = prior
  mask = y.T                                                                     # C x N
  per_cls_pred_spread = y_pred.T * mask
  pred_spread = (y_pred - np.log(prior + 1e-9) + np.log(balanced_prior + 1e-9)).T  # C x N
  num_samples_per_cls = mask.sum(-1)
  # mine_lower_bound, then remine_lower_bound
  big_n = per_cls_pred_spread.shape[-1]
  first_term = per_cls_pred_spread.sum(-1) / (num_samples_per_cls + 1e-8)
  m = pred_spread.max(-1, keepdims=True)
  second_term = (m[:, 0] + np.log(np.exp(pred_spread - m).sum(-1))) - np.log(big_n)
  estim_loss = first_term - second_term - second_term ** 2 * remine_lambda
  return -np.sum(estim_loss * cls_weight)


def prior_ce(x, y, counts):
  """hyperconnect/LADE loss/PriorCELoss.py PriorCELoss.forward: CE(x + log(prior + 1e-9), y)
  (nn.CrossEntropyLoss; with probabilities y: -sum y log softmax, mean over the batch)."""
  n = np.asarray(counts, np.float64)
  return np.mean(-(y * log_softmax(x + np.log(n / n.sum() + 1e-9))).sum(1))


def lade_hyperconnect(x, y, counts, alpha, remine_lambda):
  """hyperconnect/LADE run_networks.py batch_loss with config/*/lade.yaml: PerformanceLoss
  (PriorCELoss, weight 1) + RouteWeightLoss (LADELoss, weight alpha), both on the logits."""
  return prior_ce(x, y, counts) + alpha * lade_regulariser(x, y, counts, remine_lambda)


def ib_weights(counts, form='code'):
  """pseulki/IB-Loss cifar_train.py train_rule 'IBReweight': 1/n normalised to sum C."""
  w = 1.0 / np.asarray(counts, np.float64)
  return w / np.sum(w) * (len(counts) if form == 'code' else 1.0)


def ib(x, y, features, counts, alpha, form='code'):
  """pseulki/IB-Loss losses.py IBLoss.forward with weight=IBReweight (F.one_hot(target) taken as
  y): grads = sum|softmax - y|, ib = alpha / (grads * ||h||_1 + 0.001),
  mean(cross_entropy(weight, 'none') * ib), the CE of probabilities -sum_c w_c y_c log p_c
  (torch's form, = w_y CE for one-hot y). `features` is the head input h [B, D]; the
  reference's model returns its L1 norm (models/resnet_cifar.py)."""
  softmax = np.exp(log_softmax(x))
  grads = np.abs(softmax - y).sum(1)
  ib_ = grads * np.abs(features).sum(1)
  ib_ = alpha / (ib_ + 0.001)
  ce = -(ib_weights(counts, form)[None] * y * log_softmax(x)).sum(1)
  return np.mean(ce * ib_)


def soft(loss_of_labels, x, y):
  """The per-class extension for soft targets: sum_c y_bc * loss_b(label c), per sample, of a
  reference taking labels and returning per-sample losses; [B]."""
  total = np.zeros(len(x))
  for k in np.flatnonzero(np.any(y != 0, axis=0)):    # a class no target holds adds nothing
    total += y[:, k] * loss_of_labels(np.full(len(x), k))
  return total
