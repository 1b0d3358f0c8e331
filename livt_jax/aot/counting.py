"""Counting in a compiled step: the analytic matmul FLOPs of a ViT / MAE training image, the
collectives written in compiled HLO, and the bytes per device of an abstract tree."""
import math
import re

COLLECTIVES = ('all-reduce', 'all-gather', 'reduce-scatter', 'collective-permute', 'all-to-all')


def _block_fwd_flops(tokens: int, width: int, hidden: int) -> int:
  """Forward matmul FLOPs of one transformer block on one sample (2 per multiply-add)."""
  return 2 * tokens * width * (4 * width + 2 * hidden) + 4 * tokens * tokens * width


def analytic_flops_per_image(config, stage: str, channels: int, num_classes: int) -> float:
  """Matmul FLOPs of one training image: forward + backward (2x forward), less the patch
  embedding's input gradient; no recomputation. Elementwise ops, norms, softmax not counted."""
  from livt_jax.models import vit  # pylint: disable=g-import-not-at-top
  v = vit.config_size(config.model)
  width, depth = v['width'], v['depth']
  ratio = v.get('mlp_ratio', 4.0)
  p = config.model.patch_size
  n = (config[stage].image_size // p) ** 2
  patch_dim = p * p * channels
  patch_embed = 2 * n * patch_dim * width
  if stage == 'bft':
    fwd = patch_embed + depth * _block_fwd_flops(1 + n, width, int(width * ratio))
    fwd += 2 * width * num_classes
  else:
    kept = int(n * (1 - config.mgp.mask_ratio))
    dw = config.model.decoder_width
    fwd = (patch_embed + depth * _block_fwd_flops(1 + kept, width, int(width * ratio))
           + 2 * (1 + kept) * width * dw
           + config.model.decoder_depth * _block_fwd_flops(1 + n, dw, int(dw * ratio))
           + 2 * (1 + n) * dw * patch_dim)
  return float(3 * fwd - patch_embed)


_DTYPE_BYTES = {'pred': 1, 's8': 1, 'u8': 1, 's16': 2, 'u16': 2, 'f16': 2, 'bf16': 2, 's32': 4,
                'u32': 4, 'f32': 4, 's64': 8, 'u64': 8, 'f64': 8, 'c64': 8, 'c128': 16}
_SHAPE = re.compile(r'\b(' + '|'.join(_DTYPE_BYTES) + r'|f8\w*|s4|u4)\[([\d,]*)\]')
_OP = re.compile(r'=\s*(.*?)\s(' + '|'.join(COLLECTIVES) + r')(-start|-done)?\(')


def _shape_bytes(text: str) -> int:
  total = 0
  for dtype, dims in _SHAPE.findall(text):
    size = _DTYPE_BYTES.get(dtype, 1)
    total += size * math.prod(int(d) for d in dims.split(',') if d)
  return total


def collectives(hlo_text: str) -> dict:
  """{kind: (count, bytes)} of the collectives in compiled HLO text, per device.

  Counted where they appear in the program (an op inside a loop body, e.g. the micro-batch loop
  of gradient accumulation, counts once); bytes are each op's result shapes; an async pair
  (-start/-done) counts once, by its -done.
  """
  out = {}
  for line in hlo_text.splitlines():
    m = _OP.search(line)
    if not m or m.group(3) == '-start':
      continue
    count, size = out.get(m.group(2), (0, 0))
    out[m.group(2)] = (count + 1, size + _shape_bytes(m.group(1)))
  return out


def tree_bytes_per_device(tree) -> int:
  import jax  # pylint: disable=g-import-not-at-top
  total = 0
  for leaf in jax.tree.leaves(tree):
    shape = leaf.sharding.shard_shape(leaf.shape) if leaf.sharding is not None else leaf.shape
    total += math.prod(shape) * leaf.dtype.itemsize
  return total


