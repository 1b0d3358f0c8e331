"""LiVT end to end through `python -m livt_jax.main` on tiny settings, and exact resume."""
import json
import os
import subprocess
import sys

import jax
import numpy as np

from livt_jax.engine import run
from engine_helpers import tiny_config

ROOT = os.path.join(os.path.dirname(__file__), '..')


def test_main_runs_mgp_bft_evaluate_and_writes_report(tmp_path):
  workdir = tmp_path / 'run'
  args = ['--config=configs/fashion_mnist_lt.py', f'--workdir={workdir}',
          '--config.model.variant=nano', '--config.model.decoder_depth=1',
          '--config.model.decoder_width=32', '--config.model.decoder_heads=2',
          '--config.mgp.batch_size=32', '--config.bft.batch_size=32', '--config.max_steps=3',
          '--config.log_every_steps=1', '--config.checkpoint_every_steps=2',
          # Smoothing that inverts the raw logits' order with the default's tau 1.5: a warning.
          '--config.bft.label_smoothing=0.1']
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2')
  r = subprocess.run([sys.executable, '-m', 'livt_jax.main', *args], cwd=ROOT, env=env,
                     capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  assert '| top-1 | Many | Medium | Few | ECE | MCE |' in r.stdout
  assert 'bft.label_smoothing=0.1 with bft.loss=bal_bce (tau 1.5)' in r.stdout + r.stderr
  report = json.loads((workdir / 'report' / 'report.json').read_text())
  assert report['num_examples'] == 10000
  assert report['group_sizes'] == {'many': 4, 'medium': 3, 'few': 3}
  assert report['class_counts'][0] == 5900 and sum(report['class_counts']) == 14786  # 100 per class held out for val
  for name in ('report.md', 'reliability.png', 'per_class_accuracy.png'):
    assert (workdir / 'report' / name).stat().st_size > 0
  assert sorted(os.listdir(workdir / 'bft' / 'checkpoints'))[-1] == '3'
  assert os.listdir(workdir / 'tensorboard' / 'mgp')

  # The saved model evaluated alone (here on 8 devices instead of 2) gives the same report.
  config = tiny_config(stages='evaluate', precision='bf16_matmul')  # as the config trained
  config.evaluate.checkpoint = str(workdir / 'bft' / 'checkpoints')
  again = run.run(config, str(tmp_path / 'eval_only'))
  assert again['num_examples'] == 10000
  np.testing.assert_allclose(again['top1'], report['top1'], atol=2e-4)
  np.testing.assert_allclose(again['per_class_accuracy'], report['per_class_accuracy'], atol=2e-3)


def test_resume_gives_the_same_parameters(tmp_path):
  def params_after(workdir, *max_steps):
    for m in max_steps:
      config = tiny_config(**{'stages': 'bft', 'max_steps': m, 'checkpoint_every_steps': 2,
                              'bft.init_from': 'scratch'})
      run.run(config, str(workdir))
    from livt_jax.engine import sharding, train  # pylint: disable=g-import-not-at-top
    config = tiny_config(stages='bft')
    mesh = sharding.make_mesh(config)
    stage = train.build_stage(config, 'bft', mesh, 14886, 1, 10)
    return jax.device_get(train.load_params(config, stage, str(workdir / 'bft' / 'checkpoints')))

  straight = params_after(tmp_path / 'a', 4)
  resumed = params_after(tmp_path / 'b', 2, 4)
  for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(a, b)
