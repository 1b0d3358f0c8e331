"""`python -m livt_jax.benchmark` runs the engine's MGP and BFT steps and reports sane figures."""
import json
import math
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(__file__), '..')


def test_benchmark_script_times_both_stages(tmp_path):
  out = tmp_path / 'bench.json'
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2')
  r = subprocess.run(
      [sys.executable, '-m', 'livt_jax.benchmark', '--variant', 'nano', '--image_size', '8',
       '--patch', '4', '--batch', '8', '--channels', '1', '--num_classes', '10', '--steps', '2',
       '--warmup', '1', '--decoder_depth', '1', '--decoder_width', '16', '--decoder_heads', '2',
       '--json', str(out)],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  report = json.loads(out.read_text())
  assert report['meta']['num_devices'] == 2
  by_stage = {x['stage']: x for x in report['results']}
  assert set(by_stage) == {'mgp', 'bft'}
  for x in by_stage.values():
    assert x['framework'] == 'jax' and x['num_steps_timed'] == 2
    assert x['images_per_s'] > 0 and x['compile_s'] > 0
    assert x['flops_per_step_per_device'] > 0 and x['peak_rss_bytes'] > 0
    assert math.isfinite(x['final_loss'])
  # The MAE step (encoder on a quarter of the tokens + decoder) and the classifier step differ.
  assert by_stage['mgp']['flops_per_step_per_device'] != by_stage['bft']['flops_per_step_per_device']
  assert 'jax/torch' not in r.stdout  # no PyTorch side unless --vs_torch
