"""The ViT's numerical kernels, each with its gradient written out (custom VJPs): the bf16-operand
matmul of `precision=bf16_matmul`, LayerNorm, softmax attention (and the library's fused kinds),
exact-erf GELU, and stochastic depth. vit.py builds the Flax modules from them."""
import functools

import jax
import jax.numpy as jnp
import numpy as np


def _bf16_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
  return jax.lax.dot_general(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16),
                             (((x.ndim - 1,), (0,)), ((), ())),
                             preferred_element_type=jnp.float32)


@jax.custom_vjp
def bf16_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
  """x [..., K] @ w [K, N] with both operands rounded to bfloat16, accumulated in float32.

  What a TPU does for a float32 matmul at default precision. On a CPU with AVX512-BF16 XLA's bf16
  GEMMs ran at 1.6-2.0x its float32 rate at each of the 8 shapes of the GEMM table in
  docs/performance.md (benchmarks/results/gemm/). The gradient is written out so that its two GEMMs run
  in bf16 too (the cotangent rounded likewise; autodiff of the casts would run them in float32) and
  the backward pass keeps the bf16 operands, half the bytes.
  """
  return _bf16_matmul(x, w)


def _bf16_matmul_fwd(x, w):
  xb, wb = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
  # Zero-size markers carry the primal dtypes (residuals must be arrays).
  return _bf16_matmul(xb, wb), (xb, wb, jnp.zeros((0,), x.dtype), jnp.zeros((0,), w.dtype))


def _bf16_matmul_bwd(res, g):
  xb, wb, x_like, w_like = res
  gb = g.astype(jnp.bfloat16)
  dx = jax.lax.dot_general(gb, wb, (((g.ndim - 1,), (1,)), ((), ())),
                           preferred_element_type=jnp.float32)
  rows = tuple(range(xb.ndim - 1))
  dw = jax.lax.dot_general(xb, gb, ((rows, rows), ((), ())), preferred_element_type=jnp.float32)
  return dx.astype(x_like.dtype), dw.astype(w_like.dtype)


bf16_matmul.defvjp(_bf16_matmul_fwd, _bf16_matmul_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def layer_norm_fn(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float) -> jax.Array:
  """LayerNorm over the last axis: (x - mean) / sqrt(var + eps) * scale + bias.

  Statistics in float32 (two-pass variance), output in x's dtype. The gradient is written out
  (custom VJP): the backward pass keeps only x and the two per-row statistics and needs two
  row reductions, dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * scale.
  Autodiff of the forward keeps more [rows, width] intermediates and makes more passes (this
  form is a few % faster per block on CPU and saves ~5% of the step's temporaries).
  """
  return _layer_norm_fwd(x, scale, bias, eps)[0]


def _layer_norm_stats(x32, eps):
  mean = jnp.mean(x32, axis=-1, keepdims=True)
  centred = x32 - mean
  rstd = jax.lax.rsqrt(jnp.mean(centred * centred, axis=-1, keepdims=True) + eps)
  return mean, centred, rstd


def _layer_norm_fwd(x, scale, bias, eps):
  mean, centred, rstd = _layer_norm_stats(x.astype(jnp.float32), eps)
  y = (centred * rstd * scale + bias).astype(x.dtype)
  return y, (x, mean, rstd, scale)


def _layer_norm_bwd(eps, res, dy):
  del eps
  # The barrier keeps XLA from merging the recomputed xhat with the forward's (CSE), which
  # would keep a [rows, width] float32 copy alive from the forward to here (see `_gelu_bwd`).
  x, mean, rstd, scale, dy = jax.lax.optimization_barrier((*res, dy))
  dy = dy.astype(jnp.float32)
  xhat = (x.astype(jnp.float32) - mean) * rstd
  g = dy * scale
  dx = rstd * (g - jnp.mean(g, axis=-1, keepdims=True)
               - xhat * jnp.mean(g * xhat, axis=-1, keepdims=True))
  rows = tuple(range(x.ndim - 1))
  return dx.astype(x.dtype), jnp.sum(dy * xhat, axis=rows), jnp.sum(dy, axis=rows)


layer_norm_fn.defvjp(_layer_norm_fwd, _layer_norm_bwd)


def _attention_probs(q: jax.Array, k: jax.Array) -> jax.Array:
  # Softmax in float32 even under bfloat16 compute, for a stable normaliser.
  logits = jnp.einsum('bhqd,bhkd->bhqk', q, k, preferred_element_type=jnp.float32)
  return jax.nn.softmax(logits, axis=-1)


@jax.custom_vjp
def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
  """softmax(q k^T) v over [B, heads, T, head_dim] operands (q already scaled).

  The gradient is written out (custom VJP) so that the backward pass keeps only q, k, v and the
  probabilities and reuses them: dS = P * (dP - rowsum(dP * P)). Autodiff of the same forward
  also keeps the logits' softmax intermediates; this form needs less memory (about 10% of a
  512-wide MAE decoder's temporaries) and no more time.
  """
  return jnp.einsum('bhqk,bhkd->bhqd', _attention_probs(q, k).astype(v.dtype), v)


def _attention_fwd(q, k, v):
  probs = _attention_probs(q, k)
  return jnp.einsum('bhqk,bhkd->bhqd', probs.astype(v.dtype), v), (q, k, v, probs)


def _attention_bwd(res, d_out):
  q, k, v, probs = res
  p = probs.astype(v.dtype)
  d_v = jnp.einsum('bhqk,bhqd->bhkd', p, d_out)
  d_p = jnp.einsum('bhqd,bhkd->bhqk', d_out, v, preferred_element_type=jnp.float32)
  d_s = (probs * (d_p - jnp.sum(d_p * probs, axis=-1, keepdims=True))).astype(q.dtype)
  d_q = jnp.einsum('bhqk,bhkd->bhqd', d_s, k)
  d_k = jnp.einsum('bhqk,bhqd->bhkd', d_s, q)
  return d_q, d_k, d_v


dot_product_attention.defvjp(_attention_fwd, _attention_bwd)


ATTENTION = ('ours', 'xla', 'cudnn')


def library_attention(q: jax.Array, k: jax.Array, v: jax.Array, implementation: str,
                      even: bool | None = None) -> jax.Array:
  """`jax.nn.dot_product_attention` over [B, T, heads, head_dim] (q not scaled: it scales by
  head_dim ** -0.5), with implementation 'xla' or 'cudnn' (cuDNN's fused flash attention).

  jax 0.10.2's cuDNN path trains only on an even sequence length
  (jax/_src/cudnn/fused_attention_stablehlo.py: check_is_flash_attention): ViT's 1 + 14 x 14 =
  197 tokens get one padding token that no query attends to (key_value_seq_lengths), dropped
  from the output. `even`: pad to an even length (default: for 'cudnn' only).
  """
  t = q.shape[1]
  pad = t % 2 if (implementation == 'cudnn' if even is None else even) else 0
  lengths = None
  if pad:
    q, k, v = (jnp.pad(a, ((0, 0), (0, pad), (0, 0), (0, 0))) for a in (q, k, v))
    lengths = jnp.full((q.shape[0],), t, jnp.int32)
  out = jax.nn.dot_product_attention(q, k, v, key_value_seq_lengths=lengths,
                                     implementation=implementation)
  return out[:, :t]


_INV_SQRT2 = float(1.0 / np.sqrt(2.0))
_INV_SQRT_2PI = float(1.0 / np.sqrt(2.0 * np.pi))


@jax.custom_vjp
def gelu_erf(x: jax.Array) -> jax.Array:
  """Exact GELU as PyTorch/timm write it: x/2 * (1 + erf(x / sqrt(2))).

  The same function as `nn.gelu(x, approximate=False)`, which uses erfc instead: XLA expands
  erfc into two polynomial branches with divisions, erf into one rational approximation. On CPU
  the erfc fusions were ~11% of a ViT-Ti train step; with this form the step is ~15% faster.
  Values agree to ~1e-6 (float32). The derivative, Phi(x) + x * phi(x), is written out (custom
  VJP) so the backward pass needs only x and one fused pass.
  """
  return 0.5 * x * (1.0 + jax.lax.erf(x * jnp.asarray(_INV_SQRT2, x.dtype)))


def _gelu_fwd(x):
  return gelu_erf(x), x


def _gelu_bwd(x, g):
  # Without the barrier XLA's CSE merges this erf with the forward's and keeps that float32
  # [rows, hidden] result alive until here: 68 MB per 512-wide MAE decoder block at batch 128,
  # ~0.6 GB of the MGP step's 3.8 GB of temporaries (bf16_matmul). Recomputing it costs
  # one fused elementwise pass. Tying in g keeps the recomputation in the backward pass.
  x, g = jax.lax.optimization_barrier((x, g))
  cdf = 0.5 * (1.0 + jax.lax.erf(x * jnp.asarray(_INV_SQRT2, x.dtype)))
  pdf = jnp.asarray(_INV_SQRT_2PI, x.dtype) * jnp.exp(-0.5 * x * x)
  return (g * (cdf + x * pdf),)


gelu_erf.defvjp(_gelu_fwd, _gelu_bwd)


def drop_path(x: jax.Array, rate: float, rng: jax.Array) -> jax.Array:
  """Stochastic depth: zeroes a whole residual branch per sample, rescales the survivors."""
  keep = 1.0 - rate
  mask = jax.random.bernoulli(rng, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
  return jnp.where(mask, x / keep, jnp.zeros_like(x))
