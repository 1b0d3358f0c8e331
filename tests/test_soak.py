"""The random-kill soak's own checks (tools/soak.py): it sees a save in flight, locally and in a
bucket, and its bit-identity check fails on a one-ulp difference.

The soak itself takes minutes (a run per kill), more than CI's budget: its last results and
command are in docs/cloud_storage.md ("Soak").
"""
import importlib.util
import os

import numpy as np
import pytest

from gcs_emulator import gcs  # pylint: disable=unused-import

ROOT = os.path.join(os.path.dirname(__file__), '..')


def _soak():
  spec = importlib.util.spec_from_file_location('soak', os.path.join(ROOT, 'tools', 'soak.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_the_identity_check_fails_on_one_ulp_and_on_a_dtype():
  soak = _soak()
  a = {'w': np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), 'step': np.int32(7)}
  soak._assert_identical('same', a, {k: np.copy(v) for k, v in a.items()})
  moved = np.copy(a['w'])
  moved[1, 2] = np.nextafter(moved[1, 2], np.float32(2))
  with pytest.raises(soak.Fail, match=r'^w: array 1 differs \(float32\(3, 4\) vs float32\(3, 4\)'):
    soak._assert_identical('w', a, {**a, 'w': moved})
  with pytest.raises(soak.Fail, match=r'array 0 differs \(int32\(\) vs int64\(\)'):
    soak._assert_identical('step', a, {**a, 'step': np.int64(7)})


def test_a_save_in_flight_is_seen_in_a_local_workdir(tmp_path):
  soak = _soak()
  watch = soak.LocalDir(str(tmp_path))
  assert watch.in_flight() == set()  # no checkpoint folders yet
  (tmp_path / 'mgp' / 'checkpoints' / '3').mkdir(parents=True)
  (tmp_path / 'bft' / 'best' / '6.orbax-checkpoint-tmp').mkdir(parents=True)
  assert watch.in_flight() == {'bft/best/6.orbax-checkpoint-tmp'}


def test_a_save_in_flight_is_seen_in_a_bucket(gcs):  # pylint: disable=redefined-outer-name
  soak = _soak()
  gcs.make_bucket(soak.BUCKET)
  watch = soak.BucketDir(gcs, 'killed/')
  for name in ('killed/mgp/checkpoints/3/state/manifest', 'killed/mgp/checkpoints/3/'
               'commit_success.txt', 'killed/mgp/checkpoints/6/state/manifest',
               'straight/bft/checkpoints/9/state/manifest'):
    gcs.upload(soak.BUCKET, name, b'x')
  assert watch.in_flight() == {'mgp/checkpoints/6 (1 objects)'}
  gcs.upload(soak.BUCKET, 'killed/mgp/checkpoints/6/data/x', b'x')  # the save goes on
  assert watch.in_flight() == {'mgp/checkpoints/6 (2 objects)'}
  gcs.upload(soak.BUCKET, 'killed/mgp/checkpoints/6/commit_success.txt', b'x')
  assert watch.in_flight() == set()


def test_bad_arguments_exit_2(capsys):
  assert _soak().main(['--kills=-1']) == 2
  assert capsys.readouterr().err == 'soak: error: --kills and --max_steps must be >= 0\n'
