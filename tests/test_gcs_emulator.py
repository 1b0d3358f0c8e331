"""gs:// against a real Cloud Storage API (fake-gcs-server on loopback, tests/gcs_emulator.py):
the libraries that talk to the bucket (TensorFlow's gfile through etils and TensorBoard,
TensorStore under orbax) run unpatched, as for a user.

A tiny MGP -> BFT -> evaluate job with its workdir and data in the bucket, its rerun, a second
run stopped by SIGTERM and resumed bit-identically, and evaluation from the bucket's checkpoint
into another bucket workdir; then the storage errors (storage_probe) one cause at a time.
"""
import gzip
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from gcs_emulator import Emulator
from gcs_emulator import gcs  # pylint: disable=unused-import
from engine_helpers import tiny_config
from livt_jax.engine import run
from livt_jax.engine import sharding
from livt_jax.runtime import storage_probe
from livt_jax.engine import train
from livt_jax.data import fashion_mnist

ROOT = os.path.join(os.path.dirname(__file__), '..')
BUCKET = 'livt-e2e'
NUM_TEST = 500  # the test IDX files in the bucket hold the first 500 test images
TINY = ['--config=configs/fashion_mnist_lt.py', '--config.model.variant=nano',
        '--config.model.decoder_depth=1', '--config.model.decoder_width=32',
        '--config.model.decoder_heads=2', '--config.mgp.batch_size=32',
        '--config.bft.batch_size=32', '--config.max_steps=12', '--config.log_every_steps=1',
        '--config.checkpoint_every_steps=4', '--config.evals.val.every_epochs=1000.0',
        f'--config.dataset.data_dir=gs://{BUCKET}/data/fashion-mnist']


def _idx(array: np.ndarray) -> bytes:
  magic = 2049 if array.ndim == 1 else 2051
  return gzip.compress(struct.pack('>' + 'i' * (1 + array.ndim), magic, *array.shape)
                       + array.astype(np.uint8).tobytes(), compresslevel=1)


def _upload_data(emulator):
  """Fashion-MNIST's IDX files into the bucket; the test split cut to NUM_TEST images, so a
  report of NUM_TEST examples shows the data came from the bucket (not the system copy)."""
  emulator.make_bucket(BUCKET)
  src = fashion_mnist.SYSTEM_IDX_DIR
  for name in sorted(os.listdir(src)):
    data = open(os.path.join(src, name), 'rb').read()  # pylint: disable=consider-using-with
    if name.startswith('t10k'):
      data = _idx(fashion_mnist.read_idx(os.path.join(src, name))[:NUM_TEST])
    emulator.upload(BUCKET, f'data/fashion-mnist/{name}', data)


def _main(emulator, workdir, *extra, wait=True):
  proc = subprocess.Popen([sys.executable, '-m', 'livt_jax.main', f'--workdir={workdir}', *TINY,
                           *extra], cwd=ROOT, env=emulator.env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  if not wait:
    return proc
  out = proc.communicate(timeout=600)[0]
  assert proc.returncode == 0, out[-4000:]
  return out


def _events(emulator, prefix) -> dict:
  """{tag: [values]} of the TensorBoard event files under `prefix`, read over the JSON API and
  parsed as TFRecords here (length, crc, Event proto, crc)."""
  from tensorboard.compat.proto import event_pb2  # pylint: disable=g-import-not-at-top
  from tensorboard.util import tensor_util  # pylint: disable=g-import-not-at-top
  scalars = {}
  for name in emulator.names(BUCKET, prefix):
    if 'tfevents' not in name:
      continue
    data, i = emulator.read(BUCKET, name), 0
    while i < len(data):
      (length,) = struct.unpack('<Q', data[i:i + 8])
      event = event_pb2.Event.FromString(data[i + 12:i + 12 + length])
      i += 12 + length + 4
      for v in event.summary.value:
        value = tensor_util.make_ndarray(v.tensor) if v.HasField('tensor') else v.simple_value
        scalars.setdefault(v.tag, []).append(float(np.asarray(value)))
  return scalars


def _params(path, name):
  config = tiny_config(stages=name, **{'mgp.batch_size': 32, 'bft.batch_size': 32})
  mesh = sharding.make_mesh(config, jax.devices()[:1])
  stage = train.build_stage(config, name, mesh, 14786, 1, 10)
  return jax.device_get(train.load_params(config, stage, path))


def test_a_tiny_job_in_the_bucket_runs_reruns_resumes_and_evaluates(gcs, monkeypatch):  # pylint: disable=redefined-outer-name
  start = time.time()
  _upload_data(gcs)
  a, b = f'gs://{BUCKET}/runs/a', f'gs://{BUCKET}/runs/b'
  out = _main(gcs, a)
  report = json.loads(gcs.read(BUCKET, 'runs/a/report/report.json'))
  assert report['num_examples'] == NUM_TEST  # the test split of the bucket
  assert f'workdir {a}' in out

  names = gcs.names(BUCKET, 'runs/a/')
  for stage in ('mgp', 'bft'):
    steps = sorted(int(m) for m in {re.match(rf'runs/a/{stage}/checkpoints/(\d+)/', n).group(1)
                                    for n in names
                                    if re.match(rf'runs/a/{stage}/checkpoints/\d+/', n)})
    assert steps == [8, 12], (stage, steps)  # keep_checkpoints=2 of the saves at 4, 8, 12
    for step in steps:  # orbax's commit marker on a file system without atomic rename
      assert f'runs/a/{stage}/checkpoints/{step}/commit_success.txt' in names, (stage, step)
    assert not [n for n in names if f'{stage}/checkpoints/' in n and 'tmp' in n]
  for name in ('config.json', 'class_counts.json', 'report/report.md',
               'report/reliability.png', 'report/per_class_accuracy.png'):
    assert f'runs/a/{name}' in names, name
  mgp_events = _events(gcs, 'runs/a/tensorboard/mgp/')
  assert len(mgp_events['loss']) == 12 and all(np.isfinite(mgp_events['loss']))
  assert _events(gcs, 'runs/a/tensorboard/eval/')['top1'] == pytest.approx([report['top1']])
  print(f'first run: {time.time() - start:.1f} s')

  # The same command again: both stages found finished, the evaluation repeated.
  again = _main(gcs, a)
  assert not re.search(r'(mgp|bft) +\d+/12', again) and 'resuming from' not in again, again[-3000:]
  again_report = json.loads(gcs.read(BUCKET, 'runs/a/report/report.json'))
  assert again_report['top1'] == report['top1']
  print(f'+ rerun: {time.time() - start:.1f} s')

  # A second run stopped by SIGTERM in MGP and resumed ends with a's parameters, bit for bit.
  proc, lines = _main(gcs, b, wait=False), []
  for line in proc.stdout:
    lines.append(line)
    if re.search(r'mgp +3/12', line):
      proc.send_signal(signal.SIGTERM)
      break
  out = ''.join(lines) + proc.communicate(timeout=300)[0]
  assert proc.returncode == 75, out[-4000:]
  step = int(re.search(r'mgp: stopped by a signal at step (\d+)', out).group(1))
  assert 3 <= step < 12
  resumed = _main(gcs, b)
  assert f'mgp: resuming from step {step} in {b}/mgp/checkpoints' in resumed, resumed[-3000:]
  print(f'+ SIGTERM at step {step} and resume: {time.time() - start:.1f} s')

  # In this process: TensorStore and TensorFlow read the bucket through the emulator's env.
  for k, v in gcs.env({}).items():
    monkeypatch.setenv(k, v)
  for stage in ('mgp', 'bft'):
    for x, y in zip(jax.tree.leaves(_params(f'{a}/{stage}/checkpoints', stage)),
                    jax.tree.leaves(_params(f'{b}/{stage}/checkpoints', stage))):
      np.testing.assert_array_equal(x, y)
  assert json.loads(gcs.read(BUCKET, 'runs/b/report/report.json'))['top1'] == report['top1']

  # Evaluate-only from a's checkpoint in the bucket, into another bucket workdir.
  config = tiny_config(stages='evaluate', precision='bf16_matmul', **{
      'evaluate.checkpoint': f'{a}/bft/checkpoints',
      'dataset.data_dir': f'gs://{BUCKET}/data/fashion-mnist'})
  only = run.run(config, f'gs://{BUCKET}/runs/eval')
  assert only['num_examples'] == NUM_TEST
  np.testing.assert_allclose(only['top1'], report['top1'], atol=1 / NUM_TEST + 1e-6)
  assert 'runs/eval/report/report.json' in gcs.names(BUCKET, 'runs/eval/')
  print(f'whole test: {time.time() - start:.1f} s')


# --- Unreachable or forbidden storage: one line, exit 2, within the probe's bound --------------

def _cli_error(env, workdir, *extra):
  """(stderr's lines, exit code, seconds) of the CLI with a gs:// workdir that fails."""
  start = time.time()
  r = subprocess.run([sys.executable, '-m', 'livt_jax.main', f'--workdir={workdir}', *TINY[:-1],
                      '--config.storage.probe_timeout_s=20', *extra], cwd=ROOT, env=env,
                     capture_output=True, text=True, timeout=300)
  lines = [l for l in r.stderr.splitlines() if l.strip()]
  return lines, r.returncode, time.time() - start


def test_a_missing_bucket_and_a_stopped_emulator_are_one_line_and_exit_2(gcs):  # pylint: disable=redefined-outer-name
  lines, code, seconds = _cli_error(gcs.env(), 'gs://no-such-bucket/runs/a')
  print(f'missing bucket: {seconds:.1f} s: {lines}')
  assert code == 2 and len(lines) == 1, lines
  assert lines[0] == (
      'livt_jax: error: cannot use --workdir=gs://no-such-bucket/runs/a: no such bucket '
      'gs://no-such-bucket (or this account may not see it); create it (gcloud storage buckets '
      'create gs://no-such-bucket) or fix the name')

  env = gcs.env()
  gcs.stop()  # the emulator and its proxy: nothing listens any more
  lines, code, seconds = _cli_error(env, 'gs://livt/runs/a')
  print(f'stopped emulator: {seconds:.1f} s: {lines}')
  assert code == 2 and len(lines) == 1, lines
  assert lines[0].startswith('livt_jax: error: cannot use --workdir=gs://livt/runs/a: storage '
                             'unreachable: cannot connect to 127.0.0.1:'), lines
  assert 'after 3 attempt(s); check the network, firewall and proxy settings' in lines[0]


@pytest.mark.parametrize('status,cause', [(403, 'no permission on gs://b-403'),
                                          (401, 'no credentials')])
def test_a_forbidden_or_unauthenticated_bucket_is_named(tmp_path, monkeypatch, status, cause):
  """The proxy answers TensorFlow's requests with 403 / 401, as GCS does (the emulator
  cannot)."""
  emulator = Emulator(str(tmp_path), answer=status)
  try:
    for k, v in emulator.env({}).items():
      monkeypatch.setenv(k, v)
    start = time.time()
    with pytest.raises(storage_probe.StorageError) as e:
      storage_probe.check(f'gs://b-{status}/data', 'dataset.data_dir', timeout_s=20)
    print(f'HTTP {status}: {time.time() - start:.2f} s: {e.value}')
  finally:
    emulator.stop()
  message = str(e.value)
  assert message.startswith(f'cannot use dataset.data_dir=gs://b-{status}/data: {cause}'), message
  assert '\n' not in message
  assert ('gcloud auth application-default login' if status == 401 else
          'grant this account read and write access') in message


def test_no_dns_and_no_answer_are_bounded(monkeypatch):
  """A proxy host that does not resolve; then a listener that never answers (TensorFlow would
  wait and retry for minutes): both end within the configured bound."""
  monkeypatch.setenv('HTTPS_PROXY', 'http://no-such-host.invalid:3128')
  start = time.time()
  with pytest.raises(storage_probe.StorageError, match=r'^cannot use --workdir=gs://b/x: no '
                     r'network or DNS: cannot resolve no-such-host.invalid'):
    storage_probe.check('gs://b/x', '--workdir', timeout_s=5, retries=2)
  print(f'no DNS: {time.time() - start:.2f} s')
  assert time.time() - start < 10

  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as silent:  # accepts connections, never answers
    silent.bind(('127.0.0.1', 0))
    silent.listen(16)
    env = dict(os.environ, HTTPS_PROXY=f'http://127.0.0.1:{silent.getsockname()[1]}',
               GOOGLE_AUTH_TOKEN_FOR_TESTING='dummy')
    # In a process of its own: TensorFlow's call goes on after the deadline, and the process
    # must still end with the one line (storage_probe.exit_now_if_abandoned).
    lines, code, seconds = _cli_error(env, 'gs://b/x', '--config.storage.probe_timeout_s=3')
  print(f'no answer: {seconds:.1f} s (with the start of python, jax, TensorFlow): {lines}')
  assert code == 2 and lines == [
      'livt_jax: error: cannot use --workdir=gs://b/x: storage unreachable: no answer within 3 '
      's (storage.probe_timeout_s); check the network, or raise '
      '--config.storage.probe_timeout_s on a slow link'], lines


def test_probe_settings_are_checked():
  config = tiny_config(**{'storage.probe_timeout_s': 0.0})
  with pytest.raises(storage_probe.StorageError, match=r'probe_timeout_s=0.0: use a number'):
    storage_probe.check_config(config, 'gs://b/x')


def test_s3_is_refused_in_one_line():
  with pytest.raises(storage_probe.StorageError, match=r'^dataset.data_dir=s3://b/d: s3:// is '
                     r'not supported .* mount the bucket as a local folder'):
    storage_probe.check('s3://b/d', 'dataset.data_dir')
