"""README's embedded-default table comes from the committed per-seed JSON files, and its mean and
times are computed from them."""
import json

from benchmarks import generated
from benchmarks import embedded_default


def _record(seed, top1, one_view, wall_s):
  metrics = lambda t: {'top1': t, 'many': 0.9, 'medium': 0.7, 'few': 0.85, 'ece': 0.08,
                       'mce': 0.3}
  return {'kind': 'embedded_default', 'seed': seed, 'wall_s': wall_s, 'load_before': [0.25, 0, 0],
          'host': {'cpu_model': 'CPU X', 'usable_cpus': 2}, 'result': metrics(top1),
          'one_view': metrics(one_view)}


def test_committed_readme_matches_the_committed_json():
  assert embedded_default.main(['--render', '--check']) == 0


def test_table_rows_mean_and_times_come_from_the_records(tmp_path):
  for seed, top1, one, wall in ((1, 0.844, 0.831, 400.0), (0, 0.843, 0.837, 332.4)):
    (tmp_path / f'seed{seed}.json').write_text(json.dumps(_record(seed, top1, one, wall)))
  lines = embedded_default.table(str(tmp_path)).splitlines()
  assert lines[2] == '| 0 | 84.3 | 90.0 | 70.0 | 85.0 | 8.0 | 30.0 | 5 min 32 s |'
  assert lines[3].startswith('| 1 | 84.4 |') and lines[3].endswith('| 6 min 40 s |')
  assert lines[4] == '| mean | 84.3 | | | | | | |'  # (84.3 + 84.4) / 2 = 84.35 -> 84.3
  assert 'give 83.7, 83.1 (mean 83.4)' in lines[6] and 'CPU X, 2 CPUs' in lines[6]
  assert 'load before each run: 0.2, 0.2' in lines[6]


def test_fill_replaces_only_between_the_markers():
  page = 'top\n<!-- generated: embedded_default -->\nold\n<!-- end: embedded_default -->\nend'
  assert generated.fill(page, 'embedded_default', 'T') == (
      'top\n<!-- generated: embedded_default -->\nT\n<!-- end: embedded_default -->\nend')
