"""benchmarks/aot_table.py: docs/planning.md's AOT table is the script's output on the committed
plan files (benchmarks/results/aot/*.json), and each cell follows from a plan's record."""
import copy
import glob
import json
import os

from engine_helpers import ROOT
from benchmarks import aot_table


def test_the_docs_table_is_the_scripts_output_on_the_committed_plans():
  paths = glob.glob(os.path.join(aot_table.RESULTS, '*.json'))
  assert paths, 'no plan files committed under benchmarks/results/aot'
  with open(os.path.join(ROOT, 'docs', 'planning.md')) as f:
    page = f.read()
  assert aot_table.table_in(page) == aot_table.render(paths), (
      'docs/planning.md is stale: run `python -m benchmarks.aot_table --write docs/planning.md`')


def _record():
  stage = {
      'stage': 'bft', 'overrides': {}, 'num_chips': 8, 'global_batch': 1024,
      'micro_batch_per_chip': 128, 'steps_per_epoch': 113, 'total_steps': 11300, 'epochs': 100.0,
      'compile_s': 36.4, 'hbm_bytes': 60 * aot_table.GIB, 'error': None,
      'temp_bytes': int(11.5 * aot_table.GIB), 'total_bytes': 12 * aot_table.GIB, 'fits': True,
      'flops_source': 'analytic',
      'estimates': {'images_per_sec_per_chip': 4703.4, 'chip_days': 0.5}}
  return {
      'config': 'configs/imagenet_lt.py', 'overrides': [], 'fixes': {},
      'topology': {'name': 'h100:8', 'platform': 'gpu', 'devices': 8, 'nodes': 1, 'chip': 'h100'},
      'stages': {'bft': stage},
      'made': {'git_commit': 'abcdef0123456789', 'git_dirty': True, 'date': '2026-12-07T04:49'}}


def test_rows_follow_from_the_record(tmp_path):
  r = _record()
  assert aot_table.rows(r) == [
      '| imagenet_lt | BFT | `h100:8` (8) | 128 | yes | 12.00 GiB (20% of 60.00) | 11.50 GiB '
      '| 4,703 | 12 | analytic | 36 s | abcdef0+dirty 2026-12-07 |']
  # Does not fit as configured; the search's overrides and their compile give the numbers.
  r['topology'].update(name='h100:2x8', nodes=2, devices=16)
  base = r['stages']['bft']
  base.update(fits=False, total_bytes=58 * aot_table.GIB)
  fix = copy.deepcopy(base)
  fix.update(fits=True, overrides={'grad_accum_steps': 2}, micro_batch_per_chip=64,
             total_bytes=30 * aot_table.GIB)
  r['fixes'] = {'bft': fix}
  row = aot_table.rows(r)[0]
  assert ('| `h100:2x8` (16) | 128 (2 x 64) | with `--config.grad_accum_steps=2` | '
          '30.00 GiB') in row
  path = tmp_path / 'p.json'
  path.write_text(json.dumps(r))
  table = aot_table.render([str(path)])
  assert table.splitlines()[0] == aot_table.HEADER and table.endswith(row + '\n')
  page = f'intro\n{aot_table.BEGIN}\nold\n{aot_table.END}\nafter\n'
  assert aot_table.table_in(aot_table.replace_in(page, table)) == table
