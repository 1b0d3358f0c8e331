"""Exponential long-tailed subsampling (Cui et al. 2019 / Cao et al. 2019 rule).

Class at rank i (0 = head) keeps int(n_max * gamma ** (-i / (C - 1))) images. We select by
precomputing an index array once, so the training pipeline reads a fixed subset and never
filters per epoch.
"""
from typing import Optional, Sequence

import numpy as np

CLASS_ORDERS = ('natural', 'shuffled')


def lt_class_sizes(n_max: int, num_classes: int, imbalance: float) -> list[int]:
  """Images kept per class rank, head first.

  Args:
    n_max: images of the largest (rank 0) class.
    num_classes: C.
    imbalance: gamma = n_max / n_min (>= 1; 1 gives a balanced set).

  Returns:
    C integers, non-increasing.
  """
  if num_classes < 1:
    raise ValueError(f'num_classes must be >= 1, got {num_classes}')
  if imbalance < 1:
    raise ValueError(f'dataset.imbalance must be >= 1 (gamma = n_max / n_min), got {imbalance}')
  if num_classes == 1:
    return [int(n_max)]
  return [int(n_max * imbalance ** (-i / (num_classes - 1))) for i in range(num_classes)]


def class_order_permutation(mode: str, num_classes: int, seed: int = 0) -> np.ndarray:
  """Which class gets which LT size: result[rank] is the class id at that rank.

  Args:
    mode: 'natural' (class 0 is the head) or 'shuffled' (a seeded random permutation, so
      the head is not always the same semantic class).
    num_classes: C.
    seed: used by 'shuffled' only.
  """
  if mode == 'natural':
    return np.arange(num_classes)
  if mode == 'shuffled':
    return np.random.default_rng(seed).permutation(num_classes)
  raise ValueError(f'dataset.class_order={mode!r} is not one of {", ".join(CLASS_ORDERS)}')


def lt_subsample_indices(labels: np.ndarray, sizes: Sequence[int],
                         class_order: Optional[Sequence[int]] = None,
                         seed: int = 0) -> np.ndarray:
  """Indices of a seeded random LT subset of a labelled set.

  Args:
    labels: int labels of the full (balanced) set, shape [N].
    sizes: images to keep per rank (from `lt_class_sizes`).
    class_order: class_order[rank] = the class that keeps sizes[rank] images; None means
      natural order (class i at rank i).
    seed: which images of each class are kept.

  Returns:
    Sorted int64 indices into `labels` (sorted so reads stay in storage order).

  Raises:
    ValueError: if a class has fewer images than its size asks for, or the order is not a
      permutation of the classes.
  """
  labels = np.asarray(labels)
  num_classes = len(sizes)
  order = np.arange(num_classes) if class_order is None else np.asarray(class_order)
  if sorted(order.tolist()) != list(range(num_classes)):
    raise ValueError(f'class_order must be a permutation of 0..{num_classes - 1}, got {order}')
  # One child generator per class: the subset of one class does not change when another
  # class's size changes (e.g. a different imbalance factor keeps a nested head subset).
  children = np.random.SeedSequence(seed).spawn(num_classes)
  kept = []
  for rank, cls in enumerate(order):
    candidates = np.flatnonzero(labels == cls)
    if len(candidates) < sizes[rank]:
      raise ValueError(
          f'class {cls} has {len(candidates)} images but the LT rule keeps {sizes[rank]}')
    rng = np.random.default_rng(children[cls])
    kept.append(rng.choice(candidates, size=sizes[rank], replace=False))
  return np.sort(np.concatenate(kept).astype(np.int64))


def lt_split(labels: np.ndarray, sizes: Sequence[int], class_order: Optional[Sequence[int]],
             seed: int, val_per_class: int,
             val_max_per_class: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """The LT training subset and a validation set from the images it left unused.

  Every class gives `val_per_class` validation images drawn from the images the LT rule does
  not keep, so validation is disjoint from the training subset (and from test, a separate
  split). A class the rule keeps (nearly) whole, with fewer than `val_per_class` images left
  over (always the head: n_max of n_max), keeps `len(class) - val_per_class` instead; every
  other class keeps exactly the images it keeps without validation, so the LT subset stays the
  published one except for that cap.

  `val_max_per_class` > val_per_class adds, per class, up to val_max_per_class - val_per_class
  more of its unused images (a draw of its own: the balanced val above and the training subset
  stay the same). Val is then class-imbalanced (the head has nothing left: val_per_class only),
  which the class-balanced top-1 (`metrics.classification_metrics`) accounts for.

  Returns:
    (train_indices, val_indices), both sorted int64 indices into `labels`; val is empty when
    val_per_class is 0.
  """
  labels = np.asarray(labels)
  order = np.arange(len(sizes)) if class_order is None else np.asarray(class_order)
  if val_per_class < 0:
    raise ValueError(f'dataset.val_per_class must be >= 0, got {val_per_class}')
  totals = np.bincount(labels, minlength=len(sizes))
  capped = [min(int(size), int(totals[cls]) - val_per_class) for size, cls in zip(sizes, order)]
  if val_per_class and min(capped) < 1:
    raise ValueError(
        f'dataset.val_per_class={val_per_class} leaves a class without training images (the '
        f'smallest class has {int(totals.min())} images in all); lower dataset.val_per_class')
  train = lt_subsample_indices(labels, capped, order, seed)
  if not val_per_class:
    return train, np.zeros(0, np.int64)
  unused = np.ones(len(labels), bool)
  unused[train] = False
  # Its own seed stream: the validation draw never moves the training subset.
  children = np.random.SeedSequence([seed, 1]).spawn(len(sizes))
  val = [np.random.default_rng(children[cls]).choice(
      np.flatnonzero(unused & (labels == cls)), size=val_per_class, replace=False)
         for cls in range(len(sizes))]
  extra = max(0, val_max_per_class - val_per_class)
  if extra:
    unused[np.concatenate(val)] = False
    more = np.random.SeedSequence([seed, 2]).spawn(len(sizes))
    for cls in range(len(sizes)):
      left = np.flatnonzero(unused & (labels == cls))
      val.append(np.random.default_rng(more[cls]).choice(
          left, size=min(extra, len(left)), replace=False))
  return train, np.sort(np.concatenate(val).astype(np.int64))
