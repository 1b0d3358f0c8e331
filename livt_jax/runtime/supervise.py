"""Multi-process runs: a thin parent that turns a crash of the training process into one line.

When another process of the run dies (a lost VM, kill -9, out of memory), JAX's coordination
service notices the missing heartbeats and aborts the remaining processes from C++, with a
stack dump and no Python cleanup. The parent started here waits for the real run (the same
command, as a child), forwards SIGTERM/SIGINT to it, and when it ends by a signal prints what
happened and what to do. The child dies with the parent (Linux PR_SET_PDEATHSIG), so killing
either one stops both.
"""
import ctypes
import os
import signal
import subprocess
import sys

_CHILD = 'LIVT_SUPERVISED'
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
  try:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
  except (OSError, AttributeError):  # not Linux: the child may outlive a killed parent
    pass


def run_supervised_if_multiprocess(is_multiprocess: bool):
  """In the parent: runs the child and exits with its code. In the child: returns."""
  if os.environ.get(_CHILD) == '1':
    _die_with_parent()
    return
  if not is_multiprocess:
    return
  child = subprocess.Popen([sys.executable, *sys.orig_argv[1:]],
                           env=dict(os.environ, **{_CHILD: '1'}))
  for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, lambda signum, frame: child.send_signal(signum))
  code = child.wait()
  if code < 0:
    name = signal.Signals(-code).name
    process = os.environ.get('LIVT_PROCESS_ID', os.environ.get('SLURM_PROCID', '?'))
    print(f'livt_jax: error: process {process} of this multi-process run ended by {name}. '
          'If another process died (lost VM, kill -9, out of memory), the JAX coordination '
          'service stops the others after LIVT_HEARTBEAT_TIMEOUT_S '
          f'({os.environ.get("LIVT_HEARTBEAT_TIMEOUT_S", 30)} s) without its heartbeat. Find '
          'the first error in the logs of all processes, then rerun the same command on every '
          'host: it resumes from the last complete checkpoint.', file=sys.stderr, flush=True)
    sys.exit(1)
  sys.exit(code)
