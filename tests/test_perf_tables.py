"""docs/performance.md's A/B and profile tables come from the committed JSON files, and every
figure in them follows from a record."""
import json

from benchmarks import ab_table
from benchmarks import profile_table

HOST = {'cpu_model': 'CPU X', 'cpu_key_flags': ['avx512f'], 'usable_cpus': 2}


def _ab_record(label, a_ips, b_ips, paired, others):
  side = lambda ips, args, nbytes: {'images_per_s': ips, 'step_args': args,
                                    'bytes_accessed': nbytes}
  return {'kind': 'ab', 'host': HOST, 'label': label, 'stage': 'bft', 'rounds': len(paired),
          'steps': 3,
          'sides': {'a': side(a_ips, ['--stages', 'bft'], 17.45e9),
                    'b': side(b_ips, ['--precision', 'bf16_matmul', '--stages', 'bft'], 15.61e9)},
          'paired_speedup_b_over_a': paired, 'speedup_b_over_a': sorted(paired)[1],
          'speedup_range': [min(paired), max(paired)], 'others_load': others}


def test_ab_rows_follow_from_the_records(tmp_path):
  (tmp_path / 'x.json').write_text(json.dumps(
      _ab_record('split', 50.0, 55.25, [1.2, 1.05, 0.9], [0.01, None, 0.03])))
  lines = ab_table.table(str(tmp_path)).splitlines()
  assert lines[2] == ('| split | BFT, bf16_matmul | 3 x 3 | 50.0 | 55.2 | 1.050x (0.90-1.20) '
                      '| 17.45 -> 15.61 | 3% | x.json |')
  assert 'CPU X (avx512f), 2 CPUs' in lines[-1]


def test_profile_rows_give_shares_of_the_total(tmp_path):
  rec = {'kind': 'op_profile', 'host': HOST, 'framework': 'jax', 'stage': 'mgp',
         'precision': 'float32', 'unit': 'XLA:CPU thunk time', 'load_before': [0.5, 0, 0],
         'ms_per_step': {'dot': 600.0, 'copy': 300.0, 'reduce': 100.0}}
  (tmp_path / 'p.json').write_text(json.dumps(rec))
  lines = profile_table.table(str(tmp_path)).splitlines()
  assert lines[2] == ('| jax | MGP, float32 | XLA:CPU thunk time | 1000 | dot 60.0%, copy 30.0%, '
                      'reduce 10.0% | 0.50 | p.json |')
  assert profile_table.shares({'a': 1.0, 'b': 3.0}, top=1) == 'b 75.0%'


def test_empty_folders_say_so(tmp_path):
  assert 'No result committed yet' in ab_table.table(str(tmp_path))
  assert 'No result committed yet' in profile_table.table(str(tmp_path))


def test_committed_docs_match_the_committed_results():
  assert ab_table.main(['--check']) == 0
  assert profile_table.main(['--check']) == 0


def test_gemm_rows_and_ratios_follow_from_the_record(tmp_path):
  from benchmarks import gemm_ceiling
  rec = {'kind': 'gemm', 'host': {**HOST, 'versions': {'torch': '9.9'}}, 'repeats': 5,
         'jax': '0.1', 'load_before': [0.25, 0, 0],
         'columns': ['XLA f32', 'XLA bf16', 'torch f32', 'torch bf16'],
         'rows': [{'name': 'fc1', 'm': 8, 'k': 4, 'n': 2,
                   'gflops': {'XLA f32': 150.0, 'XLA bf16': 140.0, 'torch f32': 200.0,
                              'torch bf16': 350.0}}]}
  (tmp_path / 'g.json').write_text(json.dumps(rec))
  lines = gemm_ceiling.docs_table(str(tmp_path)).splitlines()
  assert lines[0].endswith('| XLA / torch f32 | XLA / torch bf16 |')
  assert lines[2] == '| fc1 [8,4]x[4,2] | 150 | 140 | 200 | 350 | 0.75x | 0.40x |'
  assert 'best of 5; CPU X (avx512f), 2 CPUs, load before 0.25; jax 0.1, torch 9.9; g.json' in lines[4]
  assert gemm_ceiling.main(['--render', '--check']) == 0
