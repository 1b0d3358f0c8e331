"""benchmarks.ab: two code versions, each compiled in its own worker, timed in alternating
rounds; every ratio it reports is computed from the step times it records."""
import json
import statistics
import subprocess

import pytest

from benchmarks import ab
from benchmarks import step
from benchmarks import workload

TINY = ['--variant', 'nano', '--image_size', '8', '--patch', '4', '--batch', '8', '--warmup', '1',
        '--num_classes', '10']


def test_a_git_revision_against_the_tree_with_a_config_override(tmp_path):
  out_json = tmp_path / 'ab.json'
  ab.main(['--a', 'rev:HEAD', '--b', '.', '--b_args', '--set model.attention=xla',
           '--b_env', 'LIVT_AB_TEST=1', '--stage', 'bft', '--rounds', '3', '--steps', '2',
           '--json', str(out_json)] + TINY)
  record = json.loads(out_json.read_text())
  head = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=ab.ROOT, capture_output=True,
                        text=True, check=True).stdout.strip()
  a, b = record['sides']['a'], record['sides']['b']
  assert a['commit'] == head and a['source'] != ab.ROOT  # exported, not the working tree
  assert b['source'] == ab.ROOT and b['commit'].startswith(head)
  assert b['step_args'][-2:] == ['--set', 'model.attention=xla']
  assert b['env'] == {'LIVT_AB_TEST': '1'} and a['env'] == {}
  assert a['source'] not in b['source'] and b['source'] not in a['source']
  # Each worker imported livt_jax from its own side's tree.
  assert a['source_file'].startswith(a['source']) and b['source_file'].startswith(ab.ROOT)
  for side in (a, b):
    assert len(side['rounds']) == 3 and all(len(r['wall']) == 2 for r in side['rounds'])
    assert side['compile_s'] > 0 and side['flops'] > 0
  paired = [statistics.median(ra['wall']) / statistics.median(rb['wall'])
            for ra, rb in zip(a['rounds'], b['rounds'])]
  assert record['paired_speedup_b_over_a'] == pytest.approx(paired)
  assert record['speedup_b_over_a'] == pytest.approx(statistics.median(paired))
  assert b['images_per_s'] == pytest.approx(
      8 / statistics.median([t for r in b['rounds'] for t in r['wall']]))
  assert record['kind'] == 'ab' and record['host']['cpu_model']


def test_bad_sides_and_overrides_fail_with_a_clear_message(tmp_path):
  with pytest.raises(SystemExit, match='not a livt_jax source tree'):
    ab.export_source(str(tmp_path), str(tmp_path))
  with pytest.raises(SystemExit, match='cannot export'):
    ab.export_source('rev:no-such-ref', str(tmp_path))
  with pytest.raises(ValueError, match="no field 'model.nope'"):
    workload.make_config(step.parse_args(['--set', 'model.nope=1']))
  with pytest.raises(ValueError, match='write KEY=VALUE'):
    workload.make_config(step.parse_args(['--set', 'model.attention']))
  config = workload.make_config(step.parse_args(['--set', 'bft.drop_path=0.25',
                                                 '--set', 'model.attention=xla']))
  assert config.bft.drop_path == 0.25 and config.model.attention == 'xla'


def test_a_patch_applies_to_an_exported_revision_only(tmp_path):
  patch = tmp_path / 'new_file.patch'
  patch.write_text('diff --git a/AB_PATCHED b/AB_PATCHED\nnew file mode 100644\n--- /dev/null\n'
                   '+++ b/AB_PATCHED\n@@ -0,0 +1 @@\n+patched\n')
  source, commit = ab.export_source('rev:HEAD', str(tmp_path), str(patch))
  assert (tmp_path / source / 'AB_PATCHED').read_text() == 'patched\n'
  assert commit.endswith('+patch new_file.patch')
  with pytest.raises(SystemExit, match='exported revision'):
    ab.export_source('.', str(tmp_path), str(patch))
  with pytest.raises(SystemExit, match='does not apply'):
    ab.export_source('rev:HEAD', str(tmp_path), str(patch.with_name('missing.patch')))
