r"""Sweeps: one command for a grid of BFT settings x seeds, sharing MGP, with an aggregate report.

  python -m livt_jax.tools.sweep --config=configs/fashion_mnist_lt.py --workdir=runs/losses \
      --sweep=bft.loss=ce,bal_ce,bce,bal_bce --seeds=0,1,2 -- --config.bft.epochs=8

Each seed pretrains once (WORKDIR/seed_S/pretrain, `--config.stages=mgp`) and every grid point
fine-tunes from it (WORKDIR/seed_S/<key=value,...>, `--config.stages=bft,evaluate`). A swept
key that changes pretraining (mgp.*, model.*, dataset.*) gets its own MGP per value. Every run is
`python -m livt_jax.main` in a subprocess, so a rerun skips finished runs (report.json present,
or the pretraining marker) and resumes interrupted ones from their checkpoints. Arguments after
`--` go to every run. At the end WORKDIR/sweep.md, sweep.json and sweep.png give mean +- std over
seeds of top-1, Many/Medium/Few and ECE, final and best-on-val models side by side.

On a cluster, `--print_commands` prints one command per run instead of running them: the
pretraining commands first (one per seed), then the fine-tuning ones, each its own job that may
start when its seed's pretraining job has finished; rerun the sweep with `--aggregate_only` at the
end. Exit codes: 0 all runs done; 1 a run failed (the others still ran; the table lists it);
75 a run was preempted (the sweep stops; rerun the same command to resume).
"""
import itertools
import os
import subprocess
import sys

from absl import app
from absl import flags

from livt_jax.tools import sweep_report

def _define_flags():
  """Defined when run as a program, not on import: the tests import this module next to other
  entry points that define --config/--workdir too."""
  flags.DEFINE_string('config', None, 'The config file of every run (as for livt_jax.main).')
  flags.DEFINE_string('workdir', None, 'The sweep root; each run gets a folder under it.')
  flags.DEFINE_multi_string('sweep', [], 'KEY=V1,V2,...: a config field and its values; repeat '
                            'for a grid (the product of all).')
  flags.DEFINE_string('seeds', '0', 'Comma-separated config.seed values; each gets its own MGP.')
  flags.DEFINE_bool('print_commands', False, 'Print the run commands (for a cluster) and exit.')
  flags.DEFINE_bool('aggregate_only', False, 'Only (re)write the aggregate report.')


FLAGS = flags.FLAGS

PRETRAIN_KEYS = ('mgp.', 'model.', 'dataset.')
PRETRAIN_DONE = 'SWEEP_PRETRAIN_DONE'
EXIT_PREEMPTED = 75


def parse_axes(specs) -> list[tuple[str, list[str]]]:
  """['bft.loss=ce,bce', 'bft.tau=0.5,1'] -> [('bft.loss', ['ce', 'bce']), ...]."""
  axes = []
  for spec in specs:
    key, sep, values = spec.partition('=')
    values = [v for v in values.split(',') if v]
    if not sep or not key or not values:
      raise app.UsageError(f'--sweep={spec!r}: use KEY=V1,V2, e.g. --sweep=bft.loss=ce,bal_bce')
    if key in ('seed', 'stages') or key.startswith('evals.'):
      raise app.UsageError(f'--sweep={spec!r}: {key} is set by the sweep itself (use --seeds)')
    axes.append((key, values))
  return axes


def plan_runs(axes, seeds, root: str) -> tuple[list[dict], list[dict]]:
  """(pretraining runs, fine-tuning runs): dicts with 'workdir', 'overrides', 'seed', 'point'."""
  pretrain, finetune = {}, []
  for seed in seeds:
    for values in itertools.product(*[v for _, v in axes]):
      point = dict(zip([k for k, _ in axes], values))
      mgp_point = {k: v for k, v in point.items() if k.startswith(PRETRAIN_KEYS)}
      mgp_dir = os.path.join(root, f'seed_{seed}', 'pretrain' + ''.join(
          f',{k}={v}' for k, v in mgp_point.items()))
      pretrain.setdefault(mgp_dir, {'workdir': mgp_dir, 'seed': seed, 'point': mgp_point,
                                    'overrides': {**mgp_point, 'seed': seed, 'stages': 'mgp'}})
      name = ','.join(f'{k}={v}' for k, v in point.items()) or 'base'
      finetune.append({
          'workdir': os.path.join(root, f'seed_{seed}', name), 'seed': seed, 'point': point,
          'overrides': {**point, 'seed': seed, 'stages': 'bft,evaluate',
                        'bft.init_from': os.path.join(mgp_dir, 'mgp', 'checkpoints')}})
  return list(pretrain.values()), finetune


def command(config: str, run: dict, extra) -> list[str]:
  return [sys.executable, '-m', 'livt_jax.main', f'--config={config}',
          f'--workdir={run["workdir"]}', *extra,
          *[f'--config.{k}={v}' for k, v in run['overrides'].items()]]


def _done(run: dict, pretraining: bool) -> bool:
  marker = (os.path.join(run['workdir'], PRETRAIN_DONE) if pretraining
            else os.path.join(run['workdir'], 'report', 'report.json'))
  return os.path.exists(marker)


def _run(config, run, extra, pretraining: bool) -> int:
  if _done(run, pretraining):
    print(f'sweep: {run["workdir"]} already done', flush=True)
    return 0
  print(f'sweep: running {run["workdir"]}', flush=True)
  rc = subprocess.call(command(config, run, extra))
  if rc == 0 and pretraining:
    with open(os.path.join(run['workdir'], PRETRAIN_DONE), 'w') as f:
      f.write('mgp finished\n')
  return rc


def _main(argv):
  extra = argv[1:]  # after `--`: passed to every run
  if not FLAGS.config or not FLAGS.workdir:
    raise app.UsageError('--config and --workdir are required')
  axes = parse_axes(FLAGS.sweep)
  seeds = [int(s) for s in FLAGS.seeds.split(',') if s.strip()]
  pretrain, finetune = plan_runs(axes, seeds, FLAGS.workdir)
  if FLAGS.print_commands:
    for run in pretrain + finetune:
      print(' '.join(command(FLAGS.config, run, extra)))
    return 0
  failed = []
  if not FLAGS.aggregate_only:
    os.makedirs(FLAGS.workdir, exist_ok=True)
    for pretraining, runs in ((True, pretrain), (False, finetune)):
      for run in runs:
        mgp_dir = os.path.dirname(os.path.dirname(run['overrides'].get('bft.init_from', '')))
        if not pretraining and mgp_dir in failed:
          failed.append(run['workdir'])  # its pretraining failed: nothing to fine-tune
          continue
        rc = _run(FLAGS.config, run, extra, pretraining)
        if rc == EXIT_PREEMPTED:
          print(f'sweep: {run["workdir"]} was preempted; rerun the same command to resume',
                flush=True)
          return EXIT_PREEMPTED
        if rc:
          print(f'sweep: {run["workdir"]} failed (exit {rc}); going on', flush=True)
          failed.append(run['workdir'])
  table = sweep_report.write(FLAGS.workdir, axes, finetune, failed)
  print(table, flush=True)
  return 1 if failed else 0


def main():
  _define_flags()
  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(lambda argv: sys.exit(_main(argv)))


if __name__ == '__main__':
  main()
