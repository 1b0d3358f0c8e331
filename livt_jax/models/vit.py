"""Vision Transformer encoder and classifier (ViT as used by MAE and LiVT), Flax Linen.

The encoder is shared by both LiVT stages: the MAE of MGP calls it on the visible patches only
(`Encoder.encode_visible`), the classifier of BFT on all patches, with one parameter tree, so an
MAE's `encoder` parameters drop into a ViT's `encoder` unchanged.

Choices (as MAE / timm unless said):
  * pre-norm blocks, LayerNorm eps 1e-6, fused qkv with bias, exact-erf GELU by default;
  * linear layers xavier-uniform with zero bias, the patch embedding xavier-uniform over its
    flattened [p*p*C, D] kernel, class token N(0, 0.02);
  * position embedding: the fixed 2-D sin-cos table (posemb.py), a constant rebuilt from the
    input's grid, so any image size divisible by the patch works. (The released LiVT code turns
    it into a trainable parameter for fine-tuning; here it stays fixed in both stages.)
  * 'gap' pooling is MAE's fine-tuning head: the mean of the patch tokens *before* the final
    norm, then `fc_norm`. `encoder_norm` still exists in the tree (so MAE and ViT encoders have
    identical trees) but is unused in that mode.
  * every parameter carries logical axis names; `LOGICAL_AXIS_RULES_FSDP` maps them to a
    ('data', 'fsdp') mesh.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from livt_jax.models import kernels
from livt_jax.models import posemb

VARIANTS: dict[str, dict] = {
    'Ti': dict(width=192, depth=12, heads=3, mlp_ratio=4.0),
    'S': dict(width=384, depth=12, heads=6, mlp_ratio=4.0),
    'B': dict(width=768, depth=12, heads=12, mlp_ratio=4.0),
    'L': dict(width=1024, depth=24, heads=16, mlp_ratio=4.0),
    # Small variants for CPU runs and tests.
    'mu': dict(width=128, depth=6, heads=4, mlp_ratio=4.0),
    'nano': dict(width=32, depth=2, heads=2, mlp_ratio=4.0),
}

# Logical axis -> mesh axis. Only the 'embed' dimension of matrices is split (over 'fsdp'); one
# mesh axis per array at most, so every other logical axis is replicated. 1-D parameters
# (biases, norms, tokens) use 'vec' and stay replicated: they are tiny.
LOGICAL_AXIS_RULES_FSDP = (
    ('embed', 'fsdp'),
    ('mlp', None),
    ('qkv', None),
    ('heads', None),
    ('patch', None),
    ('classes', None),
    ('vec', None),
)

LN_EPS = 1e-6
Dtype = Any


def get_variant(name: str) -> dict:
  """Returns the size dict (width, depth, heads, mlp_ratio) of a named ViT variant."""
  if name not in VARIANTS:
    raise ValueError(f'unknown ViT variant {name!r}; known: {", ".join(VARIANTS)}')
  return dict(VARIANTS[name])


# config.model fields that, when set, override the named variant's size (a checkpoint of a size
# the table lacks: the interop and checkpoint error lines name them).
SIZE_OVERRIDES = ('width', 'depth', 'heads', 'mlp_ratio')


def config_size(model_config) -> dict:
  """The size dict of config.model: its variant's, with model.width / depth / heads / mlp_ratio
  taking the place of the variant's values where they are set (not None)."""
  size = get_variant(model_config.variant)
  for field in SIZE_OVERRIDES:
    if model_config.get(field) is not None:
      size[field] = model_config[field]
  return size


def size_overrides(model_config) -> dict:
  """{field: value} of the size overrides set in config.model."""
  return {f: model_config[f] for f in SIZE_OVERRIDES if model_config.get(f) is not None}


def _part(init, axes):
  return nn.with_logical_partitioning(init, axes)


def _dense_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
  """nn.Dense's dot_general hook: its contraction (last axis of x, first of the kernel) in bf16."""
  del precision, preferred_element_type
  if dimension_numbers != (((lhs.ndim - 1,), (0,)), ((), ())):
    raise ValueError(f'bf16_matmul takes only Dense\'s contraction, got {dimension_numbers}')
  return kernels.bf16_matmul(lhs, rhs)


def dense(features: int, axes: tuple, dtype: Dtype, name: str,
          kernel_init=nn.initializers.xavier_uniform(), bf16_matmul: bool = False) -> nn.Dense:
  """A Dense layer with MAE's init (xavier-uniform, zero bias) and logical axis names.

  bf16_matmul: the matmul's operands in bfloat16, accumulated and returned in `dtype`
  (precision 'bf16_matmul'; activations stay float32).
  """
  extra = {'dot_general': _dense_dot_general} if bf16_matmul else {}
  return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32, name=name,
                  kernel_init=_part(kernel_init, axes),
                  bias_init=_part(nn.initializers.zeros, ('vec',)), **extra)


class LayerNorm(nn.Module):
  """LayerNorm with `layer_norm_fn`; the same parameters as flax's `nn.LayerNorm` ('scale',
  'bias', float32 [width]), annotated as replicated vectors."""
  epsilon: float = LN_EPS
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    width = x.shape[-1]
    scale = self.param('scale', _part(nn.initializers.ones, ('vec',)), (width,), jnp.float32)
    bias = self.param('bias', _part(nn.initializers.zeros, ('vec',)), (width,), jnp.float32)
    return kernels.layer_norm_fn(x.astype(self.dtype), scale, bias, self.epsilon)


def layer_norm(dtype: Dtype, name: str) -> LayerNorm:
  """LayerNorm (eps 1e-6) whose scale and bias are annotated as replicated vectors."""
  return LayerNorm(LN_EPS, dtype, name=name)


def patchify(images: jax.Array, p: int) -> jax.Array:
  """[B, H, W, C] -> [B, (H/p)*(W/p), p*p*C], patches row-major, each (row, col, channel).

  The same order as facebookresearch/mae's `patchify` on NCHW images (channel fastest).
  """
  b, h, w, c = images.shape
  if h % p or w % p:
    raise ValueError(f'image size {h}x{w} is not divisible by the patch size {p}')
  x = images.reshape(b, h // p, p, w // p, p, c)
  x = x.transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, (h // p) * (w // p), p * p * c)


class PatchEmbed(nn.Module):
  """Non-overlapping patch projection: a conv with kernel = stride = patch, done as a matmul.

  The kernel has the layout of a Flax Conv kernel [p, p, C, D], so it multiplies `patchify`
  output directly (reshaped to [p*p*C, D]); a matmul is faster than a strided conv on CPU.
  """
  patch_size: int
  width: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    p, c = self.patch_size, images.shape[-1]
    # Xavier over the flattened kernel, as MAE initialises its patch-embedding conv.
    init = nn.initializers.xavier_uniform(in_axis=(0, 1, 2), out_axis=3)
    kernel = self.param('kernel', _part(init, (None, None, None, 'embed')),
                        (p, p, c, self.width), jnp.float32)
    bias = self.param('bias', _part(nn.initializers.zeros, ('vec',)), (self.width,), jnp.float32)
    x = patchify(images.astype(self.dtype), p)
    y = x @ kernel.reshape(p * p * c, self.width).astype(self.dtype)
    return y + bias.astype(self.dtype)


def split_heads(qkv: jax.Array, num_heads: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The fused qkv projection [B, T, 3 * D] -> q, k, v, each [B, heads, T, head_dim].

  One transpose to [3, B, heads, T, head_dim], so the attention matmuls batch over leading
  dimensions. `jnp.split` (not indexing) because its gradient is one concatenation: indexing's
  is a zero-padded [3, ...] copy per operand, summed (XLA counts ~10% more bytes accessed per
  ViT-Ti train step that way: benchmarks/results/ab/qkv_split_bft_float32.json).
  """
  b, t, d3 = qkv.shape
  hd = d3 // (3 * num_heads)
  qkv = qkv.reshape(b, t, 3, num_heads, hd).transpose(2, 0, 3, 1, 4)
  q, k, v = (x[0] for x in jnp.split(qkv, 3, axis=0))
  return q, k, v


class Attention(nn.Module):
  """Multi-head self-attention with a fused qkv projection.

  attention: 'ours' (`dot_product_attention` above, float32 softmax), or 'xla' / 'cudnn':
  `jax.nn.dot_product_attention` with that implementation (`library_attention`).
  """
  num_heads: int
  dtype: Dtype = jnp.float32
  bf16_matmul: bool = False
  attention: str = 'ours'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, t, d = x.shape
    if d % self.num_heads:
      raise ValueError(f'width {d} is not divisible by num_heads {self.num_heads}')
    hd = d // self.num_heads
    qkv = dense(3 * d, ('embed', 'qkv'), self.dtype, 'qkv', bf16_matmul=self.bf16_matmul)(x)
    if self.attention not in kernels.ATTENTION:
      raise ValueError(f'model.attention={self.attention!r} is not known; use one of '
                       f'{", ".join(kernels.ATTENTION)}')
    if self.attention != 'ours':
      qkv = qkv.reshape(b, t, 3, self.num_heads, hd)
      out = kernels.library_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], self.attention)
      return dense(d, ('heads', 'embed'), self.dtype, 'proj', bf16_matmul=self.bf16_matmul)(
          out.reshape(b, t, d))
    q, k, v = split_heads(qkv, self.num_heads)
    out = kernels.dot_product_attention(q * jnp.asarray(hd ** -0.5, q.dtype), k, v)
    out = out.transpose(0, 2, 1, 3).reshape(b, t, d)
    return dense(d, ('heads', 'embed'), self.dtype, 'proj', bf16_matmul=self.bf16_matmul)(out)


class Mlp(nn.Module):
  """fc1 -> GELU -> fc2."""
  hidden: int
  dtype: Dtype = jnp.float32
  gelu_approximate: bool = False
  bf16_matmul: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    d = x.shape[-1]
    h = dense(self.hidden, ('embed', 'mlp'), self.dtype, 'fc1', bf16_matmul=self.bf16_matmul)(x)
    h = nn.gelu(h, approximate=True) if self.gelu_approximate else kernels.gelu_erf(h)
    return dense(d, ('mlp', 'embed'), self.dtype, 'fc2', bf16_matmul=self.bf16_matmul)(h)


class Block(nn.Module):
  """Pre-norm transformer block: x + DP(attn(LN(x))), then x + DP(mlp(LN(x)))."""
  num_heads: int
  mlp_ratio: float = 4.0
  drop_path: float = 0.0
  dtype: Dtype = jnp.float32
  gelu_approximate: bool = False
  bf16_matmul: bool = False
  attention: str = 'ours'  # see Attention

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    use_dp = train and self.drop_path > 0.0

    def residual(y):
      return kernels.drop_path(y, self.drop_path, self.make_rng('dropout')) if use_dp else y

    x = x + residual(Attention(self.num_heads, self.dtype, self.bf16_matmul, self.attention,
                               name='attn')(
        layer_norm(self.dtype, 'norm1')(x)))
    hidden = int(x.shape[-1] * self.mlp_ratio)
    x = x + residual(Mlp(hidden, self.dtype, self.gelu_approximate, self.bf16_matmul, name='mlp')(
        layer_norm(self.dtype, 'norm2')(x)))
    return x


def block_class(remat: bool):
  """Block, or its rematerialised version (activations recomputed in the backward pass)."""
  # Argument 2 (`train`, counting the module as 0) is a Python bool: static under remat.
  return nn.remat(Block, static_argnums=(2,)) if remat else Block


class Encoder(nn.Module):
  """ViT encoder: patch embedding + fixed sin-cos posemb + class token + blocks + final norm."""
  width: int
  depth: int
  num_heads: int
  patch_size: int
  mlp_ratio: float = 4.0
  drop_path: float = 0.0
  dtype: Dtype = jnp.float32
  remat: bool = False
  gelu_approximate: bool = False
  # The grid the encoder was pre-trained on, if not this one: its table is resized to this grid.
  pretrain_grid: tuple[int, int] | None = None
  # 'fixed': the table is a constant; 'learned': a parameter initialised with it (timm/MAE
  # fine-tuning train `pos_embed`).
  posemb: str = 'fixed'
  # precision 'bf16_matmul': the blocks' linear layers multiply in bf16 (see `bf16_matmul`).
  bf16_matmul: bool = False
  attention: str = 'ours'  # see Attention

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool, keep_ids: jax.Array | None = None,
               apply_norm: bool = True) -> jax.Array:
    """Encodes images [B, H, W, C] into tokens [B, 1 + N, width] (class token first).

    Args:
      images: the batch; H and W must be multiples of the patch size.
      train: enables drop path (rng stream 'dropout').
      keep_ids: optional [B, K] int indices of the patches to keep (MAE); then only those K
        patch tokens (in that order) follow the class token.
      apply_norm: apply `encoder_norm` to the output (False for MAE-style 'gap' pooling).

    Returns:
      Tokens in the compute dtype.
    """
    _, h, w, _ = images.shape
    p = self.patch_size
    if h % p or w % p:
      raise ValueError(f'image size {h}x{w} is not divisible by the patch size {p}')
    x = PatchEmbed(p, self.width, self.dtype, name='patch_embed')(images)
    # The class token gets no position (MAE's table has a zero row for it).
    table = posemb.encoder_table(self.width, (h // p, w // p), self.pretrain_grid)
    if self.posemb == 'learned':
      table = self.param('pos_embedding', _part(lambda *_: jnp.asarray(table), (None, 'vec')),
                         table.shape, jnp.float32)
    elif self.posemb != 'fixed':
      raise ValueError(f"model.posemb={self.posemb!r} is not known; use 'fixed' or 'learned'")
    x = x + jnp.asarray(table, self.dtype)
    if keep_ids is not None:
      x = jnp.take_along_axis(x, keep_ids[:, :, None], axis=1)
    cls = self.param('cls_token', _part(nn.initializers.normal(0.02), (None, None, 'vec')),
                     (1, 1, self.width), jnp.float32)
    cls = jnp.broadcast_to(cls.astype(self.dtype), (x.shape[0], 1, self.width))
    x = jnp.concatenate([cls, x], axis=1)
    rates = np.linspace(0.0, self.drop_path, self.depth) if self.depth else []
    block = block_class(self.remat)
    for i in range(self.depth):
      x = block(self.num_heads, self.mlp_ratio, float(rates[i]), self.dtype,
                self.gelu_approximate, self.bf16_matmul, self.attention,
                name=f'block_{i}')(x, train)
    norm = layer_norm(self.dtype, 'encoder_norm')
    if apply_norm:
      return norm(x)
    if self.is_initializing():
      norm(x)  # creates the parameters, so the tree is the same in every mode
    return x

  def encode_visible(self, images: jax.Array, keep_ids: jax.Array, *,
                     train: bool) -> jax.Array:
    """MAE's masked path: tokens [B, 1 + K, width] of the class token and the kept patches."""
    return self(images, train=train, keep_ids=keep_ids)


HEADS = ('linear', 'normed')


def _unit_columns_init(key, shape, dtype=jnp.float32):
  # kaidic/LDAM-DRW NormedLinear's init: uniform(-1, 1), each class's column scaled to norm 1.
  w = jax.random.uniform(key, shape, dtype, -1.0, 1.0)
  return w / jnp.linalg.norm(w, axis=0, keepdims=True)


class NormedHead(nn.Module):
  """Cosine classifier (kaidic/LDAM-DRW models/resnet_cifar.py NormedLinear): logits
  normalize(x) @ normalize(kernel, axis=0), in [-1, 1]; no bias. torch's F.normalize divides by
  max(norm, 1e-12)."""
  num_classes: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param('kernel', _part(_unit_columns_init, ('embed', 'classes')),
                        (x.shape[-1], self.num_classes), jnp.float32)
    unit = lambda a, axis: a / jnp.maximum(jnp.linalg.norm(a, axis=axis, keepdims=True), 1e-12)
    return unit(x, -1) @ unit(kernel, 0)


class ViT(nn.Module):
  """ViT classifier: `encoder` + pooling + `head` (linear, or 'normed': NormedHead); returns
  float32 logits."""
  width: int
  depth: int
  num_heads: int
  patch_size: int
  num_classes: int
  mlp_ratio: float = 4.0
  drop_path: float = 0.0
  pool: str = 'gap'
  head_init_std: float = 2e-5  # MAE fine-tuning initialises the head with N(0, 2e-5)
  dtype: Dtype = jnp.float32
  remat: bool = False
  gelu_approximate: bool = False
  pretrain_grid: tuple[int, int] | None = None  # see Encoder
  posemb: str = 'fixed'
  bf16_matmul: bool = False  # see Encoder; the head stays float32
  head: str = 'linear'  # HEADS; 'normed' is LDAM's cosine head (bft.ldam_head)
  attention: str = 'ours'  # see Attention

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
    """Logits [B, num_classes] (float32) for images [B, H, W, C]."""
    if self.pool not in ('gap', 'cls'):
      raise ValueError(f"model.pool={self.pool!r} is not known; use 'gap' or 'cls'")
    if self.head not in HEADS:
      raise ValueError(f'head={self.head!r} is not known; use one of {", ".join(HEADS)}')
    encoder = Encoder(self.width, self.depth, self.num_heads, self.patch_size, self.mlp_ratio,
                      self.drop_path, self.dtype, self.remat, self.gelu_approximate,
                      self.pretrain_grid, self.posemb, self.bf16_matmul, self.attention,
                      name='encoder')
    if self.pool == 'gap':
      tokens = encoder(images, train=train, apply_norm=False)
      feat = layer_norm(self.dtype, 'fc_norm')(jnp.mean(tokens[:, 1:], axis=1))
    else:
      feat = encoder(images, train=train)[:, 0]
    # The head's input, for losses that need it (IB): `apply(..., mutable=['intermediates'])`
    # returns it as intermediates['pre_logits'][0]; otherwise sow stores nothing.
    self.sow('intermediates', 'pre_logits', feat)
    if self.head == 'normed':
      return NormedHead(self.num_classes, name='head')(feat.astype(jnp.float32))
    head_init = (nn.initializers.normal(self.head_init_std) if self.head_init_std > 0
                 else nn.initializers.zeros)
    # The head runs in float32: logits feed the loss and the calibration metrics.
    head = dense(self.num_classes, ('embed', 'classes'), jnp.float32, 'head', head_init)
    return head(feat.astype(jnp.float32))
