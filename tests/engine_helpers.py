"""Shared pieces of the engine tests: a tiny config and a comparison of two training runs.

Training comparisons run past the warm-up (`warmup_epochs=0`) at a learning rate at which every
parameter moves by orders of magnitude more than the tolerance, so a wrong update cannot pass.
"""
import importlib.util
import os

import jax
import numpy as np

ROOT = os.path.join(os.path.dirname(__file__), '..')
COUNTS = np.array([600, 300, 150, 80, 40, 20, 12, 8, 5, 3])


def tiny_config(**overrides):
  """The Fashion-MNIST-LT config shrunk to a 2-block ViT; `a.b=value` keyword overrides."""
  spec = importlib.util.spec_from_file_location(
      'fm', os.path.join(ROOT, 'configs', 'fashion_mnist_lt.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  c.model.variant = 'nano'
  # The base default (float32 on CPU, bfloat16 on TPU): the engine's tests compare float32
  # numerics with tight tolerances. The embedded default's 'bf16_matmul' is covered by
  # test_bf16_matmul and by the end-to-end run through main.
  c.precision = 'auto'
  c.model.decoder_depth, c.model.decoder_width, c.model.decoder_heads = 1, 32, 2
  c.mgp.batch_size = c.bft.batch_size = 16
  c.evaluate.batch_size = 1000
  c.log_every_steps = 2
  for k, v in overrides.items():
    node = c
    *parents, leaf = k.split('.')
    for p in parents:
      node = node[p]
    node[leaf] = v
  return c


def past_warmup(**overrides):
  """tiny_config with no warm-up: the first update already uses the peak learning rate."""
  return tiny_config(**{'mgp.warmup_epochs': 0, 'bft.warmup_epochs': 0, **overrides})


def update_distance(start, a, b) -> tuple[float, float]:
  """(||a - b|| / ||a - start||, max |a - start|) over all parameters.

  The first number is how far apart two runs from `start` ended, relative to how far they
  moved; the second shows they moved at all.
  """
  leaves = lambda t: [np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(t)]
  s, x, y = (np.concatenate(leaves(t)) for t in (start, a, b))
  moved = np.linalg.norm(x - s)
  return float(np.linalg.norm(x - y) / max(moved, 1e-30)), float(np.abs(x - s).max())


def assert_same_training(start, a, b, rel=1e-3, min_move=1e-4, max_move=1e-2):
  """Two runs from `start` made the same updates: they moved, and ended together.

  Adam turns rounding-level gradients (e.g. of the key bias, whose true gradient is 0) into
  lr-sized steps, so an elementwise tolerance tighter than the learning rate would flag
  rounding; the relative distance of the whole update does not, while any real difference in
  the updates (other data, a missing all-reduce, a skipped micro-batch) moves it to O(0.1-1).
  """
  distance, moved = update_distance(start, a, b)
  assert moved > min_move, f'parameters barely moved ({moved:.2e}): the test cannot tell'
  assert moved < max_move, f'parameters moved {moved:.2e}: is `start` where the runs began?'
  assert distance < rel, f'runs differ by {distance:.2e} of their update (limit {rel})'
