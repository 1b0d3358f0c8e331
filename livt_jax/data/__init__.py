"""Data layer: dataset registry, LT subsets, sources, host augmentation, grain pipelines.

Modules (import the one you need; heavy dependencies stay out of this file):
  registry     DatasetInfo, get_info, lt_train_size: static facts, no data needed.
  longtail     lt_class_sizes, lt_subsample_indices, class_order_permutation.
  sources      load_source(config.dataset, split), save/load_class_counts.
  pipeline     train_iterator, eval_batches, steps_per_epoch, num_eval_batches (grain).
  augment      per-example host transforms (RandomResizedCrop, flip, erasing, eval resize).
  decode       PIL decoding; JPEGs at reduced scale when the training crop allows.
  randaugment  timm rand-m9-mstd0.5-inc1 RandAugment on PIL images; draw_params for the device.
  device_randaugment  the same ops on a batch in the jitted step (bft.randaug_on='device').
  mixup        mixup_cutmix (JAX, inside the jitted train step), one_hot_smoothed.
"""
from livt_jax.data.registry import DatasetInfo
from livt_jax.data.registry import get_info
from livt_jax.data.registry import KNOWN_NAMES
from livt_jax.data.registry import lt_train_size
