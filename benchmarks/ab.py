"""A/B of one train step between two versions of the code, timed in alternating rounds.

Each side is a source tree (`.` or a directory: as it is on disk; `rev:REF`: that git commit,
exported to a temporary folder) plus its own environment (`--a_env XLA_FLAGS=...`) and
`benchmarks.step` arguments (`--b_args "--gelu tanh"`). Arguments this tool does not know go
to both sides (`--precision bf16_matmul --variant Ti`). Each side's step is compiled in its
own process (`benchmarks/ab_worker.py`), one at a time; then the timed rounds alternate
A B, B A, A B, ... so that drift in the host's speed hits both alike, and only one side runs at
any moment. Every round gives a paired ratio (A's median step time over B's: > 1 means B is
faster); the tool prints and records their median and range, nothing is divided by hand.

    python -m benchmarks.ab --a rev:HEAD --b . --stage bft --rounds 8 --steps 5 \\
        --json benchmarks/results/ab/split_heads_bft.json
    python -m benchmarks.ab --b_env XLA_FLAGS=--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY

A change kept as a patch (`git diff > x.patch`) is re-checked with `--b rev:HEAD --b_patch
x.patch`: benchmarks/results/ab/ keeps such patches next to their results.

The JSON has the host, load, command, each side's commit (or '+dirty'), compile time, FLOPs
XLA counts, peak RSS and every step time.
"""
import argparse
import io
import json
import os
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile

from benchmarks import hostinfo
from livt_jax.runtime import host_malloc

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
WORKER = os.path.join(ROOT, 'benchmarks', 'ab_worker.py')


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  for side in ('a', 'b'):
    p.add_argument(f'--{side}', default='.', help='source: ".", a directory, or rev:GIT_REF')
    p.add_argument(f'--{side}_env', action='append', default=[], metavar='KEY=VALUE',
                   help='environment for this side only (repeatable)')
    p.add_argument(f'--{side}_args', default='', help='benchmarks.step arguments for this side')
    p.add_argument(f'--{side}_patch', default=None,
                   help='a patch (git diff) applied to this side\'s exported revision (with rev:)')
  p.add_argument('--stage', default='bft', choices=('mgp', 'bft'))
  p.add_argument('--rounds', type=int, default=6, help='timed rounds per side')
  p.add_argument('--steps', type=int, default=5, help='steps per round')
  p.add_argument('--label', default='', help='what B changes, for the JSON and the docs table')
  p.add_argument('--json', default=None, help='also write the results here')
  args, common = p.parse_known_args(argv)
  if args.rounds < 1 or args.steps < 1:
    p.error('--rounds and --steps must be at least 1')
  return args, common


def export_source(spec: str, tmp: str, patch: str | None = None) -> tuple[str, str | None]:
  """(directory, commit) of a side's source: a directory as is, or `rev:REF` exported (and
  `patch` applied to it: the commit then reads 'REF+patch NAME')."""
  if patch and not spec.startswith('rev:'):
    raise SystemExit(f'a patch applies to an exported revision: write rev:GIT_REF, not {spec!r}')
  if not spec.startswith('rev:'):
    path = os.path.abspath(spec)
    if not os.path.isdir(os.path.join(path, 'livt_jax')):
      raise SystemExit(f'{spec!r} is not a livt_jax source tree (no livt_jax/ in it); give a '
                       'directory or rev:GIT_REF')
    return path, hostinfo.source_commit(path)
  ref = spec[len('rev:'):]
  try:
    commit = subprocess.run(['git', 'rev-parse', '--verify', f'{ref}^{{commit}}'], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.strip()
    tar = subprocess.run(['git', 'archive', commit], cwd=ROOT, capture_output=True,
                         check=True).stdout
  except (OSError, subprocess.CalledProcessError) as e:
    raise SystemExit(f'cannot export {spec!r} from the git checkout at {ROOT}: {e}') from e
  dest = tempfile.mkdtemp(prefix=commit[:12] + '_', dir=tmp)
  with tarfile.open(fileobj=io.BytesIO(tar)) as t:
    t.extractall(dest, filter='data')
  if patch:
    applied = subprocess.run(['git', 'apply', os.path.abspath(patch)], cwd=dest,
                             capture_output=True, text=True)
    if applied.returncode:
      raise SystemExit(f'{patch} does not apply to {commit}: {applied.stderr.strip()}')
    commit += f'+patch {os.path.basename(patch)}'
  return dest, commit


class Side:
  """One worker process: a source tree, its environment and step arguments."""

  def __init__(self, name, source, commit, env_pairs, step_argv):
    self.name, self.source, self.commit, self.step_argv = name, source, commit, step_argv
    self.env = {}  # this side's own variables, recorded in the JSON
    for pair in env_pairs:
      key, sep, value = pair.partition('=')
      if not sep:
        raise SystemExit(f'--{name}_env {pair!r}: write KEY=VALUE')
      self.env[key] = value
    env = {**os.environ, **self.env}
    env['PYTHONPATH'] = source + (os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else '')
    self.proc = subprocess.Popen([sys.executable, WORKER, json.dumps(step_argv)], cwd=source,
                                 env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True)
    self.info = self._receive()
    self.rounds = []

  def _receive(self) -> dict:
    for line in self.proc.stdout:
      if line.startswith('AB '):
        return json.loads(line[3:])
    raise SystemExit(f'side {self.name} ({self.source}) stopped (exit code {self.proc.wait()}); '
                     'its error is above')

  def timed_round(self, steps: int) -> None:
    self.proc.stdin.write(json.dumps({'steps': steps}) + '\n')
    self.proc.stdin.flush()
    self.rounds.append(self._receive())

  def close(self) -> None:
    self.proc.stdin.close()
    self.proc.wait()


def summarise(a: Side, b: Side, batch: int) -> dict:
  """Per side: median step time and images/s; per round: A's median over B's."""
  def med(r):
    return statistics.median(r['wall'])
  paired = [med(ra) / med(rb) for ra, rb in zip(a.rounds, b.rounds)]
  sides = {}
  for s in (a, b):
    wall = [t for r in s.rounds for t in r['wall']]
    sides[s.name] = {
        'source': s.source, 'commit': s.commit, 'env': s.env, 'step_args': s.step_argv,
        **s.info, 'median_step_s': statistics.median(wall),
        'images_per_s': batch / statistics.median(wall),
        'median_cpu_s': statistics.median([t for r in s.rounds for t in r['cpu']]),
        'rounds': s.rounds,
    }
  return {'sides': sides, 'paired_speedup_b_over_a': paired,
          'speedup_b_over_a': statistics.median(paired),
          'speedup_range': [min(paired), max(paired)],
          'others_load': [r['others'] for s in (a, b) for r in s.rounds]}


def format_summary(out: dict) -> str:
  lines = ['side  img/s   step ms  cpu s  compile s  peak RSS GB  GFLOP  source']
  for name, s in out['sides'].items():
    rss = (s['peak_rss'] or 0) / 1e9
    flops = (s['flops'] or 0) / 1e9
    lines.append(f"{name:<5} {s['images_per_s']:6.1f}  {1e3 * s['median_step_s']:7.1f}  "
                 f"{s['median_cpu_s']:5.2f}  {s['compile_s']:9.1f}  {rss:11.2f}  {flops:5.1f}  "
                 f"{s['commit'] or s['source']} {' '.join(s['step_args'])} "
                 f"{' '.join(f'{k}={v}' for k, v in s['env'].items())}")
  lo, hi = out['speedup_range']
  loads = [x for x in out['others_load'] if x is not None]
  lines.append(f"B over A: {out['speedup_b_over_a']:.3f}x (median of {len(out['paired_speedup_b_over_a'])}"
               f' paired rounds; range {lo:.3f}-{hi:.3f})'
               + (f'; other processes held {100 * max(loads):.0f}% of the CPUs at most'
                  if loads else ''))
  return '\n'.join(lines)


def main(argv=None):
  args, common = parse_args(argv)
  from benchmarks import step  # pylint: disable=g-import-not-at-top
  batch = step.parse_args(common).batch  # a wrong argument fails here, before any compile
  step_common = common + ['--stages', args.stage]
  load_before = hostinfo.load()
  with tempfile.TemporaryDirectory(prefix='livt_ab_') as tmp:
    sides = []
    for name in ('a', 'b'):
      source, commit = export_source(getattr(args, name), tmp, getattr(args, f'{name}_patch'))
      step_argv = step_common + shlex.split(getattr(args, f'{name}_args'))
      sides.append(Side(name, source, commit, getattr(args, f'{name}_env'), step_argv))
    try:
      for i in range(args.rounds):
        for side in (sides if i % 2 == 0 else sides[::-1]):
          side.timed_round(args.steps)
    finally:
      for side in sides:
        side.close()
  out = summarise(*sides, batch)
  out.update(label=args.label, stage=args.stage, rounds=args.rounds, steps=args.steps, batch=batch,
             common_args=common)
  print(format_summary(out))
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, 'w') as f:
      json.dump(hostinfo.record('ab', load_before, out), f, indent=2)
  return out


if __name__ == '__main__':
  host_malloc.reexec_if_useful()
  main()
