"""The CPU-run malloc tunables: when the entry points re-exec, and with what environment."""
import os
import subprocess
import sys

import pytest

from livt_jax import host_malloc

ROOT = os.path.join(os.path.dirname(__file__), '..')
PROBE = ('from livt_jax import host_malloc; import os; host_malloc.reexec_if_useful(); '
         'print(os.getpid(), repr(os.environ.get("GLIBC_TUNABLES")))')
glibc_linux = pytest.mark.skipif(
    host_malloc.tuned_environ({'JAX_PLATFORMS': 'cpu'}) is None,
    reason='glibc malloc tunables exist only on Linux with glibc')


def _probe(**env_overrides):
  env = {k: v for k, v in os.environ.items()
         if k not in ('GLIBC_TUNABLES', host_malloc.BEFORE, host_malloc.OPT_OUT)}
  env.update(env_overrides)
  r = subprocess.run([sys.executable, '-c', PROBE], cwd=ROOT, env=env, capture_output=True,
                     text=True, timeout=120, check=True)
  return r.stdout.strip().splitlines()


@glibc_linux
def test_cpu_run_reexecs_once_with_the_tunables_and_keeps_its_pid():
  lines = _probe(JAX_PLATFORMS='cpu')
  assert len(lines) == 1, lines  # the code after the re-exec point ran once, in the new image
  assert repr(host_malloc.TUNABLES) in lines[0]


@glibc_linux
def test_user_tunables_are_kept_in_front():
  lines = _probe(JAX_PLATFORMS='cpu', GLIBC_TUNABLES='glibc.pthread.rseq=0')
  assert repr(f'glibc.pthread.rseq=0:{host_malloc.TUNABLES}') in lines[0]


@pytest.mark.parametrize('env', [
    {'JAX_PLATFORMS': 'cpu', host_malloc.OPT_OUT: '0'},          # opted out
    {'JAX_PLATFORMS': 'cuda'},                                    # accelerator run
    {'JAX_PLATFORMS': 'cpu', 'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=1'},  # user's own choice
])
def test_no_reexec(env):
  assert host_malloc.tuned_environ(env) is None
  lines = _probe(**env)
  assert len(lines) == 1
  assert repr(host_malloc.TUNABLES) not in lines[0]


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
