"""docs/performance.md's table of step changes, from the A/B results under benchmarks/results/ab/.

    python -m benchmarks.ab ... --label "what B changes" --json benchmarks/results/ab/NAME.json
    python -m benchmarks.ab_table           # rewrites the table in docs/performance.md
    python -m benchmarks.ab_table --check   # exit 1 if it differs from what the JSON gives
"""
import argparse
import os
import sys

from benchmarks import generated
from benchmarks import render

RESULTS = os.path.join(render.RESULTS, 'ab')
DOCS = os.path.join(render.ROOT, 'docs', 'performance.md')


def _precision(side: dict) -> str:
  args = side['step_args']
  return args[args.index('--precision') + 1] if '--precision' in args else 'float32'


def _bytes(a: dict, b: dict) -> str:
  if a.get('bytes_accessed') is None or b.get('bytes_accessed') is None:
    return '-'
  return f"{a['bytes_accessed'] / 1e9:.2f} -> {b['bytes_accessed'] / 1e9:.2f}"


def table(folder: str = RESULTS) -> str:
  """One row per A/B record, in the order they ran: the change, the stage, both sides' img/s,
  B over A."""
  head = ('| change (B against A) | stage, precision | rounds x steps | A img/s | B img/s | '
          'B over A: median (range) | XLA GB accessed A -> B | others | file |')
  lines = [head, '|' + '---|' * head.count(' | ') + '---|']
  records = sorted(render.load(folder), key=lambda nr: nr[1].get('date', ''))
  for name, rec in records:
    a, b = rec['sides']['a'], rec['sides']['b']
    lo, hi = rec['speedup_range']
    others = [x for x in rec['others_load'] if x is not None]
    lines.append(
        f"| {rec['label'] or '(no label)'} | {rec['stage'].upper()}, {_precision(b)} | "
        f"{rec['rounds']} x {rec['steps']} | {a['images_per_s']:.1f} | {b['images_per_s']:.1f} | "
        f"{rec['speedup_b_over_a']:.3f}x ({lo:.2f}-{hi:.2f}) | {_bytes(a, b)} | "
        f"{'-' if not others else f'{100 * max(others):.0f}%'} | {name} |")
  if len(lines) == 2:
    return render.NONE_YET.format('ab')
  hosts = sorted({render.host_label(rec) for _, rec in records})
  lines.append('')
  lines.append(f"Host: {'; '.join(hosts)}. 'others': the largest share of all CPUs other "
               'processes used in a round. Commands, commits and every step time are in the files.')
  return '\n'.join(lines)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--check', action='store_true')
  args = p.parse_args(argv)
  return generated.update(DOCS, 'ab', table(), args.check, 'python -m benchmarks.ab_table')


if __name__ == '__main__':
  sys.exit(main())
