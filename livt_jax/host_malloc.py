"""glibc malloc settings for CPU runs, applied by re-executing the process once at start-up.

Why: XLA's CPU runtime allocates each executable's temporary buffer (0.66 GB for the ViT-Ti
32-px BFT step at batch 128) afresh on every call, from a worker thread. glibc serves such a
request from a secondary arena with a fresh `mmap`, and hands it back with `munmap` afterwards,
so every step page-faults the whole buffer in again: measured here, 1.4 s of kernel time per
2.6-3.4 s step. With one arena, no mmap and no trimming, the freed buffer stays in the heap and
the next step reuses it (kernel time 0.03 s/step, ~25% more images/s).

These settings are glibc *tunables*: they are read once when the process starts, so they cannot
be set from Python afterwards (mallopt caps the trim threshold at 2 GiB, too low here). The
entry points call `reexec_if_useful()` first: on a CPU-only Linux/glibc host whose environment
does not set malloc tunables already, it replaces the process (same PID, same arguments) by one
with them. Accelerator hosts are left alone (their big buffers live on the device). Set
`LIVT_MALLOC_TUNING=0` to opt out.
"""
import glob
import os
import platform
import sys

TUNABLES = ('glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:'
            'glibc.malloc.trim_threshold=68719476736')
OPT_OUT = 'LIVT_MALLOC_TUNING'
# What GLIBC_TUNABLES was before the re-exec ('' if unset), so child processes that should run
# with the user's own allocator settings (the PyTorch side of the benchmark) can get them back.
BEFORE = 'LIVT_GLIBC_TUNABLES_BEFORE'
_ACCELERATOR_DEVICE_FILES = ('/dev/nvidia[0-9]*', '/dev/accel[0-9]*', '/dev/vfio/[0-9]*',
                             '/dev/kfd')


def accelerator_present(environ) -> bool:
  """True if JAX will (probably) run on a GPU/TPU: JAX_PLATFORMS, else the device files."""
  platforms = environ.get('JAX_PLATFORMS', '').strip()
  if platforms:
    return platforms.split(',')[0].strip() != 'cpu'
  return any(glob.glob(pattern) for pattern in _ACCELERATOR_DEVICE_FILES)


def tuned_environ(environ) -> dict | None:
  """The environment to re-exec with, or None when nothing should change."""
  if environ.get(OPT_OUT, '1') == '0' or BEFORE in environ:
    return None
  if not sys.platform.startswith('linux') or platform.libc_ver()[0] != 'glibc':
    return None
  before = environ.get('GLIBC_TUNABLES', '')
  if 'glibc.malloc.' in before or accelerator_present(environ):
    return None  # the user chose malloc settings, or the big buffers are on a device
  env = dict(environ)
  env['GLIBC_TUNABLES'] = f'{before}:{TUNABLES}' if before else TUNABLES
  env[BEFORE] = before
  return env


def untuned_environ(environ) -> dict:
  """`environ` with GLIBC_TUNABLES as before `reexec_if_useful` changed it, and opted out."""
  env = dict(environ)
  env[OPT_OUT] = '0'
  if BEFORE in env:
    before = env.pop(BEFORE)
    if before:
      env['GLIBC_TUNABLES'] = before
    else:
      env.pop('GLIBC_TUNABLES', None)
  return env


def is_tuned(environ=None) -> bool:
  return BEFORE in (os.environ if environ is None else environ)


def reexec_if_useful() -> None:
  """Replaces this process by itself with the malloc tunables set, when useful (see module doc)."""
  env = tuned_environ(os.environ)
  if env is None:
    return
  argv = [sys.executable] + sys.orig_argv[1:]
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, argv, env)
