"""glibc malloc settings for CPU runs, applied by re-executing the process once at start-up.

Why: XLA's CPU runtime allocates each executable's temporary buffer (1.8 GB for the ViT-Ti
32-px BFT step at batch 128, 4.3 GB for the MAE step) afresh on every call. glibc serves a
request that large with a fresh `mmap` and hands it back with `munmap`, so every step
page-faults the whole buffer in again in 4 KiB pages: measured here (BFT step), ~480,000 faults
and ~1.05 s of kernel time per step.

The setting: `glibc.malloc.hugetlb=1` (glibc >= 2.35) makes malloc ask for transparent huge
pages (madvise) on the memory it maps, so the same buffer arrives in 2 MiB pages: ~1,500 faults
and ~0.26 s of kernel time per step (the kernel still zeroes the pages), the first step once
~4 s more while the kernel assembles huge pages. Memory is unchanged: the buffer is returned
after each step, the peak RSS is the step's live set.

The earlier setting (one arena, no mmap, no trimming: the freed buffer stays in the heap for the
next step) avoided the faults only on some steps and fragmented the single heap: a
multi-gigabyte buffer rarely fitted the hole the previous one left, so the heap grew by one
temporary buffer every other step (BFT: 3.2 -> 6.8 GB RSS in 5 steps; the side-by-side benchmark
reached 17 GB and was killed). Do not bring it back.

These are glibc *tunables*: read once when the process starts, so they cannot be set from
Python afterwards. The entry points call `reexec_if_useful()` first: on a CPU-only Linux/glibc
host whose environment does not set malloc tunables already, it replaces the process (same PID,
same arguments) by one with them. Accelerator hosts are left alone (their big buffers live on
the device). Set `LIVT_MALLOC_TUNING=0` to opt out. Where transparent huge pages are off
(`/sys/kernel/mm/transparent_hugepage/enabled` = never) the tunable changes nothing.
"""
import glob
import os
import platform
import sys

TUNABLES = 'glibc.malloc.hugetlb=1'
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
