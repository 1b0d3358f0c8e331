"""The AOT plan for GPU nodes (`--aot=h100:2`, livt_jax/aot/) and the XLA flags of a GPU run.

The compile test builds the real MGP and BFT train steps of a tiny ViT (bf16 from precision
'auto', RandAugment on the device, remat, FSDP over 2) for 2 abstract H100s with the CUDA PJRT
plugin, on this CPU, in a child process (the plugin must not reach this one: it would register
a CUDA backend). It needs `.cuda-aot` (launch/setup.sh installs it:
`.venv/bin/pip install --target .cuda-aot -r requirements-gpu-aot.txt`).
"""
import json
import os
import subprocess
import sys

import pytest

from engine_helpers import ROOT
from engine_helpers import tiny_config
from livt_jax import aot
from livt_jax.runtime import chips
from livt_jax.runtime import gpu_flags
from livt_jax.aot import topology

TESTS = os.path.dirname(os.path.abspath(__file__))
OVERRIDES = {'mesh.fsdp': 2, 'remat': True, 'bft.randaug_num_ops': 2, 'bft.randaug_on': 'auto'}
ARGV = ['--config=configs/fashion_mnist_lt.py', '--aot=h100:2'] + [
    f'--config.{k}={v}' for k, v in OVERRIDES.items()]

_SCENARIO = r'''
import contextlib, io, json, os, sys
sys.path[:0] = [ROOT, TESTS]
os.environ.pop('XLA_FLAGS', None)  # conftest's CPU device count is not part of a GPU run
from engine_helpers import tiny_config
from livt_jax import aot
config = tiny_config(**OVERRIDES)
stdout = io.StringIO()
with contextlib.redirect_stdout(stdout):
  rc = aot.main(config, 'h100:2', json_path=JSON_PATH, argv=ARGV)
print('JSON ' + json.dumps({'rc': rc, 'lines': stdout.getvalue().splitlines(),
                            'xla_flags': os.environ.get('XLA_FLAGS', '')}))
'''


@pytest.fixture(scope='module')
def plan(tmp_path_factory):
  try:
    aot.find_cuda_plugin()  # only looks
  except aot.AotError as e:
    pytest.fail(f'{e} (launch/setup.sh does this)')
  path = str(tmp_path_factory.mktemp('plan') / 'h100_2.json')
  code = _SCENARIO
  for name, value in (('ROOT', ROOT), ('TESTS', TESTS), ('OVERRIDES', OVERRIDES),
                      ('JSON_PATH', path), ('ARGV', ARGV)):
    code = code.replace(name, repr(value))
  proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                        timeout=900, cwd=ROOT)
  found = [line for line in proc.stdout.splitlines() if line.startswith('JSON ')]
  assert proc.returncode == 0 and found, proc.stdout[-3000:] + proc.stderr[-3000:]
  out = json.loads(found[-1][len('JSON '):])
  assert os.path.exists(path), out['lines'] + proc.stderr.splitlines()[-20:]
  with open(path) as f:
    out['record'] = json.load(f)
  return out


def test_tiny_vit_compiles_for_2_h100s_with_consistent_memory_and_collectives(plan):
  from livt_jax.models import factory  # pylint: disable=g-import-not-at-top
  assert plan['rc'] == 0, plan['lines']
  record = plan['record']
  with open(os.path.join(topology.SPECS, 'h100_sxm.txtpb')) as f:
    usable = int(topology.spec_memory_bytes(f.read()) * 0.75)  # JAX's default preallocation
  assert record['topology'] == {
      'name': 'h100:2', 'platform': 'gpu', 'devices': 2, 'nodes': 1, 'chip': 'h100',
      'peak_tflops': 989.0, 'usable_bytes_per_device': usable, 'gpu_mem_fraction': 0.75}
  config = tiny_config(**OVERRIDES)
  counts = {'mgp': factory.count_params(factory.build_mae(config), (28, 28, 1)),
            'bft': factory.count_params(factory.build_vit(config, 10), (28, 28, 1))}
  for name in ('mgp', 'bft'):
    r = record['stages'][name]
    assert r['fits'] and r['error'] is None and r['num_chips'] == 2 and r['platform'] == 'gpu'
    assert r['hbm_bytes'] == usable
    # float32 parameters and AdamW's moments (+ the weight average where the config keeps one)
    # split over fsdp=2; vectors are replicated, so a bit more than half.
    per_param = 4 * (3 + int(bool(config[name].get('ema_decay', 0.0))))
    state = r['params_bytes'] + r['opt_bytes']
    assert counts[name] * per_param / 2 <= state <= 1.3 * counts[name] * per_param / 2
    # 16 uint8 28x28x1 images and int32 labels over 2 GPUs (no erasing in this config); BFT
    # adds each image's RandAugment draws for the device (float32 [2 ops, 3]).
    draws = 2 * 3 * 4 if name == 'bft' else 0
    assert r['batch_bytes'] == 16 * (28 * 28 + 4 + draws) // 2
    # XLA's arguments are the state and the batch (less a few bytes of leaves the step does
    # not read, which XLA prunes).
    inputs = state + r['batch_bytes']
    assert 0.99 * inputs <= r['argument_bytes'] <= 2 * inputs, (name, inputs, r['argument_bytes'])
    assert r['temp_bytes'] > 0
    assert r['total_bytes'] == (r['argument_bytes'] + r['output_bytes'] + r['temp_bytes']
                                + r['code_bytes'])
    # The CUDA compiler gives no cost analysis: the analytic count stands in.
    assert r['flops_source'] == 'analytic'
    assert r['flops_per_image'] == pytest.approx(r['analytic_flops_per_image'])
    e = r['estimates']
    step_s = r['flops_per_step'] / (0.5 * 989e12)
    assert e['images_per_sec_per_chip'] == pytest.approx(8 / step_s)
    assert e['chip_days'] == pytest.approx(2 * r['total_steps'] * step_s / 86400)
    # Mesh data=1 x fsdp=2 shards the parameters: the step all-gathers them and reduce-scatters
    # (or all-reduces) the gradients.
    kinds = r['collectives']
    assert kinds['all-gather'][0] >= 1 and kinds['all-gather'][1] > 0, kinds
    assert any(kinds.get(k, (0, 0))[1] > 0 for k in ('reduce-scatter', 'all-reduce')), kinds
  text = '\n'.join(plan['lines'])
  for phrase in ('AOT plan for h100:2: 2 x NVIDIA H100 80GB HBM3', 'precision bfloat16 (auto)',
                 'remat True', 'RandAugment on the device', 'mesh data=1 x fsdp=2',
                 'memory per GPU: parameters', 'images/s per GPU', 'GPU-hours',
                 'the analytic matmul count'):
    assert phrase in text, (phrase, text)


def test_the_plan_compiles_with_the_gpu_runs_xla_flags_and_records_where_it_was_made(plan):
  for flag in gpu_flags.GPU_XLA_FLAGS:
    assert flag in plan['xla_flags'].split()
  record = plan['record']
  made = record['made']
  assert made['xla_flags'] == plan['xla_flags']
  assert made['versions']['jax'] == made['versions']['jax-cuda12-pjrt'] == '0.10.2'
  assert len(made['git_commit']) == 40 and isinstance(made['git_dirty'], bool)
  assert made['host_cpu'] and made['date'][:2] == '20'
  assert record['config'] == 'configs/fashion_mnist_lt.py'
  assert record['overrides'] == ARGV[2:]
  assert record['command'] == 'python -m livt_jax.main ' + ' '.join(ARGV)
  assert record['fits'] is True and record['fixes'] == {}


def test_gpu_topology_names():
  t = aot.parse_topology('a100-80g:2x8')
  assert (t.platform, t.num_chips, t.nodes, t.chip.name) == ('gpu', 16, 2, 'a100')
  assert aot.parse_topology('h100:8').num_chips == 8
  assert aot.parse_topology('b200:8').chip.peak_tflops == 2250.0
  for bad in ('h100:0', 'h100:2x2x2', 'h100', 'rtx4090:8', 'h100:0x8'):
    with pytest.raises(aot.AotError, match='--aot='):
      aot.parse_topology(bad)


def test_usable_gpu_memory_is_the_preallocated_share(monkeypatch):
  topo = aot.parse_topology('b200:8')
  with open(topo.spec_file) as f:
    total = topology.spec_memory_bytes(f.read())
  assert total == 191514411008  # XLA's b200 spec
  monkeypatch.delenv('XLA_PYTHON_CLIENT_MEM_FRACTION', raising=False)
  assert topology.usable_bytes(topo) == int(total * 0.75)
  monkeypatch.setenv('XLA_PYTHON_CLIENT_MEM_FRACTION', '0.9')
  assert topology.usable_bytes(topo) == int(total * 0.9)
  for bad in ('1.5', 'lots', '0'):
    monkeypatch.setenv('XLA_PYTHON_CLIENT_MEM_FRACTION', bad)
    with pytest.raises(aot.AotError, match='XLA_PYTHON_CLIENT_MEM_FRACTION'):
      topology.usable_bytes(topo)


def test_every_shipped_spec_names_its_gpu_and_memory():
  kinds = {'h100': 'NVIDIA H100 80GB HBM3', 'a100-80g': 'NVIDIA A100-SXM4-80GB',
           'b200': 'NVIDIA B200'}
  for name, kind in kinds.items():
    topo = aot.parse_topology(f'{name}:1')
    with open(topo.spec_file) as f:
      text = f.read()
    assert f'device_description_str: "{kind}"' in text
    assert chips.for_device_kind(kind) is topo.chip
    # Published memory (GB) vs the spec's bytes: within 7% (GiB vs GB, reserved memory).
    assert abs(topology.spec_memory_bytes(text) / 1e9 / topo.chip.hbm_gib - 1) < 0.07


def test_gpu_flags_are_added_once_and_the_users_win():
  env = {'XLA_FLAGS': '--xla_gpu_enable_latency_hiding_scheduler=false'}
  added = gpu_flags.add(env)
  assert added == ['--xla_gpu_enable_highest_priority_async_stream=true']
  assert env['XLA_FLAGS'] == ('--xla_gpu_enable_latency_hiding_scheduler=false '
                              '--xla_gpu_enable_highest_priority_async_stream=true')
  assert gpu_flags.add(env) == []
  # A host that will not start the CUDA backend gets nothing.
  assert gpu_flags.add_for_gpu_run({'JAX_PLATFORMS': 'cpu'}) == []
  assert gpu_flags.add_for_gpu_run({'JAX_PLATFORMS': 'tpu'}) == []


def test_aot_json_without_aot_is_one_line_and_exit_2(tmp_path):
  proc = subprocess.run(
      [sys.executable, '-m', 'livt_jax.main', '--config=configs/fashion_mnist_lt.py',
       f'--aot_json={tmp_path / "p.json"}'], capture_output=True, text=True, cwd=ROOT,
      timeout=120)
  assert proc.returncode == 2, proc.stdout + proc.stderr
  lines = (proc.stdout + proc.stderr).strip().splitlines()
  assert lines == ['livt_jax: error: --aot_json needs --aot=TOPOLOGY (e.g. --aot=h100:8)'], lines
  assert not (tmp_path / 'p.json').exists()


def test_the_search_compiles_its_candidates_for_the_gpu(monkeypatch):
  """search() recompiles with the base compile's platform (GPU precision and RandAugment)."""
  from livt_jax.aot import compiling, search  # pylint: disable=g-import-not-at-top
  seen = []

  def fake_compile(config, stage, devices, data, hbm, overrides, platform):
    seen.append((dict(overrides), platform))
    return compiling.StageResult(stage, dict(overrides), 2, 16, 4, 1, 1, 1.0, 0.0, hbm,
                                 argument_bytes=hbm // 2, platform=platform)

  monkeypatch.setattr(compiling, 'compile_stage', fake_compile)
  base = compiling.StageResult('bft', {}, 2, 16, 8, 1, 1, 1.0, 0.0, 1000, argument_bytes=100,
                               temp_bytes=2000, platform='gpu')
  fix = search.search(tiny_config(), base, [None, None], None, 1000, say=lambda _: None)
  assert fix is not None and fix.fits and seen[-1][1] == 'gpu'
  assert all(platform == 'gpu' for _, platform in seen)
  assert fix.overrides == seen[-1][0]
