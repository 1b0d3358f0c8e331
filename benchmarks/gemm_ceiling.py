"""The matmul ceiling of this machine: GFLOP/s of the train step's GEMMs, XLA and PyTorch.

  .venv-bench/bin/python -m benchmarks.gemm_ceiling [--repeats=5]

The benchmark's steps (`python -m benchmarks.step`) are matmul-bound on a CPU, so no step can
beat (XLA-counted FLOPs per step) / (the fastest GEMM rate here). This times one fp32 GEMM of
each shape that dominates the default workload (ViT-Ti encoder on 65 tokens x 128 images, MAE
decoder 512 wide on the same tokens; forward and weight-gradient shapes) and a 2048^3 square,
with XLA (`jnp.dot` under jit) and, where importable, PyTorch (`torch.mm`), best of the repeats.
bf16 inputs with float32 accumulation are timed too, for reference: the CPU step runs float32.
"""
import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

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


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--repeats', type=int, default=5)
  args = p.parse_args()
  try:
    import torch  # pylint: disable=g-import-not-at-top,unused-import
    have_torch = True
  except ImportError:
    have_torch = False
  cols = ['XLA f32', 'XLA bf16'] + (['torch f32', 'torch bf16'] if have_torch else [])
  print(f'GFLOP/s, best of {args.repeats} (jax {jax.__version__}, '
        f'{jax.devices()[0].device_kind}' + (f', torch {torch.__version__})' if have_torch else ')'))
  print('| GEMM [M,K]x[K,N] | ' + ' | '.join(cols) + ' |')
  print('|---|' + '---|' * len(cols))
  rng = np.random.default_rng(0)
  best = dict.fromkeys(cols, 0.0)
  for name, m, k, n in SHAPES:
    a = rng.standard_normal((m, k), np.float32)
    b = rng.standard_normal((k, n), np.float32)
    runs = [_xla(a, b, jnp.float32), _xla(a, b, jnp.bfloat16)]
    if have_torch:
      runs += [_torch(a, b, 'float32'), _torch(a, b, 'bfloat16')]
    rates = [2 * m * k * n / _best_seconds(r, args.repeats) / 1e9 for r in runs]
    for c, r in zip(cols, rates):
      best[c] = max(best[c], r)
    print(f'| {name} [{m},{k}]x[{k},{n}] | ' + ' | '.join(f'{r:.0f}' for r in rates) + ' |')
  print('fastest: ' + ', '.join(f'{c} {v:.0f}' for c, v in best.items()) + ' GFLOP/s')


if __name__ == '__main__':
  main()
