"""The AOT plan for TPUs (`python -m livt_jax.main --aot=v5e:2x2`, livt_jax/aot/) and MFU
accounting.

The AOT tests compile the real MGP and BFT train steps of a tiny ViT for a TPU v5e 2x2 slice
with libtpu, on this CPU. libtpu must stay out of the other tests (loaded into a process, it
makes jax try the TPU backend), so every compile runs in one child process
(`_AOT_SCENARIOS`), which reports back as JSON. They need `.libtpu` (launch/setup.sh installs
it: `.venv/bin/pip install --target .libtpu -r requirements-tpu-aot.txt`).
"""
import json
import logging
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from engine_helpers import ROOT
from engine_helpers import tiny_config
from livt_jax import aot
from livt_jax.runtime import chips
from livt_jax.engine import run

TESTS = os.path.dirname(os.path.abspath(__file__))
SMALL_HBM = 13.0e6  # bytes: the BFT step below needs ~12.8 MB per chip as configured

# Runs in a child process; prints one JSON line. Scenarios:
#   fits:   tiny ViT (nano, 28 px / patch 7), MGP + BFT, batch 16 on v5e:2x2 with mesh.fsdp=2;
#   small:  BFT with batch 512 (128 per chip) on a v5e whose usable HBM is patched to
#           SMALL_HBM, through aot.main (the command's own code): it searches, compiles the
#           candidates and prints the override line to rerun with.
_AOT_SCENARIOS = r'''
import contextlib, dataclasses, io, json, sys
sys.path[:0] = [ROOT, TESTS]
from engine_helpers import tiny_config
from livt_jax import aot
from livt_jax.runtime import chips
from livt_jax.models import factory

def result_dict(r):
  d = dataclasses.asdict(r)
  d.update(total_bytes=r.total_bytes, fits=r.fits, flops_per_image=r.flops_per_image)
  return d

out = {}
lines = []
config = tiny_config(**{'mesh.fsdp': 2})
plan = aot.plan(config, 'v5e:2x2', say=lines.append)
out['fits'] = {'lines': lines, 'fits': plan['fits'],
               'stages': {k: result_dict(r) for k, r in plan['stages'].items()},
               'param_counts': {
                   'mgp': factory.count_params(factory.build_mae(config), (28, 28, 1)),
                   'bft': factory.count_params(factory.build_vit(config, 10), (28, 28, 1))}}

# drop path as the paper's (the embedded default has none): its masks are part of the sized step.
small = tiny_config(**{'stages': 'bft', 'bft.init_from': 'scratch', 'bft.batch_size': 512,
                       'bft.drop_path': 0.1})
v5e = chips.CHIPS['v5e']
chips.CHIPS['v5e'] = dataclasses.replace(v5e, usable_hbm_gib=SMALL_HBM / chips.GIB)
stdout = io.StringIO()
with contextlib.redirect_stdout(stdout):
  rc = aot.main(small, 'v5e:2x2', command='CMD', json_path=JSON_PATH, argv=['--aot=v5e:2x2'])
out['small'] = {'rc': rc, 'lines': stdout.getvalue().splitlines(),
                'record': json.load(open(JSON_PATH))}
print('JSON ' + json.dumps(out))
'''


def _libtpu_or_fail():
  try:
    return aot.find_libtpu()  # only looks: libtpu must not reach this process's sys.path
  except aot.AotError as e:
    pytest.fail(f'{e} (launch/setup.sh does this)')


@pytest.fixture(scope='module')
def scenarios(tmp_path_factory):
  _libtpu_or_fail()
  path = str(tmp_path_factory.mktemp('aot') / 'small.json')
  code = (_AOT_SCENARIOS.replace('ROOT', repr(ROOT)).replace('TESTS', repr(TESTS))
          .replace('SMALL_HBM', repr(SMALL_HBM)).replace('JSON_PATH', repr(path)))
  proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                        timeout=600, cwd=ROOT)
  found = [line for line in proc.stdout.splitlines() if line.startswith('JSON ')]
  assert proc.returncode == 0 and found, proc.stdout[-3000:] + proc.stderr[-3000:]
  return json.loads(found[-1][len('JSON '):])


def test_tiny_vit_fits_v5e_2x2_with_consistent_memory_and_flops(scenarios):
  s = scenarios['fits']
  assert s['fits'], s['lines']
  chip = chips.CHIPS['v5e']
  for name in ('mgp', 'bft'):
    r = s['stages'][name]
    assert r['fits'] and r['error'] is None and r['num_chips'] == 4
    assert r['hbm_bytes'] == chip.hbm_bytes == int(15.75 * 2 ** 30)
    # Parameters (float32), AdamW's two moments and, where the config keeps one (the embedded
    # default's BFT), the weight average: ~ count * 4 * (1 + 2 [+ 1]) / fsdp per chip; matrices
    # are split over fsdp=2, vectors (biases, norms) are replicated, so a bit more.
    count = s['param_counts'][name]
    state = r['params_bytes'] + r['opt_bytes']
    per_param = 4 * (3 + int(bool(tiny_config()[name].get('ema_decay', 0.0))))
    assert count * per_param / 2 <= state <= 1.3 * count * per_param / 2, (name, count, state)
    assert count * 4 / 2 <= r['params_bytes'] <= 1.3 * count * 4 / 2
    # The batch, as the input pipeline sends it: 16 uint8 images of 28x28x1 and int32 labels
    # over 4 chips (this config does not erase: no erase boxes and seeds).
    assert r['batch_bytes'] == 16 * (28 * 28 + 4) // 4
    # XLA's arguments are the state and the batch (TPU tiles pad small arrays).
    assert state + r['batch_bytes'] <= r['argument_bytes'] <= 4 * (state + r['batch_bytes'])
    assert r['temp_bytes'] > 0 and r['code_bytes'] > 0
    assert r['total_bytes'] == (r['argument_bytes'] + r['output_bytes'] + r['temp_bytes']
                                + r['code_bytes'])
    assert r['total_bytes'] < 0.9 * r['hbm_bytes']
    # FLOPs per image: XLA counts the matmuls and every elementwise op; the analytic count
    # only the matmuls (forward + 2x backward). At width 32 the elementwise share is ~20%.
    assert r['flops_per_step'] > 0
    assert r['flops_per_image'] == pytest.approx(r['flops_per_step'] * 4 / 16)
    ratio = r['flops_per_image'] / r['analytic_flops_per_image']
    assert 1.0 <= ratio <= 1.5, (name, ratio)
    # Data parallel over 2 (gradients all-reduced), FSDP over 2 (parameters all-gathered).
    kinds = r['collectives']
    assert kinds['all-reduce'][0] >= 1 and kinds['all-reduce'][1] > 0, kinds
    assert kinds['all-gather'][0] >= 1 and kinds['all-gather'][1] > 0, kinds
  text = '\n'.join(s['lines'])
  for phrase in ('AOT plan for v5e:2x2: 4 x TPU v5e', 'precision bfloat16 (auto)',
                 'mesh data=2 x fsdp=2', 'memory per chip: parameters', 'FLOPs per image',
                 'images/s per chip', 'at 50% MFU', 'collectives per step', 'all-gather x'):
    assert phrase in text, (phrase, text)


def test_time_estimates_follow_from_flops_and_the_chip_peak(scenarios):
  r = scenarios['fits']['stages']['bft']
  result = aot.StageResult(**{k: v for k, v in r.items() if k not in (
      'total_bytes', 'fits', 'flops_per_image')})
  chip = chips.CHIPS['v5e']
  e = aot.estimates(result, chip)
  step_s = r['flops_per_step'] / (0.5 * 197e12)
  assert e['step_s'] == pytest.approx(step_s)
  assert e['images_per_sec_per_chip'] == pytest.approx(4 / step_s)
  assert e['images_per_sec_per_chip_peak'] == pytest.approx(2 * e['images_per_sec_per_chip'])
  assert e['epoch_s'] == pytest.approx(r['steps_per_epoch'] * step_s)
  assert e['stage_s'] == pytest.approx(r['total_steps'] * step_s)
  assert e['chip_days'] == pytest.approx(4 * r['total_steps'] * step_s / 86400)
  # Fashion-MNIST-LT: 14,786 training images (100 per class held out for val) in batches of 16;
  # 16 BFT epochs.
  assert (r['steps_per_epoch'], r['total_steps']) == (924, 16 * 924)


def test_a_stage_that_does_not_fit_gets_an_override_that_the_tool_reports_fitting(scenarios):
  lines = scenarios['small']['lines']
  text = '\n'.join(lines)
  assert scenarios['small']['rc'] == aot.EXIT_DOES_NOT_FIT, text
  base = [line for line in lines if 'memory per chip' in line][0]
  assert 'of 12.4 MiB per chip' in base and 'does not fit (limit 90%)' in base, base
  assert 'bft does not fit; searching' in text, text
  found = [line for line in lines if line.startswith('  bft fits with: ')]
  assert len(found) == 1, text
  override = found[0][len('  bft fits with: '):]
  keys = {item.split('=')[0] for item in override.split()}
  assert keys and keys <= {'--config.grad_accum_steps', '--config.mesh.fsdp',
                           '--config.mesh.data', '--config.remat'}, override
  # The search compiled that candidate and found it within 90% of the (patched) HBM ...
  tried = [line for line in lines if line.startswith(f'  try {override}: ')]
  assert len(tried) == 1 and ': fits (compiled in' in tried[0], text
  # ... and the command's last line repeats it to rerun with.
  assert lines[-1] == ('does not fit as configured; rerun with the overrides found: CMD '
                       + override), lines[-1]
  # The plan as data (--aot_json): the base compile, the fix the search found, and libtpu's
  # version next to jax's.
  record = scenarios['small']['record']
  assert record['fits'] is False and record['topology']['platform'] == 'tpu'
  assert abs(record['topology']['usable_bytes_per_device'] - SMALL_HBM) <= 1
  assert record['stages']['bft']['fits'] is False
  assert record['stages']['bft']['flops_source'] == 'xla'
  assert record['fixes']['bft']['fits'] is True
  assert ' '.join(f'--config.{k}={v}' for k, v in
                  record['fixes']['bft']['overrides'].items()) == override
  assert record['made']['versions']['libtpu'] == '0.0.42.1'


@pytest.mark.parametrize('variable, target, install', [
    ('LIVT_LIBTPU_DIR', 'v5e:2x2', 'pip install --target .libtpu -r requirements-tpu-aot.txt'),
    ('LIVT_CUDA_AOT_DIR', 'h100:8', 'pip install --target .cuda-aot -r requirements-gpu-aot.txt'),
])
def test_without_the_compiler_one_line_says_how_to_install_it_and_exit_2(
    tmp_path, variable, target, install):
  env = dict(os.environ, **{variable: str(tmp_path)})  # an empty dir; the venv has neither
  proc = subprocess.run(
      [sys.executable, '-m', 'livt_jax.main', '--config=configs/fashion_mnist_lt.py',
       f'--aot={target}'], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
  assert proc.returncode == 2, proc.stdout + proc.stderr
  lines = (proc.stdout + proc.stderr).strip().splitlines()
  assert len(lines) == 1, lines
  assert install in lines[0], lines[0]


def test_topology_names():
  assert aot.parse_topology('v5p:2x2x2').num_chips == 8
  assert aot.parse_topology('v5e:4x4').accelerator_type == 'v5litepod-16'
  assert aot.parse_topology('v4:2x2x4').accelerator_type == 'v4-32'  # cores: 2 per chip
  for bad in ('v5e-16', 'v5e:4x4x4', 'v5p:2x2', 'tpu:2x2'):
    with pytest.raises(aot.AotError, match='--aot='):
      aot.parse_topology(bad)


def test_the_abstract_batch_is_what_the_input_pipeline_sends():
  config = tiny_config(**{'bft.random_erase_prob': 0.25})
  data = aot.DataFacts('fashion_mnist_lt', 14886, 10, 1)
  shapes = {k: (v.shape, str(v.dtype)) for k, v in
            aot.abstract_batch(config, 'bft', data, 32, sharding=None).items()}
  assert shapes == {'image': ((32, 28, 28, 1), 'uint8'), 'label': ((32,), 'int32'),
                    'erase_box': ((32, 4), 'int32'), 'erase_seed': ((32,), 'uint32')}
  shapes = {k: (v.shape, str(v.dtype)) for k, v in
            aot.abstract_batch(config, 'mgp', data, 32, sharding=None).items()}
  assert shapes == {'image': ((32, 28, 28, 1), 'uint8'), 'label': ((32,), 'int32')}


def test_collectives_are_read_from_hlo_text():
  hlo = '\n'.join([
      '  %all-reduce.1 = (bf16[32,32]{1,0}, f32[8]{0}) all-reduce(%a, %b), channel_id=1',
      '  %all-gather-start = (bf16[16,128]{1,0}, bf16[32,128]{1,0}) all-gather-start(%p)',
      '  %all-gather-done = bf16[32,128]{1,0:T(8,128)(2,1)} all-gather-done(%all-gather-start)',
      '  %reduce-scatter.3 = f32[4,16]{1,0} reduce-scatter(%g), dimensions={0}',
      '  %add.2 = f32[8]{0} add(%x, %y)',
  ])
  assert aot.collectives(hlo) == {
      'all-reduce': (1, 32 * 32 * 2 + 8 * 4), 'all-gather': (1, 32 * 128 * 2),
      'reduce-scatter': (1, 4 * 16 * 4)}


def test_accounting_turns_a_step_rate_into_tflops_and_mfu():
  n = 256
  step = jax.jit(lambda a, b: (a @ b, None))
  x = jnp.ones((n, n), jnp.float32)
  acc = chips.accounting_for_step(step, x, x, jax.devices()[:1], override_tflops=0.5)
  assert acc.flops_per_step == pytest.approx(2 * n ** 3, rel=0.01)  # the matmul
  s = acc.scalars(steps_per_sec=10.0, global_batch=32)
  assert s['images_per_sec_per_device'] == 320
  assert s['tflops_per_sec_per_device'] == pytest.approx(acc.flops_per_step * 10 / 1e12)
  assert s['mfu'] == pytest.approx(s['tflops_per_sec_per_device'] / 0.5)
  # On CPU the peak is unknown: TFLOP/s, no MFU.
  cpu = chips.accounting_for_step(step, x, x, jax.devices()[:1])
  assert cpu.peak_flops is None and 'mfu' not in cpu.scalars(10.0, 32)
  assert chips.for_device_kind('TPU v5 lite').name == 'v5e'
  assert chips.for_device_kind('TPU v5').name == 'v5p'
  assert chips.for_device_kind('NVIDIA H100 80GB HBM3').peak_tflops == 989.0
  assert chips.for_device_kind('cpu') is None
  # The AOT tests compiled in a child process: libtpu never reached this one.
  assert 'libtpu' not in sys.modules and not any('.libtpu' in p for p in sys.path)


def test_flops_of_an_accumulating_step_count_every_micro_batch():
  """XLA counts a loop body once: the scan over micro-batches has to be scaled back."""
  from livt_jax.engine import sharding, steps, train  # pylint: disable=g-import-not-at-top
  flops = {}
  for accum in (1, 2):
    config = tiny_config(**{'grad_accum_steps': accum, 'bft.batch_size': 64})
    mesh = sharding.make_mesh(config, jax.devices()[:2])
    stage = train.build_stage(config, 'bft', mesh, 14886, 1, 10)
    step = train.compile_step(stage, steps.bft_loss_fn(stage.model, config, [100] * 10), mesh,
                              config)
    batch = aot.abstract_batch(config, 'bft', aot.DataFacts('fashion_mnist_lt', 14886, 10, 1),
                               64, sharding.batch_sharding(mesh))
    compiled = step.lower(stage.abstract_state, batch).compile()
    flops[accum] = (chips.compiled_flops(compiled), chips.compiled_flops(compiled, accum))
  assert flops[2][0] < 0.6 * flops[1][0]  # what XLA reports: about half
  assert flops[2][1] == pytest.approx(flops[1][0], rel=0.1)  # scaled: the same work


def _scalars(event_dir) -> dict:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  out = {}
  for name in sorted(os.listdir(event_dir)):
    for event in tf.compat.v1.train.summary_iterator(os.path.join(event_dir, name)):
      for v in event.summary.value:
        out.setdefault(v.tag, {})[event.step] = float(tf.make_ndarray(v.tensor))
  return out


def test_a_cpu_run_logs_tflops_and_mfu_from_the_compiled_step(tmp_path, monkeypatch, caplog):
  seen, real = [], chips.accounting_for_step

  def recording(*args, **kwargs):
    seen.append(real(*args, **kwargs))
    return seen[-1]

  monkeypatch.setattr(chips, 'accounting_for_step', recording)
  config = tiny_config(**{'stages': 'bft', 'bft.init_from': 'scratch', 'max_steps': 4,
                          'log_every_steps': 2, 'checkpoint_every_steps': 100,
                          'peak_tflops': 0.25})
  # The step is compiled for abstract arguments on a second thread while the state is made;
  # the first real call must reuse that executable, not compile the step again.
  jax.config.update('jax_log_compiles', True)
  try:
    with caplog.at_level(logging.WARNING):
      run.run(config, str(tmp_path / 'run'))
  finally:
    jax.config.update('jax_log_compiles', False)
  step_compiles = [r for r in caplog.records
                   if 'Finished XLA compilation of jit(step)' in r.getMessage()]
  assert len(step_compiles) == 1, [r.getMessage() for r in step_compiles]
  assert step_compiles[0].threadName.startswith('compile_step')
  assert len(seen) == 1 and seen[0].flops_per_step > 0 and seen[0].num_devices == 8
  scalars = _scalars(tmp_path / 'run' / 'tensorboard' / 'bft')
  for step in (2, 4):
    steps_per_sec = scalars['images_per_sec'][step] / 16
    tflops = scalars['tflops_per_sec_per_device'][step]
    assert tflops == pytest.approx(seen[0].flops_per_step * steps_per_sec / 1e12, rel=1e-5)
    assert scalars['mfu'][step] == pytest.approx(tflops / 0.25, rel=1e-5)
    assert scalars['images_per_sec_per_device'][step] == pytest.approx(
        scalars['images_per_sec'][step] / 8, rel=1e-5)
