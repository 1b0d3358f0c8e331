"""The embedded default's result as data: README's command per seed, timed, its report recorded.

  python -m benchmarks.embedded_default --seeds=0,1,2,3     # runs them, writes the JSON files
  python -m benchmarks.embedded_default --render [--check]  # README's table from the JSON files

Each seed runs README's command (`python -m livt_jax.main --config=configs/fashion_mnist_lt.py`
with `--config.seed=N`) in a fresh workdir, timed from start to exit, then evaluates the same
final model with one view (`evaluate.views=one`, the paper's evaluation; the config's default
is 'flip'). benchmarks/results/embedded_default/seed<N>.json holds both reports' metrics, the
commands, the wall time, the host, load, commit and versions; README's table between the
`<!-- generated: embedded_default -->` markers is made from those files.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks import generated
from benchmarks import hostinfo
from benchmarks import render

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
RESULTS = os.path.join(ROOT, 'benchmarks', 'results', 'embedded_default')
README = os.path.join(ROOT, 'README.md')
CONFIG = 'configs/fashion_mnist_lt.py'
METRICS = ('top1', 'many', 'medium', 'few', 'ece', 'mce')


def _metrics(report_json: str) -> dict:
  with open(report_json) as f:
    report = json.load(f)
  return {k: report[k] for k in METRICS}


def run_seed(seed: int, workdir: str, python: str = sys.executable) -> dict:
  """README's command with this seed, then the one-view evaluation of its final model."""
  train = [python, '-m', 'livt_jax.main', f'--config={CONFIG}', f'--workdir={workdir}/run',
           f'--config.seed={seed}']
  one_view = [python, '-m', 'livt_jax.main', f'--config={CONFIG}', f'--workdir={workdir}/one',
              f'--config.seed={seed}', '--config.stages=evaluate', '--config.evaluate.views=one',
              f'--config.evaluate.checkpoint={workdir}/run/bft/checkpoints']
  commit = hostinfo.source_commit(ROOT)
  load_before = hostinfo.load()
  start = time.monotonic()
  subprocess.run(train, cwd=ROOT, check=True)
  wall = time.monotonic() - start
  subprocess.run(one_view, cwd=ROOT, check=True)
  show = lambda argv: ' '.join(['python'] + argv[1:]).replace(workdir, 'WORKDIR')
  return {
      'kind': 'embedded_default', 'seed': seed, 'command': show(train),
      'one_view_command': show(one_view), 'commit': commit,
      'date': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
      'host': hostinfo.host(), 'load_before': load_before, 'load_after': hostinfo.load(),
      'wall_s': round(wall, 1), 'result': _metrics(f'{workdir}/run/report/report.json'),
      'one_view': _metrics(f'{workdir}/one/report/report.json'),
  }


def _pct(x: float) -> str:
  return f'{100 * x:.1f}'


def table(results: str = RESULTS) -> str:
  """README's block: one row per seed, the mean top-1, the one-view top-1 and each wall time."""
  records = [rec for _, rec in render.load(results)]
  if not records:
    return '_No result committed yet under benchmarks/results/embedded_default/._'
  records.sort(key=lambda r: r['seed'])
  lines = ['| seed | top-1 | Many (4 classes) | Medium (3) | Few (3) | ECE | MCE | wall |',
           '|---|---|---|---|---|---|---|---|']
  for r in records:
    m = r['result']
    lines.append(f"| {r['seed']} | {_pct(m['top1'])} | " + ' | '.join(
        _pct(m[k]) for k in METRICS[1:]) + f" | {int(r['wall_s'] // 60)} min "
        f"{int(r['wall_s'] % 60)} s |")
  mean = lambda key: sum(r[key]['top1'] for r in records) / len(records)
  lines.append(f'| mean | {_pct(mean("result"))} | | | | | | |')
  hosts = sorted({f"{r['host']['cpu_model']}, {r['host']['usable_cpus']} CPUs" for r in records})
  loads = ', '.join(f"{r['load_before'][0]:.1f}" for r in records)
  lines += ['', f'With one view (the paper\'s evaluation) the same models give '
            f"{', '.join(_pct(r['one_view']['top1']) for r in records)} "
            f'(mean {_pct(mean("one_view"))}). Wall time: README\'s command from start to exit '
            f"(set-up excluded) on {'; '.join(hosts)}; 1-min load before each run: {loads}. "
            'Made by `python -m benchmarks.embedded_default` from '
            '`benchmarks/results/embedded_default/` (commands, commits, versions there).']
  return '\n'.join(lines)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--seeds', default='', help='comma-separated seeds to run')
  p.add_argument('--results', default=RESULTS)
  p.add_argument('--readme', default=README)
  p.add_argument('--render', action='store_true', help="rewrite README's table")
  p.add_argument('--check', action='store_true', help='with --render: exit 1 if stale')
  args = p.parse_args(argv)
  for seed in [int(s) for s in args.seeds.split(',') if s]:
    with tempfile.TemporaryDirectory() as workdir:
      rec = run_seed(seed, workdir)
    os.makedirs(args.results, exist_ok=True)
    path = os.path.join(args.results, f'seed{seed}.json')
    with open(path, 'w') as f:
      json.dump(rec, f, indent=1)
      f.write('\n')
    print(f'wrote {path}: top-1 {_pct(rec["result"]["top1"])} in {rec["wall_s"]:.0f} s')
  if args.render:
    return generated.update(args.readme, 'embedded_default', table(args.results), args.check,
                            'python -m benchmarks.embedded_default --render')
  return 0


if __name__ == '__main__':
  sys.exit(main())
