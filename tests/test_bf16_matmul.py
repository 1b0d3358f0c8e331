"""Precision 'bf16_matmul': the linear layers multiply bfloat16-rounded operands in float32.

The reference is NumPy float64 on the same operands rounded to bfloat16 (ml_dtypes), so the
only difference allowed is float32 accumulation.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from livt_jax import config_defaults
from livt_jax import validate
from livt_jax.models import factory
from livt_jax.models import kernels
from test_vit import _images, _nano, random_params


def _bf16(a):
  return np.asarray(a, np.float32).astype(ml_dtypes.bfloat16).astype(np.float64)


def test_forward_and_gradients_match_float64_on_rounded_operands():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 5, 24)).astype(np.float32)
  w = rng.normal(size=(24, 7)).astype(np.float32)
  g = rng.normal(size=(2, 5, 7)).astype(np.float32)
  out, vjp = jax.vjp(kernels.bf16_matmul, jnp.asarray(x), jnp.asarray(w))
  dx, dw = vjp(jnp.asarray(g))
  assert out.dtype == dx.dtype == dw.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(out), _bf16(x) @ _bf16(w), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(dx), _bf16(g) @ _bf16(w).T, rtol=1e-5, atol=1e-5)
  want_dw = np.einsum('btk,btn->kn', _bf16(x), _bf16(g))
  np.testing.assert_allclose(np.asarray(dw), want_dw, rtol=1e-5, atol=1e-5)
  # and it is not the float32 product: the rounding is real
  assert np.max(np.abs(np.asarray(out) - x.astype(np.float64) @ w)) > 1e-3


def test_vit_runs_its_linear_layers_in_bf16_and_stays_near_float32():
  x = _images((2, 8, 8, 3))
  f32, mixed = _nano('gap'), _nano('gap', bf16_matmul=True)
  params = random_params(f32, x)
  ref = f32.apply({'params': params}, x, train=False)
  got = mixed.apply({'params': params}, x, train=False)  # same tree: a drop-in switch
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=0.05, atol=0.05)
  assert not np.allclose(np.asarray(got), np.asarray(ref), rtol=1e-5, atol=1e-6)
  hlo = jax.jit(lambda p: mixed.apply({'params': p}, x, train=False)).lower(params).as_text()
  # qkv, proj, fc1, fc2 in each of the 2 blocks; the patch embedding and head stay float32
  assert _bf16_dots(hlo) == 8


def _bf16_dots(hlo: str) -> int:
  return sum(1 for line in hlo.splitlines()
             if 'dot_general' in line and 'tensor<' in line and 'bf16' in line.split('->')[0])


@pytest.mark.parametrize('precision,want_dtype,want_bf16_matmul', [
    ('bf16_matmul', jnp.float32, True),
    ('bfloat16', jnp.bfloat16, False),
    ('float32', jnp.float32, False),
])
def test_config_switch(precision, want_dtype, want_bf16_matmul):
  config = config_defaults.get_base_config()
  config.precision = precision
  validate.validate(config, 1, check_data=False)
  model = factory.build_vit(config, num_classes=10)
  assert model.dtype == want_dtype and model.bf16_matmul == want_bf16_matmul
  mae = factory.build_mae(config)
  assert mae.dtype == want_dtype and mae.bf16_matmul == want_bf16_matmul


def test_mae_tree_is_the_same_under_bf16_matmul():
  config = config_defaults.get_base_config()
  shapes = []
  for precision in ('float32', 'bf16_matmul'):
    config.precision = precision
    model = factory.build_mae(config)
    tree = jax.eval_shape(factory.init_fn(model, (32, 32, 3)), jax.random.key(0))
    shapes.append(jax.tree.map(lambda a: (a.shape, a.dtype), nn.unbox(tree['params'])))
  assert shapes[0] == shapes[1]


def _config(precision):
  config = config_defaults.get_base_config()
  config.precision = precision
  return config


def test_cpu_flags_reads_the_flags_line(tmp_path):
  info = tmp_path / 'cpuinfo'
  info.write_text('processor\t: 0\nmodel name\t: X\nflags\t\t: fpu sse2 avx512f avx512_bf16\n')
  assert factory.cpu_flags(str(info)) == {'fpu', 'sse2', 'avx512f', 'avx512_bf16'}
  (tmp_path / 'arm').write_text('processor\t: 0\nFeatures\t: fp asimd bf16\n')
  assert factory.cpu_flags(str(tmp_path / 'arm')) is None
  assert factory.cpu_flags(str(tmp_path / 'missing')) is None


@pytest.mark.parametrize('flags,warns', [
    (frozenset({'avx512f', 'avx512_bf16'}), False),
    (frozenset({'amx_bf16'}), False),
    (frozenset({'avx2', 'avx512f'}), True),   # AVX-512 without its bf16 extension: emulated
    (None, True),                             # flags unreadable: say it could not be checked
])
def test_slow_bf16_matmul_note_on_cpu(flags, warns):
  note = factory.slow_bf16_matmul_note(_config('bf16_matmul'), flags, platform='cpu')
  assert (note is not None) == warns
  if warns:
    assert '--config.precision=float32' in note
    assert ('could not be checked' in note) == (flags is None)


def test_slow_bf16_matmul_note_only_for_bf16_matmul_on_cpu():
  plain = frozenset({'avx2'})
  assert factory.slow_bf16_matmul_note(_config('float32'), plain, platform='cpu') is None
  assert factory.slow_bf16_matmul_note(_config('bfloat16'), plain, platform='cpu') is None
  assert factory.slow_bf16_matmul_note(_config('bf16_matmul'), plain, platform='tpu') is None
