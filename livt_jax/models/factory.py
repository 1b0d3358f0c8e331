"""Builds the MGP (MAE) and BFT (ViT classifier) models from a config."""
import jax
import jax.numpy as jnp
import numpy as np

from livt_jax.models import mae
from livt_jax.models import vit


def resolved_precision(config, platform: str | None = None) -> str:
  """'auto' means bfloat16 compute on accelerators and float32 on CPU (where bf16 is slow).

  `platform` is where the step will run ('tpu' for the AOT plan on a CPU host); default: the
  default backend of this process.
  """
  if config.precision == 'auto':
    return 'float32' if (platform or jax.default_backend()) == 'cpu' else 'bfloat16'
  return config.precision


def compute_dtype(config):
  """Activations' dtype: bfloat16 only for 'bfloat16' ('bf16_matmul' keeps float32)."""
  return jnp.bfloat16 if resolved_precision(config) == 'bfloat16' else jnp.float32


def bf16_matmul(config) -> bool:
  """'bf16_matmul': float32 compute, the linear layers' operands rounded to bfloat16."""
  return resolved_precision(config) == 'bf16_matmul'


# x86 CPU flags of instructions that multiply bfloat16 natively; without one, XLA:CPU emulates
# bf16 dots and 'bf16_matmul' is slower than float32.
NATIVE_BF16_CPU_FLAGS = ('avx512_bf16', 'amx_bf16')


def cpu_flags(cpuinfo: str = '/proc/cpuinfo') -> frozenset | None:
  """The first CPU's x86 feature flags, or None where they cannot be read (not Linux, ARM)."""
  try:
    with open(cpuinfo) as f:
      for line in f:
        if line.startswith('flags'):
          return frozenset(line.split(':', 1)[1].split())
  except OSError:
    pass
  return None


def slow_bf16_matmul_note(config, flags: frozenset | None, platform: str | None = None) -> str | None:
  """A line for the console when 'bf16_matmul' runs on a CPU that may lack native bf16 dots."""
  if resolved_precision(config, platform) != 'bf16_matmul':
    return None
  if (platform or jax.default_backend()) != 'cpu':
    return None
  if flags is not None and any(f in flags for f in NATIVE_BF16_CPU_FLAGS):
    return None
  seen = 'shows no' if flags is not None else 'could not be checked for'
  return (f'precision bf16_matmul: this CPU {seen} AVX512-BF16 / AMX-BF16 instructions; without '
          'them XLA emulates the bfloat16 matmuls and the step is likely slower than in '
          'float32. Add --config.precision=float32 to run the same recipe in float32.')


def build_vit(config, num_classes: int, drop_path: float | None = None) -> vit.ViT:
  """The BFT classifier; its position table is MGP's, resized when BFT's grid differs."""
  v = vit.config_size(config.model)
  pretrain = config.mgp.image_size // config.model.patch_size
  return vit.ViT(
      width=v['width'], depth=v['depth'], num_heads=v['heads'], mlp_ratio=v.get('mlp_ratio', 4.0),
      patch_size=config.model.patch_size, num_classes=num_classes, pool=config.model.pool,
      drop_path=config.bft.drop_path if drop_path is None else drop_path,
      dtype=compute_dtype(config), remat=config.remat, pretrain_grid=(pretrain, pretrain),
      posemb=config.model.get('posemb', 'fixed'), bf16_matmul=bf16_matmul(config),
      head=config.bft.get('ldam_head', 'linear') if config.bft.loss == 'ldam_drw' else 'linear',
      attention=config.model.get('attention', 'ours'))


def build_mae(config) -> mae.MAE:
  v = vit.config_size(config.model)
  return mae.MAE(
      width=v['width'], depth=v['depth'], num_heads=v['heads'], mlp_ratio=v.get('mlp_ratio', 4.0),
      patch_size=config.model.patch_size, decoder_width=config.model.decoder_width,
      decoder_depth=config.model.decoder_depth, decoder_heads=config.model.decoder_heads,
      mask_ratio=config.mgp.mask_ratio, norm_pix_loss=config.mgp.norm_pix_loss,
      dtype=compute_dtype(config), remat=config.remat, bf16_matmul=bf16_matmul(config),
      attention=config.model.get('attention', 'ours'))


def init_fn(model, image_shape):
  """A function rng -> boxed variables, for jax.eval_shape or a sharded jax.jit."""
  def init(rng):
    dummy = jnp.zeros((1, *image_shape), jnp.float32)
    rngs = {'params': rng, 'mask': rng, 'dropout': rng}
    return model.init(rngs, dummy, train=False)
  return init


def count_params(model, image_shape) -> int:
  shapes = jax.eval_shape(init_fn(model, image_shape), jax.random.key(0))
  leaves = jax.tree.leaves(shapes['params'])
  return int(sum(np.prod(x.shape) for x in leaves))
