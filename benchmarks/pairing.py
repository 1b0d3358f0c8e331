"""Which PyTorch mode does the same work as each JAX precision, and how a row is labelled.

  JAX precision   PyTorch counterpart (torch_precision)
  float32         float32 model and batch                                   ('float32')
  bf16_matmul     float32 model under torch.autocast(device, torch.bfloat16) ('autocast')
  bfloat16        the model and batch cast to bfloat16 (model.to(bfloat16))  ('bfloat16')

What autocast runs in bf16 on CPU (torch's aten/src/ATen/autocast_mode.cpp,
`TORCH_LIBRARY_IMPL(aten, AutocastCPU, m)`, lower_precision_fp list): conv1d/2d/3d, bmm, mm,
baddbmm, addmm, addbmm, linear, matmul, linalg_vecdot, conv_transpose*, prelu,
scaled_dot_product_attention, _native_multi_head_attention. Its fp32 list forces float32 on
mse_loss, binary_cross_entropy_with_logits, nll/cross-entropy losses, linalg and FFT ops; every
other op (layer_norm, softmax, gelu, add) runs in the dtype of its inputs. In timm's ViT that
means: every Linear (qkv, proj, fc1, fc2, head) and the patch-embedding conv in bf16 with bf16
outputs, attention (SDPA) in bf16, GELU on fc1's bf16 output, LayerNorm and the residual stream
in float32 (a bf16 branch added to the float32 stream promotes to float32). Checked on torch
2.14.1 by recording the dtype of every aten op of a timm ViT step under autocast (forward and
backward): convolution, addmm, mm and _scaled_dot_product_flash_attention_for_cpu (and their
backward) return bf16, gelu and gelu_backward bf16, native_layer_norm float32.

JAX's `bf16_matmul` (livt_jax/models/vit.py `bf16_matmul`): the Dense layers of the blocks and
the decoder (qkv, proj, fc1, fc2, decoder_embed, decoder_pred; not the classifier head)
multiply bf16 operands with float32 accumulation and float32 outputs; patch embedding and the
attention score/value matmuls stay float32; GELU and LayerNorm run on float32. So the two
sides run the same GEMMs of the MLP and the projections in bf16 (the bulk of the FLOPs), and
differ where torch also rounds the attention matmuls, the patch embedding and the Linear
outputs to bf16. This is as close as the pairing gets without changing the model (docs say
what is left); it is labelled 'same work' because every big GEMM is bf16 on both sides.

A pairing other than the row above runs only with an explicit `--torch_precision` and every
ratio that uses it is labelled 'NOT same work'.
"""

SAME_WORK = {'float32': 'float32', 'bf16_matmul': 'autocast', 'bfloat16': 'bfloat16'}
TORCH_PRECISIONS = ('float32', 'autocast', 'bfloat16')
DESCRIBE = {
    'float32': 'float32',
    'autocast': 'autocast(bfloat16)',
    'bfloat16': 'bfloat16 model',
}


def torch_precision_for(jax_precision: str, requested: str | None) -> tuple[str, bool]:
  """(PyTorch precision to run, whether it is the same work as `jax_precision`).

  requested: --torch_precision, or None/'same' for the same-work counterpart.
  """
  same = SAME_WORK[jax_precision]
  if requested in (None, '', 'same'):
    return same, True
  if requested not in TORCH_PRECISIONS:
    raise ValueError(f'--torch_precision={requested!r}: use one of same, '
                     + ', '.join(TORCH_PRECISIONS))
  return requested, requested == same


def pairing_label(jax_precision: str, torch_precision: str) -> str:
  """'same work' or 'NOT same work', for the table and the JSON."""
  return 'same work' if SAME_WORK[jax_precision] == torch_precision else 'NOT same work'
