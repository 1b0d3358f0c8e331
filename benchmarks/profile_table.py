"""docs/performance.md's profile table, from the op profiles under benchmarks/results/profile/.

    python -m benchmarks.op_profile --stage bft --json benchmarks/results/profile/NAME.json
    python -m benchmarks.profile_table           # rewrites the table in docs/performance.md
    python -m benchmarks.profile_table --check   # exit 1 if it differs from what the JSON gives
"""
import argparse
import os
import sys

from benchmarks import generated
from benchmarks import render

RESULTS = os.path.join(render.RESULTS, 'profile')
DOCS = os.path.join(render.ROOT, 'docs', 'performance.md')
TOP = 6


def shares(ms_per_step: dict, top: int = TOP) -> str:
  """'kind share%, ...' of the `top` largest entries."""
  total = sum(ms_per_step.values())
  largest = sorted(ms_per_step.items(), key=lambda kv: -kv[1])[:top]
  return ', '.join(f'{k} {100 * v / total:.1f}%' for k, v in largest)


def table(folder: str = RESULTS) -> str:
  head = ('| framework | stage, precision | what is summed | ms per step | largest shares | '
          'load before | file |')
  lines = [head, '|' + '---|' * head.count(' | ') + '---|']
  records = render.load(folder)
  for name, rec in records:
    ms = rec['ms_per_step']
    lines.append(f"| {rec['framework']} | {rec['stage'].upper()}, {rec['precision']} | "
                 f"{rec['unit']} | {sum(ms.values()):.0f} | {shares(ms)} | "
                 f"{rec['load_before'][0]:.2f} | {name} |")
  if not records:
    return render.NONE_YET.format('profile')
  hosts = sorted({render.host_label(rec) for _, rec in records})
  lines += ['', f"Host: {'; '.join(hosts)}. Per (kind, output shape) times are in the files."]
  return '\n'.join(lines)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--check', action='store_true')
  args = p.parse_args(argv)
  return generated.update(DOCS, 'profile', table(), args.check,
                          'python -m benchmarks.profile_table')


if __name__ == '__main__':
  sys.exit(main())
