"""A run whose workdir is on a non-local file system: train, resume, evaluate-only, all there.

`mock://bucket/...` (tests/cloud_fakes.py) is a scheme only etils.epath knows, mapped onto a
local dir: every path of ours must go through epath (or, for TensorBoard and orbax's
TensorStore, which take gs:// natively, through `paths.native`), or the run fails or writes a
`mock:` folder into the current directory. `paths.native` is the one place mapped here.
"""
import json
import os

import numpy as np
import pytest

from cloud_fakes import mock_bucket  # pylint: disable=unused-import
from cloud_fakes import _to_local  # pylint: disable=g-bad-import-order
from engine_helpers import tiny_config
from livt_jax.runtime import paths
from livt_jax.engine import run


@pytest.fixture
def native_mapped(monkeypatch):
  real = paths.native
  monkeypatch.setattr(paths, 'native', lambda p: real(_to_local(os.fspath(p))))


def test_train_resume_and_evaluate_with_the_workdir_in_a_bucket(mock_bucket, native_mapped):  # pylint: disable=redefined-outer-name
  workdir = mock_bucket.url + '/runs/a'
  config = lambda **o: tiny_config(**{'stages': 'mgp,bft,evaluate', 'max_steps': 2,
                                      'checkpoint_every_steps': 2, **o})
  result = run.run(config(), workdir)
  local = mock_bucket.local(workdir)
  for name in ('config.json', 'class_counts.json', 'report/report.json', 'report/report.md',
               'report/reliability.png', 'report/per_class_accuracy.png'):
    assert (local / name).stat().st_size > 0, name
  for stage in ('mgp', 'bft', 'eval'):
    assert os.listdir(local / 'tensorboard' / stage), stage
  assert sorted(os.listdir(local / 'bft' / 'checkpoints')) == ['2']
  assert json.loads((local / 'report' / 'report.json').read_text())['top1'] == result['top1']

  # The same command again resumes (finds both stages finished) and re-evaluates.
  again = run.run(config(), workdir)
  assert again['top1'] == result['top1']

  # Evaluate-only from the bucket's checkpoint, into another bucket workdir.
  only = run.run(config(stages='evaluate', **{
      'evaluate.checkpoint': workdir + '/bft/checkpoints'}), mock_bucket.url + '/runs/eval')
  np.testing.assert_allclose(only['per_class_accuracy'], result['per_class_accuracy'])
  assert (mock_bucket.local(mock_bucket.url + '/runs/eval') / 'report' / 'report.md').exists()
  mock_bucket.assert_cwd_untouched()
