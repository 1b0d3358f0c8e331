"""Sweeps: the run plan, the aggregate against NumPy, and a real two-point sweep with a rerun."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from livt_jax.tools import sweep
from livt_jax.tools import sweep_report

ROOT = os.path.join(os.path.dirname(__file__), '..')


def test_plan_shares_pretraining_per_seed_unless_a_key_changes_it():
  axes = sweep.parse_axes(['bft.loss=ce,bal_bce', 'bft.tau=0.5,1'])
  pretrain, finetune = sweep.plan_runs(axes, [0, 1], '/r')
  assert [p['workdir'] for p in pretrain] == ['/r/seed_0/pretrain', '/r/seed_1/pretrain']
  assert len(finetune) == 8
  run = finetune[0]
  assert run['workdir'] == '/r/seed_0/bft.loss=ce,bft.tau=0.5'
  assert run['overrides']['bft.init_from'] == '/r/seed_0/pretrain/mgp/checkpoints'
  assert run['overrides']['seed'] == 0 and run['overrides']['stages'] == 'bft,evaluate'
  pretrain, finetune = sweep.plan_runs(sweep.parse_axes(['mgp.epochs=1,2']), [0], '/r')
  assert [p['overrides']['mgp.epochs'] for p in pretrain] == ['1', '2']
  assert finetune[1]['overrides']['bft.init_from'] == '/r/seed_0/pretrain,mgp.epochs=2/mgp/checkpoints'


def test_bad_sweep_specs_are_refused():
  from absl import app  # pylint: disable=g-import-not-at-top
  for spec in ('bft.loss', 'bft.loss=', 'seed=0,1'):
    with pytest.raises(app.UsageError):
      sweep.parse_axes([spec])


def test_aggregate_is_mean_and_sample_std_over_seeds(tmp_path):
  axes = [('bft.loss', ['ce', 'bal_bce'])]
  _, finetune = sweep.plan_runs(axes, [0, 1, 2], str(tmp_path))
  rng = np.random.default_rng(0)
  written = {}
  for run in finetune:
    r = {m: float(rng.uniform()) for m in sweep_report.METRICS}
    r['best_on_val'] = {m: float(rng.uniform()) for m in sweep_report.METRICS}
    if run['point']['bft.loss'] == 'bal_bce':
      r['best_on_val']['selected_on'] = 'val balanced_top1'
    r['evals'] = {'val': {'top1': float(rng.uniform())}}
    if run['point']['bft.loss'] == 'bal_bce':  # a class-imbalanced val: compared on this
      r['evals']['val']['balanced_top1'] = float(rng.uniform())
    os.makedirs(os.path.join(run['workdir'], 'report'))
    with open(os.path.join(run['workdir'], 'report', 'report.json'), 'w') as f:
      json.dump(r, f)
    written.setdefault(run['point']['bft.loss'], []).append(r)
  rows = sweep_report.aggregate(axes, finetune)
  for row in rows:
    reps = written[row['point']['bft.loss']]
    for m in sweep_report.METRICS:
      x = 100 * np.array([r[m] for r in reps])
      np.testing.assert_allclose(row[m], (x.mean(), x.std(ddof=1)))
      y = 100 * np.array([r['best_on_val'][m] for r in reps])
      np.testing.assert_allclose(row['best_' + m], (y.mean(), y.std(ddof=1)))
    v = 100 * np.array([r['evals']['val'].get('balanced_top1', r['evals']['val']['top1'])
                        for r in reps])
    assert (row['point']['bft.loss'] == 'bal_bce') == (
        'balanced_top1' in reps[0]['evals']['val'])
    np.testing.assert_allclose(row['val_top1'], (v.mean(), v.std(ddof=1)))
  assert [row['selected_on'] for row in rows] == [['val top1'], ['val balanced_top1']]
  md = sweep_report.markdown(axes, rows)
  assert md.count('| 3/3 |') == 2
  # Reports without the field (written before it existed) chose on val top-1.
  assert 'the best val balanced_top1 / val top1 (never' in md
  assert sweep_report.plot(axes, rows, tmp_path / 'p.png') and (tmp_path / 'p.png').exists()


def test_sweep_runs_shares_mgp_and_skips_finished_runs_on_rerun(tmp_path):
  root = tmp_path / 'sweep'
  tiny = ['--config.model.variant=nano', '--config.model.decoder_depth=1',
          '--config.model.decoder_width=32', '--config.model.decoder_heads=2',
          '--config.mgp.batch_size=32', '--config.bft.batch_size=32', '--config.max_steps=2']
  cmd = [sys.executable, '-m', 'livt_jax.tools.sweep', '--config=configs/fashion_mnist_lt.py',
         f'--workdir={root}', '--sweep=bft.loss=ce,bal_bce', '--seeds=0', '--', *tiny]
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2')
  first = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
  assert first.stdout.count('sweep: running') == 3  # one MGP, two BFT
  for name in ('bft.loss=ce', 'bft.loss=bal_bce'):
    report = json.loads((root / 'seed_0' / name / 'report' / 'report.json').read_text())
    assert report['num_examples'] == 10000 and 'best_on_val' in report
    assert report['evals']['val']['step'] == 2  # the final model on val
  table = (root / 'sweep.md').read_text()
  assert '| ce | 1/1 |' in table and '| bal_bce | 1/1 |' in table
  assert (root / 'sweep.png').exists()
  again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stdout.count('already done') == 3 and 'sweep: running' not in again.stdout
  printed = subprocess.run(cmd[:3] + ['--print_commands'] + cmd[3:], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
  lines = printed.stdout.strip().splitlines()
  assert len(lines) == 3 and '--config.stages=mgp' in lines[0]
  assert all('--config.model.variant=nano' in line for line in lines)
