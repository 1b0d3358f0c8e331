"""The benchmark tables come from the JSON files: the committed docs match the committed results,
and every ratio in a table is the JSON's images/s divided, labelled as its pairing says.

tests/fixtures/bench/ holds JSON written by tiny runs of both benchmarks (ViT-nano, 16 px, two
steps; 32-px JPEGs, batch 8) on a busy machine: test input, not results.
"""
import glob
import os
import shutil

import pytest

from benchmarks import hostinfo
from benchmarks import loaders
from benchmarks import pairing
from benchmarks import render
from benchmarks import report

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 'bench')


def test_committed_docs_match_the_committed_json():
  assert render.main(['--check']) == 0


@pytest.fixture(name='fixture_tables')
def _fixture_tables(tmp_path):
  for kind in ('step', 'loader'):
    os.makedirs(tmp_path / kind)
    for path in glob.glob(os.path.join(FIXTURES, f'{kind}_*.json')):
      shutil.copy(path, tmp_path / kind)
  return render.tables(str(tmp_path)), tmp_path


def _rows(table):
  return [[c.strip() for c in line.strip('|').split('|')] for line in table.splitlines()[2:]]


def test_step_table_divides_the_json_figures_and_labels_pairings(fixture_tables):
  tables, folder = fixture_tables
  rows = _rows(tables['step'])
  seen = 0
  for name, rec in render.load(str(folder / 'step')):
    jax_rows = {r['stage']: r for r in rec['results'] if r['framework'] == 'jax'}
    for other in (r for r in rec['results'] if r['framework'] != 'jax'):
      ratio = jax_rows[other['stage']]['images_per_s'] / other['images_per_s']
      label = ('same work' if pairing.SAME_WORK[rec['meta']['precision']]
               == other['torch_precision'] else 'NOT same work')
      if other.get('malloc') == 'glibc default':
        label += ', other malloc'
      match = [r for r in rows if r[-1] == name and r[0] == other['stage']
               and r[3].startswith(report.row_name(other) + ' (')]
      assert len(match) == 1, (name, report.row_name(other))
      assert match[0][4] == label and match[0][7] == f'{ratio:.2f}x'
      assert match[0][5] == f"{jax_rows[other['stage']]['images_per_s']:.1f}"
      seen += 1
  assert seen == len(rows) and seen >= 8
  # The fixture run with --torch_precision float32 beside bf16_matmul is labelled as such, and
  # the README table leaves it (and the other-malloc rows) out.
  assert any(r[2] == 'bf16_matmul' and r[4] == 'NOT same work' for r in rows)
  readme = tables['readme']
  assert 'NOT same work' not in readme and 'vs_torch_float32' not in readme
  assert 'glibc default' not in readme
  assert readme.count('| train step ') == sum(r[4] == 'same work' for r in rows)


def test_loader_table_adds_the_step_costs_of_what_was_moved(fixture_tables):
  tables, folder = fixture_tables
  rows = _rows(tables['loader'])
  (name, rec), = render.load(str(folder / 'loader'))
  best = {(r['pipeline'], r['stage'], r['workers']): r for r in rec['results']}
  ra_row = [r for r in rows if r[2] == 'livt_jax_ra_device + RandAugment in step']
  assert len(ra_row) == 1 and ra_row[0][3] == 'torch_uint8' and ra_row[0][-1] == name
  ours, theirs = best[('livt_jax_ra_device', 'bft', 1)], best[('torch_uint8', 'bft', 1)]
  cost = rec['step_costs']['bft']['randaugment']
  # Recomputed here: 1 / (1 / rate + seconds per image moved to the step).
  rate = 1.0 / (1.0 / ours['images_per_s'] + cost['wall_s_per_image'])
  per_cpu = 1.0 / (1.0 / ours['images_per_cpu_s'] + cost['cpu_s_per_image'])
  assert ra_row[0][6] == f"{rate / theirs['images_per_s']:.2f}x"
  assert ra_row[0][7] == f"{per_cpu / theirs['images_per_cpu_s']:.2f}x"
  assert ra_row[0][4] == f'{rate:.0f} ({per_cpu:.0f})'
  assert len(rows) == len(rec['same_work']) == 6  # 2 MGP pairs, 4 BFT pairs, 1 worker count


def test_fill_replaces_only_between_markers_and_needs_them():
  doc = 'a\n<!-- generated: step -->\nold\n<!-- end: step -->\nb\n'
  assert render.fill(doc, {'step': 'new'}) == (
      'a\n<!-- generated: step -->\nnew\n<!-- end: step -->\nb\n')
  with pytest.raises(ValueError, match='generated: loader'):
    render.fill(doc, {'loader': 'x'})


def test_pairing_defaults_to_the_same_work():
  assert pairing.torch_precision_for('float32', 'same') == ('float32', True)
  assert pairing.torch_precision_for('bf16_matmul', None) == ('autocast', True)
  assert pairing.torch_precision_for('bfloat16', 'same') == ('bfloat16', True)
  assert pairing.torch_precision_for('bf16_matmul', 'float32') == ('float32', False)
  assert pairing.torch_precision_for('float32', 'float32') == ('float32', True)
  with pytest.raises(ValueError):
    pairing.torch_precision_for('float32', 'fp16')


def test_report_ratios_label_precision_and_allocator():
  results = [
      {'stage': 'bft', 'framework': 'jax', 'images_per_s': 90.0},
      {'stage': 'bft', 'framework': 'torch', 'images_per_s': 60.0, 'torch_precision': 'autocast',
       'malloc': 'same as JAX', 'glibc_tunables': 't=1'},
      {'stage': 'bft', 'framework': 'torch', 'images_per_s': 45.0, 'torch_precision': 'autocast',
       'malloc': 'glibc default', 'glibc_tunables': ''},
      {'stage': 'bft', 'framework': 'torch.compile', 'images_per_s': 30.0,
       'torch_precision': 'float32', 'malloc': 'same as JAX', 'glibc_tunables': 't=1'},
  ]
  got = [(x['torch'], x['pairing'], x['ratio'])
         for x in report.ratios(results, 'bf16_matmul', 't=1')]
  assert got == [('torch', 'same work', 1.5),
                 ('torch [glibc default malloc]', 'same work, other malloc', 2.0),
                 ('torch.compile', 'NOT same work', 3.0)]


def test_cpuinfo_reads_model_and_flags(tmp_path):
  path = tmp_path / 'cpuinfo'
  path.write_text('processor\t: 0\nmodel name\t: Some CPU @ 2GHz\nflags\t\t: sse avx2 amx_bf16\n'
                  'processor\t: 1\nmodel name\t: Some CPU @ 2GHz\nflags\t\t: sse avx2 amx_bf16\n')
  assert hostinfo.cpuinfo(str(path)) == {'model': 'Some CPU @ 2GHz',
                                         'flags': ['amx_bf16', 'avx2', 'sse']}
  assert hostinfo.cpuinfo(str(tmp_path / 'missing')) == {}


def test_same_work_pairs_each_row_with_its_torch_counterpart():
  results = [loaders.Result('livt_jax', 'bft', 1, 100.0, 200.0, 0.0),
             loaders.Result('livt_jax_ra_device', 'bft', 1, 150.0, 300.0, 0.0),
             loaders.Result('torch_uint8', 'bft', 1, 80.0, 160.0, 0.0),
             loaders.Result('torch_float', 'bft', 1, 50.0, 100.0, 0.0)]
  costs = {'bft': {'normalise_erase': {'wall_s_per_image': 0.001, 'cpu_s_per_image': 0.0005},
                   'randaugment': {'wall_s_per_image': 0.002, 'cpu_s_per_image': 0.001}}}
  got = {(r['ours'], r['torch']): r for r in loaders.same_work(results, costs)}
  assert len(got) == 4
  plain = got[('livt_jax', 'torch_uint8')]
  assert plain['ratio_wall'] == pytest.approx(100 / 80) and plain['added'] == []
  both = got[('livt_jax_ra_device', 'torch_float')]
  assert both['ours_images_per_s'] == pytest.approx(1 / (1 / 150 + 0.003), rel=1e-12)
  assert both['ratio_per_cpu_s'] == pytest.approx(1 / (1 / 300 + 0.0015) / 100, rel=1e-12)
  assert loaders.same_work_label(both) == (
      'livt_jax_ra_device + RandAugment in step + normalise/erase in step')
  # Without a measured RandAugment cost the device row is not paired at all.
  del costs['bft']['randaugment']
  assert {(r['ours'], r['torch']) for r in loaders.same_work(results, costs)} == {
      ('livt_jax', 'torch_uint8'), ('livt_jax', 'torch_float')}
