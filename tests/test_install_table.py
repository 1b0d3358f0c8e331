"""The install table comes from data: check_install.sh's lines become a JSON record with the host,
and docs/install.md's table is rendered from the committed records (and is current)."""
import json
import os
import subprocess

from benchmarks import generated
from benchmarks import install_table

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))


def test_committed_install_table_matches_the_committed_json():
  assert install_table.main(['--check']) == 0


def test_record_keeps_every_line_and_the_table_shows_it(tmp_path):
  tsv = tmp_path / 'lines.tsv'
  tsv.write_text('pip install -e .\t122\t2500000000\nsetup --no-data (.venv)\t74\t45000000\n')
  out = tmp_path / 'results' / 'x.json'
  assert install_table.main(['--record', str(tsv), '--json', str(out), '--command', 'CMD',
                             '--load_before', '0.5,0.4,0.3', '--commit', 'abc+dirty',
                             '--pip_cache_bytes', '3000000']) == 0
  rec = json.loads(out.read_text())
  assert rec['kind'] == 'install' and rec['command'] == 'CMD' and rec['commit'] == 'abc+dirty'
  assert rec['pip_cache_bytes_at_start'] == 3000000
  assert rec['load_before'] == [0.5, 0.4, 0.3] and len(rec['load_after']) == 3
  assert rec['results'] == [
      {'path': 'pip install -e .', 'seconds': 122, 'venv_bytes': 2500000000},
      {'path': 'setup --no-data (.venv)', 'seconds': 74, 'venv_bytes': 45000000}]
  assert 'cpu_model' in rec['host']
  rows = install_table.table(str(out.parent)).splitlines()[2:]
  assert rows[0].startswith('| `pip install -e .` | 122 s | 2.5 GB | 3 MB |')
  assert rows[1].startswith('| `setup --no-data (.venv)` | 74 s | 45 MB | 3 MB |')
  assert all(r.endswith('| 0.5 / ' + f"{rec['load_after'][0]:.1f} | x.json |") for r in rows)


def test_fill_needs_the_markers():
  page = 'a\n<!-- generated: install -->\nold\n<!-- end: install -->\nb'
  assert generated.fill(page, 'install', 'NEW') == ('a\n<!-- generated: install -->\nNEW\n'
                                             '<!-- end: install -->\nb')
  try:
    generated.fill('no markers', 'install', 'NEW')
  except ValueError as e:
    assert 'markers' in str(e)
  else:
    raise AssertionError('fill accepted a page without markers')


def test_check_install_rejects_bad_arguments_in_one_line():
  for args, words in ((['--json'], '--json needs a file name'),
                      (['bogus'], "unknown path 'bogus'")):
    r = subprocess.run(['bash', 'launch/check_install.sh', *args], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and words in r.stderr, (r.returncode, r.stderr)
