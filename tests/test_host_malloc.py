"""The CPU-run malloc tunables: when the entry points re-exec, and with what environment."""
import os
import subprocess
import sys

import pytest

from livt_jax.runtime import host_malloc

ROOT = os.path.join(os.path.dirname(__file__), '..')
# Prints a line before the re-exec point and one after it: a re-exec runs the program again from
# the start, in the same process, so the 'before' line shows up twice and 'after' once.
PROBE = ('import os; show = lambda at: print(at, os.getpid(), repr(os.environ.get("GLIBC_TUNABLES")),'
         ' flush=True); show("before"); '
         'from livt_jax.runtime import host_malloc; host_malloc.reexec_if_useful(); show("after")')
glibc_linux = pytest.mark.skipif(
    host_malloc.tuned_environ({'JAX_PLATFORMS': 'cpu'}) is None,
    reason='glibc malloc tunables exist only on Linux with glibc')


def _probe(**env_overrides):
  """Runs PROBE; returns its output as (where, pid, GLIBC_TUNABLES repr) lines, and its PID."""
  env = {k: v for k, v in os.environ.items()
         if k not in ('GLIBC_TUNABLES', host_malloc.BEFORE, host_malloc.OPT_OUT)}
  env.update(env_overrides)
  proc = subprocess.Popen([sys.executable, '-c', PROBE], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err
  lines = [tuple(line.split(' ', 2)) for line in out.strip().splitlines()]
  return lines, str(proc.pid)


@glibc_linux
def test_cpu_run_reexecs_once_with_the_tunables_and_keeps_its_pid():
  lines, pid = _probe(JAX_PLATFORMS='cpu')
  tuned = repr(host_malloc.TUNABLES)
  # The program started without tunables, re-ran from the top with them, in the same process
  # (the PID Popen started), and the code after the re-exec point ran once.
  assert lines == [('before', pid, 'None'), ('before', pid, tuned), ('after', pid, tuned)], lines


@glibc_linux
def test_user_tunables_are_kept_in_front():
  lines, pid = _probe(JAX_PLATFORMS='cpu', GLIBC_TUNABLES='glibc.pthread.rseq=0')
  both = repr(f'glibc.pthread.rseq=0:{host_malloc.TUNABLES}')
  assert lines == [('before', pid, repr('glibc.pthread.rseq=0')), ('before', pid, both),
                   ('after', pid, both)], lines


@pytest.mark.parametrize('env', [
    {'JAX_PLATFORMS': 'cpu', host_malloc.OPT_OUT: '0'},          # opted out
    {'JAX_PLATFORMS': 'cuda'},                                    # accelerator run
    {'JAX_PLATFORMS': 'cpu', 'GLIBC_TUNABLES': 'glibc.malloc.arena_max=4'},  # user's own choice
])
def test_no_reexec(env):
  assert host_malloc.tuned_environ(env) is None
  lines, pid = _probe(**env)
  same = repr(env.get('GLIBC_TUNABLES'))  # untouched
  assert lines == [('before', pid, same), ('after', pid, same)], lines


@glibc_linux
def test_untuned_environ_restores_what_the_user_had_and_opts_out():
  for before in ('', 'glibc.pthread.rseq=0'):
    env = {'JAX_PLATFORMS': 'cpu', 'PATH': '/bin'}
    if before:
      env['GLIBC_TUNABLES'] = before
    tuned = host_malloc.tuned_environ(env)
    assert host_malloc.is_tuned(tuned)
    back = host_malloc.untuned_environ(tuned)
    assert back.get('GLIBC_TUNABLES', '') == before
    assert back[host_malloc.OPT_OUT] == '0' and host_malloc.tuned_environ(back) is None
    assert back['PATH'] == '/bin'
