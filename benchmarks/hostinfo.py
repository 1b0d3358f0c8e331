"""What a benchmark JSON records about where and how it ran: CPU, versions, load, command.

A figure without its host cannot be re-checked: every benchmark JSON carries `host()` and the
load averages before and after (`load()`), and `record()` puts them next to the figures.
"""
import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys

# The flags that decide a CPU step's speed here (bf16 dots, wide vectors); all flags are kept
# in the JSON, these are also shown in the rendered tables.
KEY_FLAGS = ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16', 'amx_tile', 'avx512_vnni')
PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'numpy', 'grain', 'torch', 'torchvision', 'timm')


def cpuinfo(path: str = '/proc/cpuinfo') -> dict:
  """{'model': the first 'model name', 'flags': sorted flags} of /proc/cpuinfo ({} elsewhere)."""
  try:
    with open(path) as f:
      text = f.read()
  except OSError:
    return {}
  out = {}
  for line in text.splitlines():
    key, _, value = line.partition(':')
    key = key.strip()
    if key == 'model name' and 'model' not in out:
      out['model'] = value.strip()
    elif key == 'flags' and 'flags' not in out:
      out['flags'] = sorted(value.split())
  return out


def versions(names=PACKAGES) -> dict:
  """{package: version} of the installed ones among `names` (no import needed)."""
  out = {}
  for name in names:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      pass
  return out


def load() -> list[float]:
  return [round(x, 2) for x in os.getloadavg()]


def host() -> dict:
  info = cpuinfo()
  return {
      'cpu_model': info.get('model', platform.processor()),
      'cpu_flags': info.get('flags', []),
      'cpu_key_flags': [f for f in KEY_FLAGS if f in info.get('flags', ())],
      'cpu_count': os.cpu_count(),
      'usable_cpus': len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else None,
      'kernel': platform.release(), 'python': platform.python_version(),
      'versions': versions(),
      'env': {k: os.environ[k] for k in ('XLA_FLAGS', 'GLIBC_TUNABLES', 'JAX_PLATFORMS')
              if k in os.environ},
  }


def record(kind: str, load_before: list[float], figures: dict) -> dict:
  """The JSON of one benchmark run: kind ('step' or 'loader'), command, host, load, figures."""
  return {
      'kind': kind,
      'command': ' '.join(['python'] + list(getattr(sys, 'orig_argv', sys.argv)[1:])),
      'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
      'host': host(), 'load_before': load_before, 'load_after': load(),
      **figures,
  }


def source_commit(tree: str, ignore: tuple = ('benchmarks/results',)) -> str | None:
  """The git commit of the source tree at `tree`, with '+dirty' when a tracked file under it
  (other than `ignore`d paths: result files written by the run itself) differs; None outside
  a git checkout."""
  def git(*args):
    return subprocess.run(['git', *args], cwd=tree, capture_output=True, text=True,
                          check=True).stdout.strip()
  try:
    commit = git('rev-parse', 'HEAD')
    changed = git('status', '--porcelain', '--untracked-files=no', '--', '.',
                  *(f':!{p}' for p in ignore))
  except (OSError, subprocess.CalledProcessError):
    return None
  return commit + ('+dirty' if changed else '')
