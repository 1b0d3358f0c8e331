"""The matmul ceiling of this machine: GFLOP/s of the train step's GEMMs, XLA and PyTorch.

  .venv-bench/bin/python -m benchmarks.gemm_ceiling [--repeats=5] [--json benchmarks/results/gemm/NAME.json]
  python -m benchmarks.gemm_ceiling --render [--check]   # docs/performance.md's table from the JSON

The benchmark's steps (`python -m benchmarks.step`) are matmul-bound on a CPU, so no step can
beat (XLA-counted FLOPs per step) / (the fastest GEMM rate here). This times one fp32 GEMM of
each shape that dominates the default workload (ViT-Ti encoder on 65 tokens x 128 images, MAE
decoder 512 wide on the same tokens; forward and weight-gradient shapes) and a 2048^3 square,
with XLA (`jnp.dot` under jit) and, where importable, PyTorch (`torch.mm`), best of the repeats.
bf16 inputs with float32 accumulation are timed too, for reference: the CPU step runs float32.
"""
import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import generated
from benchmarks import hostinfo
from benchmarks import render

RESULTS = os.path.join(render.RESULTS, 'gemm')
DOCS = os.path.join(render.ROOT, 'docs', 'performance.md')

# (name, M, K, N): [M, K] @ [K, N].
SHAPES = (
    ('square 2048', 2048, 2048, 2048),
    ('MAE decoder fc1', 8320, 512, 2048),
    ('MAE decoder fc2', 8320, 2048, 512),
    ('MAE decoder qkv', 8320, 512, 1536),
    ('MAE decoder fc1 dW', 512, 8320, 2048),
    ('ViT-Ti fc1', 8320, 192, 768),
    ('ViT-Ti fc2', 8320, 768, 192),
    ('ViT-Ti fc1 dW', 192, 8320, 768),
)


def _best_seconds(fn, repeats: int) -> float:
  fn()  # compile / warm caches
  best = float('inf')
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - t0)
  return best


def _xla(a, b, dtype):
  x, y = jnp.asarray(a, dtype), jnp.asarray(b, dtype)
  f = jax.jit(lambda p, q: jnp.dot(p, q, preferred_element_type=jnp.float32))
  return lambda: f(x, y).block_until_ready()


def _torch(a, b, dtype_name):
  import torch  # pylint: disable=g-import-not-at-top
  dtype = getattr(torch, dtype_name)
  x, y = torch.from_numpy(a).to(dtype), torch.from_numpy(b).to(dtype)
  return lambda: torch.mm(x, y)


def measure_rates(repeats: int) -> dict:
  """{'columns': [...], 'rows': [{'name', 'm', 'k', 'n', 'gflops': {column: rate}}]}."""
  try:
    import torch  # pylint: disable=g-import-not-at-top,unused-import
    have_torch = True
  except ImportError:
    have_torch = False
  cols = ['XLA f32', 'XLA bf16'] + (['torch f32', 'torch bf16'] if have_torch else [])
  rng = np.random.default_rng(0)
  rows = []
  for name, m, k, n in SHAPES:
    a = rng.standard_normal((m, k), np.float32)
    b = rng.standard_normal((k, n), np.float32)
    runs = [_xla(a, b, jnp.float32), _xla(a, b, jnp.bfloat16)]
    if have_torch:
      runs += [_torch(a, b, 'float32'), _torch(a, b, 'bfloat16')]
    rates = [2 * m * k * n / _best_seconds(r, repeats) / 1e9 for r in runs]
    rows.append({'name': name, 'm': m, 'k': k, 'n': n, 'gflops': dict(zip(cols, rates))})
  return {'columns': cols, 'rows': rows, 'repeats': repeats, 'jax': jax.__version__,
          'device_kind': jax.devices()[0].device_kind}


def table(rec: dict) -> str:
  """The GFLOP/s table of one record, with XLA's rate over torch's per precision."""
  cols = rec['columns']
  ratio_cols = [p for p in ('f32', 'bf16') if f'torch {p}' in cols]
  head = ('| GEMM [M,K]x[K,N] | ' + ' | '.join(cols)
          + ''.join(f' | XLA / torch {p}' for p in ratio_cols) + ' |')
  lines = [head, '|' + '---|' * (head.count(' | ') + 1)]
  for r in rec['rows']:
    g = r['gflops']
    ratios = ''.join(f" | {g[f'XLA {p}'] / g[f'torch {p}']:.2f}x" for p in ratio_cols)
    lines.append(f"| {r['name']} [{r['m']},{r['k']}]x[{r['k']},{r['n']}] | "
                 + ' | '.join(f'{g[c]:.0f}' for c in cols) + ratios + ' |')
  return '\n'.join(lines)


def docs_table(folder: str = RESULTS) -> str:
  records = render.load(folder)
  if not records:
    return render.NONE_YET.format('gemm')
  parts = []
  for name, rec in records:
    parts += [table(rec), '',
              f"GFLOP/s, best of {rec['repeats']}; {render.host_label(rec)}, load before "
              f"{rec['load_before'][0]:.2f}; jax {rec['jax']}, torch "
              f"{rec['host'].get('versions', {}).get('torch', '-')}; {name}.", '']
  return '\n'.join(parts).rstrip()


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--json', default=None, help='also write the rates here, with host and load')
  p.add_argument('--render', action='store_true',
                 help="write docs/performance.md's table from benchmarks/results/gemm/")
  p.add_argument('--check', action='store_true', help='with --render: exit 1 if it is stale')
  args = p.parse_args(argv)
  if args.render:
    return generated.update(DOCS, 'gemm', docs_table(), args.check,
                            'python -m benchmarks.gemm_ceiling --render')
  load_before = hostinfo.load()
  rec = measure_rates(args.repeats)
  print(table(rec))
  for col in rec['columns']:
    print(f"fastest {col}: {max(r['gflops'][col] for r in rec['rows']):.0f} GFLOP/s")
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, 'w') as f:
      json.dump(hostinfo.record('gemm', load_before, rec), f, indent=2)
  return 0


if __name__ == '__main__':
  sys.exit(main())
