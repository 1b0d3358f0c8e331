"""`python -m benchmarks.step` runs the engine's MGP and BFT steps and reports sane figures.

The figures are checked against what can be known without running: the FLOPs XLA counts against
the matmul FLOPs of the tiny model counted by hand, the losses against their values at
initialisation, and the derived columns against the raw ones.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.join(os.path.dirname(__file__), '..')
# ViT-nano (width 32, depth 2, 2 heads, MLP 128), 16 px / patch 4 = 16 patches, 1 channel,
# 10 classes; MAE decoder 1 block of width 16; global batch 16 on 2 devices.
ARGS = ['--variant', 'nano', '--image_size', '16', '--patch', '4', '--batch', '16',
        '--channels', '1', '--num_classes', '10', '--steps', '2', '--warmup', '1',
        '--decoder_depth', '1', '--decoder_width', '16', '--decoder_heads', '2']
WIDTH, DEPTH, MLP, NUM_CLASSES, BATCH, DEVICES = 32, 2, 128, 10, 16, 2
PATCHES, PATCH_DIM, DEC_WIDTH, DEC_MLP = 16, 4 * 4 * 1, 16, 64
KEPT = 4  # MAE keeps 25% of the 16 patches


def _block_matmul_flops(tokens, width, hidden):
  """Forward matmul FLOPs of one transformer block on one sample (2 per multiply-add)."""
  dense = 2 * tokens * width * (3 * width + width + 2 * hidden)  # qkv, proj, fc1, fc2
  attention = 2 * 2 * tokens * tokens * width  # q k^T and attn v
  return dense + attention


def analytic_train_flops_per_device():
  """Matmul FLOPs of one train step per device: forward + backward (twice the forward: the
  gradients of inputs and of weights), less the input gradient of the patch embedding."""
  patch_embed = 2 * PATCHES * PATCH_DIM * WIDTH
  bft = (patch_embed + DEPTH * _block_matmul_flops(1 + PATCHES, WIDTH, MLP)
         + 2 * WIDTH * NUM_CLASSES)
  mgp = (patch_embed  # embeds every patch, then keeps 4
         + DEPTH * _block_matmul_flops(1 + KEPT, WIDTH, MLP)
         + 2 * (1 + KEPT) * WIDTH * DEC_WIDTH  # decoder_embed
         + _block_matmul_flops(1 + PATCHES, DEC_WIDTH, DEC_MLP)
         + 2 * (1 + PATCHES) * DEC_WIDTH * PATCH_DIM)  # decoder_pred
  per_device = BATCH // DEVICES
  return {stage: (3 * fwd - patch_embed) * per_device for stage, fwd in
          (('bft', bft), ('mgp', mgp))}


def bal_bce_loss_at_init():
  """The BFT loss with zero logits: Bal-BCE (paper Eq. 10, tau 1) on smoothed (0.1) one-hots,
  summed over classes, averaged over the batch. Mixup/CutMix mix each target with the reversed
  batch's using one lambda per batch, so the batch mean of the targets, hence this value, is
  unchanged by them."""
  from benchmarks import step  # pylint: disable=g-import-not-at-top
  from benchmarks import workload  # pylint: disable=g-import-not-at-top
  labels = workload.synthetic_batch(step.parse_args(ARGS))['label']
  counts = np.array([int(500 * 100 ** (-i / 9)) for i in range(NUM_CLASSES)], np.float64)
  prior = counts / counts.sum()
  bias = np.log(prior) - np.log1p(-prior) + np.log(NUM_CLASSES - 1)
  targets = np.full((len(labels), NUM_CLASSES), 0.1 / NUM_CLASSES)
  targets[np.arange(len(labels)), labels] += 0.9
  # BCE(z, t) = softplus(z) - t z, with z = 0 + bias.
  return float(np.mean(np.sum(np.logaddexp(0, bias) - targets * bias, axis=1)))


def jax_version():
  import jax  # pylint: disable=g-import-not-at-top
  return jax.__version__


def test_benchmark_script_times_both_stages(tmp_path):
  out = tmp_path / 'bench.json'
  env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={DEVICES}')
  r = subprocess.run([sys.executable, '-m', 'benchmarks.step', *ARGS, '--json', str(out)],
                     cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  report = json.loads(out.read_text())
  assert report['meta']['num_devices'] == DEVICES and report['meta']['batch'] == BATCH
  # The record says where and how it ran (benchmarks/hostinfo.py); no PyTorch side, no ratios.
  assert report['kind'] == 'step' and '-m benchmarks.step --variant nano' in report['command']
  assert len(report['load_before']) == len(report['load_after']) == 3
  assert report['host']['usable_cpus'] >= 1 and report['host']['versions']['jax'] == jax_version()
  assert report['ratios'] == []
  by_stage = {x['stage']: x for x in report['results']}
  assert set(by_stage) == {'mgp', 'bft'}
  analytic = analytic_train_flops_per_device()
  for stage, x in by_stage.items():
    assert x['framework'] == 'jax' and x['num_steps_timed'] == 2
    # Derived columns agree with the raw ones.
    assert x['step_ms_min'] <= x['step_ms_median'] <= x['step_ms_max']
    assert x['images_per_s'] == pytest.approx(BATCH / (x['step_ms_median'] / 1e3), rel=1e-9)
    assert x['tflops_per_s_per_device'] == pytest.approx(
        x['flops_per_step_per_device'] / (x['step_ms_median'] / 1e3) / 1e12, rel=1e-9)
    assert 0 < x['compile_s'] < 300 and x['cpu_s_per_step_median'] > 0
    assert 2**26 < x['peak_rss_bytes'] < 2**35 and x['xla_temp_bytes'] > 0
    # XLA counts every op; the matmuls must be there and dominate (the rest: LayerNorm, GELU,
    # softmax, AdamW, ~10-20% at this size). A step missing its backward pass would be ~1/3.
    ratio = x['flops_per_step_per_device'] / analytic[stage]
    assert 0.95 <= ratio <= 1.5, (stage, x['flops_per_step_per_device'], analytic[stage])
    assert f"final loss {x['final_loss']:.4f}" in r.stdout
  # The MAE step (encoder on a quarter of the tokens + a narrow decoder) costs less than the
  # classifier's here, as counted by hand.
  assert analytic['mgp'] < analytic['bft']
  assert by_stage['mgp']['flops_per_step_per_device'] < by_stage['bft']['flops_per_step_per_device']
  # The timed steps run at the peak learning rate (no warm-up, as PyTorch's side), so after 3
  # steps the BFT loss has left its value at initialisation (logits ~0: head ~ N(0, 2e-5), so
  # that value is known) downwards, but only a little (lr 6e-5); inside a warm-up (lr ~1e-7)
  # it would still equal it to ~1e-5.
  at_init = bal_bce_loss_at_init()
  assert at_init - 0.1 < by_stage['bft']['final_loss'] < at_init - 0.002, at_init
  # MGP: unit-variance predictions (LayerNorm, then a xavier layer) against per-patch normalised
  # targets (mean of squares 15/16), uncorrelated: about 1 + 15/16.
  assert 1.4 < by_stage['mgp']['final_loss'] < 2.6
  assert 'jax/torch' not in r.stdout  # no PyTorch side unless --vs_torch


def test_the_old_command_runs_the_moved_benchmark():
  """`python -m livt_jax.benchmark` (the command in the committed results) runs benchmarks.step;
  outside a clone it says where the benchmarks are."""
  r = subprocess.run([sys.executable, '-m', 'livt_jax.benchmark', '--help'], cwd=ROOT,
                     capture_output=True, text=True, timeout=120)
  assert r.returncode == 0 and '--vs_torch' in r.stdout, r.stderr
  code = ('import sys; sys.modules["benchmarks"] = None; '
          'from livt_jax import benchmark; benchmark.main()')
  r = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                     timeout=120)
  assert r.returncode == 1 and 'python -m benchmarks.step' in r.stderr, r.stderr
