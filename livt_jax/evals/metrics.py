"""Evaluation metrics for long-tailed classification, in NumPy on the host.

- top-1 on the (balanced) test set;
- Many/Medium/Few-shot accuracy: the unweighted mean of per-class accuracy over the classes with
  > many_threshold, many_threshold..few_threshold (inclusive) and < few_threshold training
  images (paper default 100 / 20);
- ECE and MCE over `num_bins` equal-width confidence bins, confidence = max softmax probability.
"""
import numpy as np

# The metrics a model can be chosen on (`evals.<name>.select_best`), and which way is better.
SELECTABLE = {'top1': 'max', 'balanced_top1': 'max', 'many': 'max', 'medium': 'max',
              'few': 'max', 'ece': 'min', 'mce': 'min'}


def softmax(logits: np.ndarray) -> np.ndarray:
  z = logits.astype(np.float64)
  z = z - z.max(axis=-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis=-1, keepdims=True)


def shot_groups(class_counts, many_threshold: int, few_threshold: int) -> dict:
  counts = np.asarray(class_counts)
  many = counts > many_threshold
  few = counts < few_threshold
  return {'many': np.flatnonzero(many), 'medium': np.flatnonzero(~many & ~few),
          'few': np.flatnonzero(few)}


def calibration(confidence: np.ndarray, correct: np.ndarray, num_bins: int):
  """Returns (ece, mce, bins) with bins (lo, hi] as in Guo et al. 2017; empty bins are skipped."""
  edges = np.linspace(0.0, 1.0, num_bins + 1)
  which = np.clip(np.searchsorted(edges, confidence, side='left') - 1, 0, num_bins - 1)
  ece, mce, bins = 0.0, 0.0, []
  for b in range(num_bins):
    sel = which == b
    n = int(sel.sum())
    if n == 0:
      bins.append({'lo': edges[b], 'hi': edges[b + 1], 'count': 0, 'accuracy': None,
                   'confidence': None})
      continue
    acc, conf = float(correct[sel].mean()), float(confidence[sel].mean())
    gap = abs(acc - conf)
    ece += gap * n / len(confidence)
    mce = max(mce, gap)
    bins.append({'lo': edges[b], 'hi': edges[b + 1], 'count': n, 'accuracy': acc,
                 'confidence': conf})
  return ece, mce, bins


def classification_metrics(logits, labels, class_counts, *, many_threshold: int,
                           few_threshold: int, num_bins: int = 15) -> dict:
  logits, labels = np.asarray(logits), np.asarray(labels)
  num_classes = len(class_counts)
  if logits.shape[-1] != num_classes:
    raise ValueError(f'logits have {logits.shape[-1]} classes but there are {num_classes} '
                     'class counts; evaluate with the model trained on this dataset')
  probs = softmax(logits)
  pred = probs.argmax(-1)
  correct = (pred == labels).astype(np.float64)
  per_class = np.array([correct[labels == c].mean() if np.any(labels == c) else np.nan
                        for c in range(num_classes)])
  groups = shot_groups(class_counts, many_threshold, few_threshold)
  group_acc = {g: (float(np.nanmean(per_class[idx])) if len(idx) else None)
               for g, idx in groups.items()}
  ece, mce, bins = calibration(probs.max(-1), correct, num_bins)
  return {
      'top1': float(correct.mean()),
      # The mean of the per-class accuracies: top1 of a class-balanced set, and its estimate
      # from a class-imbalanced one (a larger val split: dataset.val_max_per_class).
      'balanced_top1': float(np.nanmean(per_class)), **group_acc, 'ece': ece, 'mce': mce,
      'num_examples': int(len(labels)),
      'group_sizes': {g: int(len(idx)) for g, idx in groups.items()},
      'per_class_accuracy': [None if np.isnan(a) else float(a) for a in per_class],
      'calibration_bins': bins,
  }
