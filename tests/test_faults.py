"""Faults on a real `python -m livt_jax.main`: SIGTERM mid-stage, kill -9 during an asynchronous
save, a process of a two-process run killed, and a disk that fills up during a save."""
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import portpicker

from engine_helpers import tiny_config
from livt_jax.engine import sharding
from livt_jax.engine import train

ROOT = os.path.join(os.path.dirname(__file__), '..')
TINY = ['--config=configs/fashion_mnist_lt.py', '--config.stages=mgp',
        '--config.model.variant=nano', '--config.model.decoder_depth=1',
        '--config.model.decoder_width=32', '--config.model.decoder_heads=2',
        '--config.mgp.batch_size=32', '--config.log_every_steps=1']


def _start(workdir, *extra, env=None):
  env = dict(os.environ if env is None else env, XLA_FLAGS='--xla_force_host_platform_device_count=2')
  return subprocess.Popen([sys.executable, '-m', 'livt_jax.main', f'--workdir={workdir}', *TINY,
                           *extra], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def _read_until(proc, pattern, lines):
  for line in proc.stdout:
    lines.append(line)
    if re.search(pattern, line):
      return line
  raise AssertionError(f'{pattern!r} never printed:\n{"".join(lines)[-3000:]}')


def _params(workdir, max_steps):
  config = tiny_config(stages='mgp', max_steps=max_steps, **{'mgp.batch_size': 32})
  mesh = sharding.make_mesh(config, jax.devices()[:1])
  stage = train.build_stage(config, 'mgp', mesh, 14886, 1, 10)
  return jax.device_get(train.load_params(config, stage, workdir / 'mgp' / 'checkpoints'))


def _assert_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_sigterm_saves_the_step_it_reached_and_the_rerun_is_bit_identical(tmp_path):
  args = ['--config.max_steps=300', '--config.checkpoint_every_steps=1000']
  proc, lines = _start(tmp_path / 'cut', *args), []
  _read_until(proc, r'mgp +5/300', lines)
  sent = time.time()
  proc.send_signal(signal.SIGTERM)
  out = ''.join(lines) + proc.communicate(timeout=120)[0]
  seconds = time.time() - sent
  assert proc.returncode == 75, out[-3000:]
  stopped = re.findall(r'mgp: stopped by a signal at step (\d+); checkpoint saved in (\S+)\. '
                       r'Rerun the same command to resume\.', out)
  assert len(stopped) == 1, out[-3000:]
  step = int(stopped[0][0])
  last_printed = max(int(s) for s in re.findall(r'mgp +(\d+)/300', out))
  assert 5 <= step < 300 and step == last_printed  # no step lost: the last one done is saved
  saved = sorted(int(p) for p in os.listdir(tmp_path / 'cut' / 'mgp' / 'checkpoints')
                 if p.isdigit())
  assert saved == [step]
  print(f'SIGTERM -> exit in {seconds:.1f} s, saved step {step}')

  again = subprocess.run(proc.args, cwd=ROOT, env=dict(os.environ, XLA_FLAGS=
                         '--xla_force_host_platform_device_count=2'), capture_output=True,
                         text=True, timeout=300)
  assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
  assert f'mgp: resuming from step {step} in' in again.stdout
  straight = _start(tmp_path / 'straight', *args)
  assert straight.wait(timeout=300) == 0, straight.stdout.read()[-3000:]
  _assert_equal(_params(tmp_path / 'cut', 300), _params(tmp_path / 'straight', 300))


def test_kill_9_during_an_asynchronous_save_resumes_from_the_previous_checkpoint(tmp_path):
  ckpt = tmp_path / 'mgp' / 'checkpoints'
  proc = _start(tmp_path, '--config.max_steps=400', '--config.checkpoint_every_steps=20')
  in_flight = None
  deadline = time.time() + 300
  while in_flight is None and proc.poll() is None and time.time() < deadline:
    names = os.listdir(ckpt) if ckpt.exists() else []
    done = [int(n) for n in names if n.isdigit()]
    partial = [n for n in names if 'tmp' in n and n.split('.')[0].isdigit()]
    if done and partial:  # a later save is being written while an earlier one is complete
      in_flight = partial[0]
      proc.kill()
    time.sleep(0.002)
  proc.communicate(timeout=60)
  assert in_flight is not None, 'never caught a save in flight'
  complete = max(int(n) for n in os.listdir(ckpt) if n.isdigit())
  assert int(in_flight.split('.')[0]) > complete
  rerun = subprocess.run(proc.args[:-2] + ['--config.max_steps=' + str(complete + 20),
                                           '--config.checkpoint_every_steps=20'],
                         cwd=ROOT, env=dict(os.environ, XLA_FLAGS=
                         '--xla_force_host_platform_device_count=2'), capture_output=True,
                         text=True, timeout=300)
  assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
  assert f'mgp: resuming from step {complete} in' in rerun.stdout


def test_two_processes_one_killed_the_other_exits_with_a_clear_line(tmp_path):
  port = portpicker.pick_unused_port()
  procs = []
  for pid in range(2):
    env = dict(os.environ, JAX_PLATFORMS='cpu', LIVT_COORDINATOR_ADDRESS=f'localhost:{port}',
               LIVT_NUM_PROCESSES='2', LIVT_PROCESS_ID=str(pid), LIVT_HEARTBEAT_TIMEOUT_S='10')
    procs.append(_start(tmp_path, '--config.max_steps=5000', '--config.mesh.fsdp=2', env=env))
  lines = []
  _read_until(procs[0], r'mgp +3/5000', lines)
  procs[1].kill()
  killed = time.time()
  out = procs[0].communicate(timeout=120)[0]
  seconds = time.time() - killed
  procs[1].communicate(timeout=60)
  assert seconds < 60, seconds
  assert procs[0].returncode == 1
  errors = [l for l in out.splitlines() if l.startswith('livt_jax: error:')]
  assert len(errors) == 1 and 'ended by SIG' in errors[0] and 'rerun the same command' in errors[0]
  print(f'survivor exited {seconds:.1f} s after the other process was killed')


def test_disk_full_during_a_save_is_one_clear_error_and_earlier_checkpoints_survive(
    tmp_path, monkeypatch):
  from etils import epath  # pylint: disable=g-import-not-at-top
  from livt_jax.engine import checkpointing  # pylint: disable=g-import-not-at-top
  from livt_jax.engine import run  # pylint: disable=g-import-not-at-top
  import errno  # pylint: disable=g-import-not-at-top
  import pytest  # pylint: disable=g-import-not-at-top

  real = epath.gpath.PosixGPath.write_text

  def disk_full_from_step_4(self, *args, **kwargs):
    if f'{os.sep}checkpoints{os.sep}4' in os.fspath(self):
      raise OSError(errno.ENOSPC, 'No space left on device', os.fspath(self))
    return real(self, *args, **kwargs)

  config = lambda: tiny_config(stages='mgp', max_steps=6, checkpoint_every_steps=2)
  monkeypatch.setattr(epath.gpath.PosixGPath, 'write_text', disk_full_from_step_4)
  with pytest.raises(checkpointing.CheckpointSaveError,
                     match=r'step 4 could not be written .*No space left on device.*intact '
                           r'\(steps \[2\]\).*rerun the same command: it resumes from step 2'):
    run.run(config(), str(tmp_path))
  monkeypatch.setattr(epath.gpath.PosixGPath, 'write_text', real)
  assert '2' in os.listdir(tmp_path / 'mgp' / 'checkpoints')
  _params(tmp_path, 6)  # step 2 restores
  run.run(config(), str(tmp_path))  # space back: resumes from 2 and finishes
  assert max(int(n) for n in os.listdir(tmp_path / 'mgp' / 'checkpoints') if n.isdigit()) == 6


def test_sigterm_to_one_of_two_processes_stops_both_at_the_same_saved_step(tmp_path):
  port = portpicker.pick_unused_port()
  procs = []
  for pid in range(2):
    env = dict(os.environ, JAX_PLATFORMS='cpu', LIVT_COORDINATOR_ADDRESS=f'localhost:{port}',
               LIVT_NUM_PROCESSES='2', LIVT_PROCESS_ID=str(pid))
    procs.append(_start(tmp_path, '--config.max_steps=5000', '--config.mesh.fsdp=2',
                        '--config.checkpoint_every_steps=1000', env=env))
  _read_until(procs[0], r'mgp +3/5000', [])
  procs[1].send_signal(signal.SIGTERM)  # only one process is told, as when one VM goes
  outs = [p.communicate(timeout=120)[0] for p in procs]
  assert [p.returncode for p in procs] == [75, 75], outs[0][-2000:] + outs[1][-2000:]
  stopped = re.findall(r'mgp: stopped by a signal at step (\d+)', outs[0])
  assert len(stopped) == 1 and 'stopped by a signal' not in outs[1]  # process 0 reports
  assert sorted(int(p) for p in os.listdir(tmp_path / 'mgp' / 'checkpoints')
                if p.isdigit()) == [int(stopped[0])]
