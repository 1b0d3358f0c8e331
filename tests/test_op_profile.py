"""benchmarks/op_profile.py files each executed HLO op of the entry computation by kind."""
from benchmarks import op_profile

# A trimmed optimised-HLO dump in XLA:CPU's text form: three fusions and a plain copy.
HLO = """HloModule jit_step, is_scheduled=true

%fused_dot (param_0: f32[8,4], param_1: f32[4,2]) -> f32[8,2] {
  %param_0 = f32[8,4]{1,0} parameter(0)
  %param_1 = f32[4,2]{1,0} parameter(1)
  ROOT %dot.1 = f32[8,2]{1,0} dot(%param_0, %param_1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}

%fused_transpose (param_0.1: f32[8,2]) -> f32[2,8] {
  %param_0.1 = f32[8,2]{1,0} parameter(0)
  ROOT %transpose.1 = f32[2,8]{1,0} transpose(%param_0.1), dimensions={1,0}
}

%fused_gelu (param_0.2: f32[8,2]) -> f32[8,2] {
  %param_0.2 = f32[8,2]{1,0} parameter(0)
  %erf.1 = f32[8,2]{1,0} erf(%param_0.2)
  ROOT %multiply.1 = f32[8,2]{1,0} multiply(%param_0.2, %erf.1)
}

ENTRY %main.1 (x: f32[8,4], w: f32[4,2]) -> f32[2,8] {
  %x = f32[8,4]{1,0} parameter(0)
  %w = f32[4,2]{1,0} parameter(1)
  %ynn_fusion = f32[8,2]{1,0} fusion(%x, %w), kind=kCustom, calls=%fused_dot
  %multiply_fusion = f32[8,2]{1,0} fusion(%ynn_fusion), kind=kLoop, calls=%fused_gelu
  %copy.3 = f32[8,2]{0,1} copy(%multiply_fusion)
  ROOT %copy_fusion = f32[2,8]{1,0} fusion(%copy.3), kind=kLoop, calls=%fused_transpose
}
"""


def test_hlo_op_kinds_files_fusions_by_what_they_compute():
  kinds = op_profile.hlo_op_kinds(HLO)
  assert kinds['ynn_fusion'] == ('dot', 'f32[8,2]')
  assert kinds['multiply_fusion'] == ('elementwise', 'f32[8,2]')
  assert kinds['copy_fusion'] == ('transpose/copy', 'f32[2,8]')
  assert kinds['copy.3'] == ('copy', 'f32[8,2]')
  assert 'x' not in kinds or kinds['x'][0] == 'parameter'


def test_table_shares_add_up_and_divide_by_steps():
  text = op_profile.table({'dot': 300.0, 'copy': 100.0}, {('dot', 'f32[8,2]'): (300.0, 3)},
                          steps=2, top=5, unit='t')
  assert 't per step, total 200 ms' in text
  assert '| dot | 150 | 75.0% |' in text and '| copy | 50 | 25.0% |' in text
  assert '| dot | f32[8,2] | 3 | 150.0 |' in text
