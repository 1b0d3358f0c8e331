"""The prepared accelerator check (launch/accelerator_check.sh, benchmarks/accelerator_check.py),
run whole in its tiny mode on this CPU, with the plan for one H100 beside the measurement (the
plan needs `.cuda-aot`, as tests/test_aot_gpu.py)."""
import json
import os
import subprocess
import sys

import pytest

from engine_helpers import ROOT
from benchmarks import accelerator_check


def test_device_kinds_map_to_the_plan_of_the_same_devices():
  assert accelerator_check.aot_target('NVIDIA H100 80GB HBM3', 'gpu', 8) == 'h100:8'
  assert accelerator_check.aot_target('NVIDIA A100-SXM4-80GB', 'gpu', 4) == 'a100-80g:4'
  assert accelerator_check.aot_target('NVIDIA B200', 'gpu', 8) == 'b200:8'
  assert accelerator_check.aot_target('TPU v5 lite', 'tpu', 8) == 'v5e:2x4'
  assert accelerator_check.aot_target('TPU v5', 'tpu', 4) == 'v5p:2x2x1'
  assert accelerator_check.aot_target('cpu', 'cpu', 1) is None
  assert accelerator_check.aot_target('NVIDIA H200', 'gpu', 8) is None  # no spec shipped
  assert accelerator_check.aot_target('TPU v5 lite', 'tpu', 3) is None


def test_the_tiny_check_measures_runs_plans_and_writes_one_json(tmp_path):
  out = tmp_path / 'check.json'
  env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'JAX_PLATFORMS')}
  proc = subprocess.run(['bash', 'launch/accelerator_check.sh', str(out), '--tiny',
                         '--plan=h100:1'], capture_output=True, text=True, cwd=ROOT, env=env,
                        timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  r = json.loads(out.read_text())
  assert r['ok'] and r['mode'] == 'tiny' and r['plan_target'] == 'h100:1'
  assert (r['devices']['platform'], r['devices']['count']) == ('cpu', 1)
  for stage in ('mgp', 'bft'):
    b = r['benchmark'][stage]
    assert b['ok'] and b['images_per_s'] > 0
    assert b['images_per_s_per_device'] == pytest.approx(b['images_per_s'])
  run = r['run']
  assert run['ok'] and run['steps'] == accelerator_check.TINY['run_steps'], run['tail']
  assert run['images_per_sec'] > 0
  record = r['plan']['record']
  assert r['plan']['rc'] == 0 and record['topology']['name'] == 'h100:1'
  # The plan compiled the shapes that were measured: per-device batches, image size, model.
  for stage in ('mgp', 'bft'):
    assert record['stages'][stage]['global_batch'] == accelerator_check.TINY[f'{stage}_per_device']
  assert '--config.model.variant=nano' in record['overrides']
  for stage in ('mgp', 'bft'):
    c = r['comparison'][stage]
    e = record['stages'][stage]['estimates']
    assert c['plan_images_per_s_per_device_peak'] == e['images_per_sec_per_chip_peak']
    assert c['plan_images_per_s_per_device_at_50_mfu'] == e['images_per_sec_per_chip']
    assert c['mfu_by_plan_flops'] == pytest.approx(
        r['benchmark'][stage]['images_per_s_per_device'] / e['images_per_sec_per_chip_peak'])
  assert r['comparison']['bft']['run_images_per_s_per_device'] > 0
