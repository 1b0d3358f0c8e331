"""What is timed, the same in both frameworks: the config, the synthetic batch, the class counts."""
import ast

import numpy as np

from livt_jax import config_defaults
from livt_jax.data import longtail


def long_tail_counts(num_classes: int) -> list[int]:
  """CIFAR-LT style class counts (500 images at the head, imbalance 100); only the Bal-BCE bias
  uses them."""
  return longtail.lt_class_sizes(500, num_classes, 100.0)


def make_config(args):
  """The base config with the benchmark's model, sizes and precision set."""
  c = config_defaults.get_base_config()
  c.model.variant = args.variant
  c.model.patch_size = args.patch
  c.model.decoder_depth = args.decoder_depth
  c.model.decoder_width = args.decoder_width
  c.model.decoder_heads = args.decoder_heads
  for stage in ('mgp', 'bft'):
    c[stage].image_size = args.image_size
    c[stage].batch_size = args.batch
    # PyTorch's side steps at the peak lr; without this the JAX step would run inside its
    # warm-up (lr ~0) and the two final losses could not be compared.
    c[stage].warmup_epochs = 0
  c.mgp.mask_ratio = args.mask_ratio
  c.bft.drop_path = args.drop_path
  c.precision = args.precision
  c.remat = args.remat
  c.grad_accum_steps = 1
  for pair in getattr(args, 'set', None) or ():
    key, sep, text = pair.partition('=')
    if not sep:
      raise ValueError(f'--set {pair!r}: write KEY=VALUE, e.g. model.attention=xla')
    node = c
    for part in key.split('.'):
      if not hasattr(node, 'keys') or part not in node:
        raise ValueError(f'--set {pair!r}: the config has no field {key!r}')
      node = node[part]
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
    c.update_from_flattened_dict({key: value})
  return c


def synthetic_batch(args, seed: int = 0) -> dict:
  """One fixed host batch: normalised-looking images [B, S, S, C] and labels [B]."""
  rs = np.random.RandomState(seed)
  s = args.image_size
  return {
      'image': rs.standard_normal((args.batch, s, s, args.channels)).astype(np.float32),
      'label': rs.randint(0, args.num_classes, size=(args.batch,)).astype(np.int32),
  }
