"""Evaluation metrics against a plain-Python reference on fixed predictions."""
import math

import numpy as np

from livt_jax.evals import metrics


def _reference(logits, labels, counts, many, few, bins):
  n, c = len(labels), len(counts)
  probs, preds = [], []
  for row in logits.tolist():
    m = max(row)
    e = [math.exp(v - m) for v in row]
    s = sum(e)
    p = [v / s for v in e]
    probs.append(max(p))
    preds.append(p.index(max(p)))
  correct = [int(p == y) for p, y in zip(preds, labels)]
  per_class = []
  for k in range(c):
    idx = [i for i in range(n) if labels[i] == k]
    per_class.append(sum(correct[i] for i in idx) / len(idx))
  group = lambda sel: sum(per_class[k] for k in sel) / len(sel)
  many_c = [k for k in range(c) if counts[k] > many]
  few_c = [k for k in range(c) if counts[k] < few]
  med_c = [k for k in range(c) if few <= counts[k] <= many]
  ece, mce = 0.0, 0.0
  for b in range(bins):
    lo, hi = b / bins, (b + 1) / bins
    idx = [i for i in range(n) if (lo < probs[i] <= hi) or (b == 0 and probs[i] == 0)]
    if not idx:
      continue
    acc = sum(correct[i] for i in idx) / len(idx)
    conf = sum(probs[i] for i in idx) / len(idx)
    ece += abs(acc - conf) * len(idx) / n
    mce = max(mce, abs(acc - conf))
  return sum(correct) / n, group(many_c), group(med_c), group(few_c), ece, mce, per_class


def test_metrics_match_reference():
  rng = np.random.default_rng(0)
  counts = np.array([500, 300, 101, 100, 50, 20, 19, 5])
  labels = np.repeat(np.arange(8), 25)
  logits = rng.normal(size=(200, 8)) * 2
  logits[np.arange(200), labels] += rng.uniform(0, 3, 200)  # better than chance, not perfect
  got = metrics.classification_metrics(logits, labels, counts, many_threshold=100,
                                       few_threshold=20, num_bins=15)
  top1, many, med, few, ece, mce, per_class = _reference(logits, labels, counts, 100, 20, 15)
  np.testing.assert_allclose(
      [got['top1'], got['many'], got['medium'], got['few'], got['ece'], got['mce']],
      [top1, many, med, few, ece, mce], rtol=1e-12)
  np.testing.assert_allclose(got['per_class_accuracy'], per_class)
  assert got['group_sizes'] == {'many': 3, 'medium': 3, 'few': 2}  # 100 and 20 are Medium
  assert 0 < got['ece'] < got['mce'] < 1


def test_balanced_top1_is_the_mean_of_per_class_accuracies_on_an_imbalanced_set():
  rng = np.random.default_rng(1)
  counts = np.array([500, 100, 10])
  labels = np.repeat(np.arange(3), [10, 40, 150])  # imbalanced: top1 != balanced top1
  logits = rng.normal(size=(200, 3))
  logits[np.arange(200), labels] += np.where(labels == 2, 3.0, 0.3)  # the big class is easy
  got = metrics.classification_metrics(logits, labels, counts, many_threshold=100,
                                       few_threshold=20, num_bins=15)
  top1, _, _, _, _, _, per_class = _reference(logits, labels, counts, 100, 20, 15)
  assert got['top1'] == top1
  assert abs(got['balanced_top1'] - sum(per_class) / 3) < 1e-12
  assert got['balanced_top1'] < got['top1'] - 0.05
  balanced = metrics.classification_metrics(logits[:30], np.arange(30) % 3, counts,
                                            many_threshold=100, few_threshold=20)
  assert abs(balanced['balanced_top1'] - balanced['top1']) < 1e-12


def test_perfectly_confident_and_right_is_calibrated():
  labels = np.arange(10) % 5
  logits = np.full((10, 5), -1e4)
  logits[np.arange(10), labels] = 1e4
  got = metrics.classification_metrics(logits, labels, [200, 200, 50, 50, 5],
                                       many_threshold=100, few_threshold=20)
  assert got['top1'] == 1.0 and got['ece'] == 0.0 and got['mce'] == 0.0
  assert got['few'] == 1.0
