"""Install paths timed and sized by launch/check_install.sh, as data, and docs/install.md's table.

  bash launch/check_install.sh --json benchmarks/results/install/NAME.json [setup editable torch]
  python -m benchmarks.install_table           # rewrites the table in docs/install.md
  python -m benchmarks.install_table --check   # exit 1 if it differs from what the JSON gives

check_install.sh writes one tab-separated line per install path (label, seconds, venv bytes)
and calls `--record` to turn them into a JSON with the host, the load, the commit, the size of
pip's cache when it started (a warm cache skips downloads) and the command. Standard library only: it runs under whichever python3 made the venvs.
"""
import argparse
import datetime
import json
import os
import sys

from benchmarks import generated
from benchmarks import hostinfo
from benchmarks import render

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
RESULTS = os.path.join(ROOT, 'benchmarks', 'results', 'install')
DOCS = os.path.join(ROOT, 'docs', 'install.md')


def parse_lines(text: str) -> list[dict]:
  """The results check_install.sh wrote: `label<TAB>seconds<TAB>venv bytes` per line."""
  out = []
  for line in text.splitlines():
    if line.strip():
      label, seconds, size = line.split('\t')
      out.append({'path': label, 'seconds': int(seconds), 'venv_bytes': int(size)})
  return out


def record(results: list[dict], command: str, load_before: list[float], commit: str,
           pip_cache_bytes: int) -> dict:
  return {
      'kind': 'install', 'command': command,
      'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
      'commit': commit, 'pip_cache_bytes_at_start': pip_cache_bytes, 'host': hostinfo.host(),
      'load_before': load_before, 'load_after': hostinfo.load(), 'results': results,
  }


def _gb(n: int) -> str:
  if n >= 1e8:
    return f'{n / 1e9:.1f} GB'
  return f'{n / 1e6:.0f} MB' if n >= 1e6 else f'{n / 1e3:.0f} kB'


def table(results_dir: str = RESULTS) -> str:
  """One row per install path of every record, oldest file first."""
  lines = ['| path | time | venv size | pip cache at start | host | load 1-min before / after '
           '| file |', '|---|---|---|---|---|---|---|']
  for name, rec in render.load(results_dir):
    host = f"{rec['host']['cpu_model']}, {rec['host']['usable_cpus']} CPUs"
    load = f"{rec['load_before'][0]:.1f} / {rec['load_after'][0]:.1f}"
    cache = _gb(rec['pip_cache_bytes_at_start'])
    for r in rec['results']:
      lines.append(f"| `{r['path']}` | {r['seconds']} s | {_gb(r['venv_bytes'])} | {cache} | "
                   f'{host} | {load} | {name} |')
  if len(lines) == 2:
    return '_No result committed yet under benchmarks/results/install/._'
  return '\n'.join(lines)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--record', metavar='TSV', help='check_install.sh\'s lines: write --json')
  p.add_argument('--json', help='where --record writes the result')
  p.add_argument('--command', default='', help='the command that made the TSV (recorded)')
  p.add_argument('--load_before', default='', help='comma-separated load averages at start')
  p.add_argument('--commit', default='', help='the checkout\'s commit at start (+dirty)')
  p.add_argument('--pip_cache_bytes', type=int, default=0, help='pip\'s cache at start')
  p.add_argument('--results', default=RESULTS)
  p.add_argument('--docs', default=DOCS)
  p.add_argument('--check', action='store_true', help='only compare; exit 1 if stale')
  args = p.parse_args(argv)
  if args.record:
    if not args.json:
      p.error('--record needs --json PATH')
    with open(args.record) as f:
      results = parse_lines(f.read())
    load_before = [float(x) for x in args.load_before.split(',') if x]
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, 'w') as f:
      json.dump(record(results, args.command, load_before, args.commit, args.pip_cache_bytes), f,
                indent=1)
      f.write('\n')
    print(f'wrote {args.json}')
    return 0
  return generated.update(args.docs, 'install', table(args.results), args.check,
                          'python -m benchmarks.install_table')


if __name__ == '__main__':
  sys.exit(main())
