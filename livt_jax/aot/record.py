"""A plan as data (`--aot_json=PATH`): every stage's StageResult and estimates, the topology,
the command, and where it was made (git commit and dirty flag, host CPU, library versions,
date), so a table rendered from these files shows how stale each row is."""
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys

from livt_jax.aot import compiling
from livt_jax.aot import report
from livt_jax.aot import topology

SCHEMA = 1


def stage_dict(r: compiling.StageResult, chip) -> dict:
  d = dataclasses.asdict(r)
  d['collectives'] = {k: list(v) for k, v in r.collectives.items()}
  d.update(total_bytes=r.total_bytes, fits=r.fits, flops_per_image=r.flops_per_image)
  d['estimates'] = report.estimates(r, chip) if r.error is None and r.flops_per_step else None
  return d


def _git(*args) -> str | None:
  try:
    out = subprocess.run(['git', '-C', topology.REPO, *args], capture_output=True, text=True,
                         timeout=30, check=True)
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout.strip()


def _cpu_model() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def _versions(compiler_dir: str) -> dict:
  out = {}
  for name in ('jax', 'jaxlib'):
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = None
  for dist in importlib.metadata.distributions(path=[compiler_dir]):
    if dist.metadata['Name'] in ('libtpu', 'jax-cuda12-pjrt', 'jax_cuda12_pjrt'):
      out[dist.metadata['Name'].replace('_', '-')] = dist.version
  return out


def plan_record(out: dict, argv: list[str], compiler_dir: str) -> dict:
  """The JSON-able record of `command.plan`'s result for the command line `argv`."""
  topo, chip = out['topology'], out['topology'].chip
  config_path = next((a.split('=', 1)[1] for a in argv if a.startswith('--config=')), None)
  commit = _git('rev-parse', 'HEAD')
  # Plans written into this checkout's results folder are data, not a change of the code.
  dirty = _git('status', '--porcelain', '--untracked-files=no', '--', '.',
               ':(exclude)benchmarks/results')
  return {
      'schema': SCHEMA,
      'topology': {'name': topo.name, 'platform': topo.platform, 'devices': topo.num_chips,
                   'nodes': topo.nodes, 'chip': chip.name, 'peak_tflops': chip.peak_tflops,
                   'usable_bytes_per_device': out['usable_bytes'],
                   'gpu_mem_fraction': (topology.gpu_mem_fraction()
                                        if topo.platform == 'gpu' else None)},
      'config': config_path,
      'overrides': [a for a in argv if a.startswith('--config.')],
      'command': 'python -m livt_jax.main ' + ' '.join(argv),
      'fits': out['fits'],
      'plan_mfu': report.PLAN_MFU, 'headroom': compiling.HEADROOM,
      'stages': {k: stage_dict(r, chip) for k, r in out['stages'].items()},
      'fixes': {k: (stage_dict(r, chip) if r is not None else None)
                for k, r in out['fixes'].items()},
      'made': {'git_commit': commit, 'git_dirty': bool(dirty) if dirty is not None else None,
               'host_cpu': _cpu_model(), 'versions': _versions(compiler_dir),
               'python': sys.version.split()[0],
               'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
               'xla_flags': os.environ.get('XLA_FLAGS', '')},
  }


def write(path: str, record: dict) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w') as f:
    json.dump(record, f, indent=1, sort_keys=True)
    f.write('\n')
