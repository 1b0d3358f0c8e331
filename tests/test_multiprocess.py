"""Two local JAX processes (CPU, gloo collectives) train exactly like one process.

Both runs go through `python -m livt_jax.main` on the embedded data with the same global batch
and mesh (data 2 x fsdp 2): one process with 4 devices, or two processes with 2 devices each.
BFT starts at its peak learning rate (no warm-up), so after 4 steps the parameters have moved
~1e-3, and a process that used only its own half of the gradient ends ~0.5 of the update away.
"""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import portpicker

from livt_jax.engine import sharding
from livt_jax.engine import train
from engine_helpers import assert_same_training, tiny_config

ROOT = os.path.join(os.path.dirname(__file__), '..')
ARGS = ['--config=configs/fashion_mnist_lt.py', '--config.stages=bft,evaluate',
        '--config.model.variant=nano', '--config.bft.batch_size=32', '--config.max_steps=4',
        '--config.bft.warmup_epochs=0', '--config.bft.init_from=scratch',
        '--config.bft.head_bias_init=zero',  # `_stage` rebuilds the start without class counts
        '--config.bft.ema_decay=0',  # compare the trained weights: an EMA barely moves in 4 steps
        '--config.mesh.fsdp=2', '--config.log_every_steps=1', '--config.checkpoint_every_steps=2']


def _launch(workdir, num_processes):
  devices = 4 // num_processes
  port = portpicker.pick_unused_port()
  procs = []
  for pid in range(num_processes):
    env = dict(os.environ, JAX_PLATFORMS='cpu',
               XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
    if num_processes > 1:
      env.update(LIVT_COORDINATOR_ADDRESS=f'localhost:{port}',
                 LIVT_NUM_PROCESSES=str(num_processes), LIVT_PROCESS_ID=str(pid))
    procs.append(subprocess.Popen(
        [sys.executable, '-m', 'livt_jax.main', f'--workdir={workdir}', *ARGS], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
  outs = [p.communicate(timeout=600)[0] for p in procs]
  failed = [f'process {i} exited {p.returncode}:\n{out[-3000:]}'
            for i, (p, out) in enumerate(zip(procs, outs)) if p.returncode != 0]
  assert not failed, '\n'.join(failed)  # every failing process's own last lines
  return outs


def _stage():
  config = tiny_config(stages='bft', **{'bft.batch_size': 32, 'bft.ema_decay': 0.0})  # as ARGS
  mesh = sharding.make_mesh(config, jax.devices()[:1])
  return config, train.build_stage(config, 'bft', mesh, 14886, 1, 10)


def _final_params(workdir):
  config, stage = _stage()
  return jax.device_get(train.load_params(config, stage, os.path.join(workdir, 'bft',
                                                                        'checkpoints')))


def test_two_processes_match_one(tmp_path):
  one, two = tmp_path / 'one', tmp_path / 'two'
  _launch(one, 1)
  outs = _launch(two, 2)
  table = '| top-1 | Many | Medium | Few | ECE | MCE |'
  assert table in outs[0] and table not in outs[1]  # only process 0 reports
  start = jax.device_get(_stage()[1].init_state(jax.random.key(0), None).params)
  assert_same_training(start, _final_params(one), _final_params(two))
  r1 = json.loads((one / 'report' / 'report.json').read_text())
  r2 = json.loads((two / 'report' / 'report.json').read_text())
  assert r2['num_examples'] == 10000
  np.testing.assert_allclose(r2['top1'], r1['top1'], atol=2e-4)  # at most 2 flipped argmaxes
