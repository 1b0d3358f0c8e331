"""Where one train step's time goes, per op kind: JAX (XLA:CPU thunks) or PyTorch (aten ops).

    python -m benchmarks.op_profile --stage bft --precision float32
    python -m benchmarks.op_profile --stage bft --precision float32 --framework torch
    python -m benchmarks.op_profile ... --json benchmarks/results/profile/NAME.json

JAX: the benchmark's step (`benchmarks.jax_runner`, the engine's own step) runs under a
`jax.profiler` trace with the optimised HLO dumped; every executed thunk (one fusion, one
library GEMM, one copy) is looked up in the HLO and filed by kind: 'dot' (a fusion that holds a
dot, i.e. a GEMM or batched matmul), 'transpose/copy' (a fusion that moves data: transpose,
copy, slice), 'reduce', 'elementwise', or the op itself. The table sums thunk time per step by
kind and by (kind, output shape). XLA:CPU may run two independent thunks at once on its two
threads, so the sum can exceed the step's wall time; the shares are what to compare.

PyTorch (`--framework torch`, the benchmark venv): the same step as `--vs_torch` times
(`benchmarks.torch_runner`) under `torch.profiler`, self CPU time per aten op per step. The
profiler's own overhead makes these steps slower than unprofiled ones. Run it in its own
process: timm's imports do not mix with the TensorFlow the JAX side loads.

Needs an idle machine like the other benchmarks; the shares move less than the totals with load.
"""
import argparse
import collections
import glob
import json
import os
import re
import sys
import tempfile

from benchmarks import hostinfo
from benchmarks import measure

# An HLO instruction of the entry computation: name, shape, opcode, and the computation it calls.
_INSTR = re.compile(r'\s*(?:ROOT )?%?([\w.\-]+) = (\S+) ([a-z][\w\-]*)\(')
_OPCODES = re.compile(r'= \S+ ([a-z][\w\-]*)\(')


def _computations(hlo: str) -> dict[str, str]:
  return {m.group(1): m.group(2) for m in re.finditer(
      r'^(?:ENTRY )?%?([\w.\-]+) [^\n]*\{\n(.*?)\n\}', hlo, re.S | re.M)}


def _kind(opcode: str, called_ops: set[str]) -> str:
  if not called_ops:
    return opcode
  if called_ops & {'dot', 'convolution'}:
    return 'dot'
  if 'reduce' in called_ops:
    return 'reduce'
  if called_ops & {'gather', 'scatter'}:
    return 'gather/scatter'
  if called_ops & {'transpose', 'copy', 'slice'} and not called_ops & {'erf', 'exponential',
                                                                       'divide', 'rsqrt'}:
    return 'transpose/copy'
  return 'elementwise'


def hlo_op_kinds(hlo: str) -> dict[str, tuple[str, str]]:
  """{instruction name: (kind, output shape)} for the entry computation of an HLO text dump."""
  comps = _computations(hlo)
  entry = re.search(r'^ENTRY %?([\w.\-]+)', hlo, re.M).group(1)
  out = {}
  for line in comps[entry].splitlines():
    m = _INSTR.match(line)
    if not m:
      continue
    name, shape, opcode = m.groups()
    called = re.search(r'calls=%?([\w.\-]+)', line)
    ops = set(_OPCODES.findall(comps.get(called.group(1), ''))) if called else set()
    out[name] = (_kind(opcode, ops), shape.split('{')[0])
  return out


def thunk_ms(xplane_path: str, names) -> collections.Counter:
  """Total ms per event name over the XLA:CPU worker threads of an .xplane.pb trace."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top
  space = xplane_pb2.XSpace()
  with open(xplane_path, 'rb') as f:
    space.ParseFromString(f.read())
  total = collections.Counter()
  for plane in space.planes:
    for line in plane.lines:
      for ev in line.events:
        name = plane.event_metadata[ev.metadata_id].name
        if name in names:
          total[name] += ev.duration_ps / 1e9
  return total


def table(per_kind: dict, per_shape: dict, steps: int, top: int, unit: str) -> str:
  total = sum(per_kind.values())
  lines = [f'{unit} per step, total {total / steps:.0f} ms', '| kind | ms/step | share |',
           '|---|---|---|']
  lines += [f'| {k} | {v / steps:.0f} | {100 * v / total:.1f}% |'
            for k, v in sorted(per_kind.items(), key=lambda kv: -kv[1])[:top]]
  if per_shape:
    lines += ['', '| kind | output shape | ops | ms/step |', '|---|---|---|---|']
    for (k, shape), (ms, n) in sorted(per_shape.items(), key=lambda kv: -kv[1][0])[:top]:
      lines.append(f'| {k} | {shape} | {n} | {ms / steps:.1f} |')
  return '\n'.join(lines)


def _workload(args) -> list[str]:
  # The step tool's defaults (ViT-Ti, 32 px, batch 128) unless given.
  return ['--stages', args.stage, '--precision', args.precision, '--variant', args.variant,
          '--batch', str(args.batch)]


def profile_jax(args) -> str:
  dump = tempfile.mkdtemp(prefix='op_profile_hlo_')
  trace = tempfile.mkdtemp(prefix='op_profile_trace_')
  # Read when the backend starts, so before anything touches JAX's devices.
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + f' --xla_dump_to={dump}').strip()
  from benchmarks import jax_runner  # pylint: disable=g-import-not-at-top
  from benchmarks import step as step_cli  # pylint: disable=g-import-not-at-top
  from benchmarks import workload  # pylint: disable=g-import-not-at-top
  from livt_jax.engine import sharding  # pylint: disable=g-import-not-at-top
  step_args = step_cli.parse_args(_workload(args) + ['--steps', str(args.steps), '--warmup', '1',
                                                      '--profile_dir', trace])
  mesh = sharding.make_mesh(workload.make_config(step_args))
  jax_runner.build_jax_runner(args.stage, step_args, mesh)  # traces min(steps, 5) steps
  steps = min(args.steps, 5)
  dumps = glob.glob(os.path.join(dump, '*jit_step*cpu_after_optimizations.txt'))
  traces = glob.glob(os.path.join(trace, '**', '*.xplane.pb'), recursive=True)
  if not dumps or not traces:
    sys.exit(f'no HLO dump ({dump}) or trace ({trace}) of the step was written')
  with open(max(dumps, key=os.path.getsize)) as f:
    kinds = hlo_op_kinds(f.read())
  ms = thunk_ms(traces[0], kinds)
  per_kind, per_shape = collections.Counter(), {}
  for name, t in ms.items():
    kind, shape = kinds[name]
    per_kind[kind] += t
    old = per_shape.get((kind, shape), (0.0, 0))
    per_shape[(kind, shape)] = (old[0] + t, old[1] + 1)
  return per_kind, per_shape, steps, 'XLA:CPU thunk time'


def profile_torch(args) -> str:
  import torch  # pylint: disable=g-import-not-at-top
  from benchmarks import pairing  # pylint: disable=g-import-not-at-top
  from benchmarks import step as step_cli  # pylint: disable=g-import-not-at-top
  from benchmarks import torch_runner  # pylint: disable=g-import-not-at-top
  step_args = step_cli.parse_args(_workload(args) + ['--warmup', '1'])
  precision, _ = pairing.torch_precision_for(args.precision, 'same')
  runner = torch_runner.build_torch_runner(args.stage, step_args, None, precision)
  with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
    runner.run(args.steps)
  per_op = {e.key: e.self_cpu_time_total / 1e3 for e in prof.key_averages()}
  per_op = {k: v for k, v in per_op.items() if v > 0}
  return per_op, {}, args.steps, f'torch self CPU time ({precision})'


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--stage', default='bft', choices=('mgp', 'bft'))
  p.add_argument('--precision', default='float32', choices=('float32', 'bf16_matmul'))
  p.add_argument('--framework', default='jax', choices=('jax', 'torch'))
  p.add_argument('--variant', default='Ti')
  p.add_argument('--batch', type=int, default=128)
  p.add_argument('--steps', type=int, default=2, help='profiled steps (JAX: at most 5)')
  p.add_argument('--top', type=int, default=25, help='rows of the per-shape table')
  p.add_argument('--json', default=None,
                 help='also write ms per step by kind (and by kind and shape) here, with the host '
                      'and load (benchmarks/results/profile/ holds the committed ones)')
  args = p.parse_args(argv)
  cpus = measure.usable_cpus()
  load_before = hostinfo.load()
  print(f'{args.framework} {args.stage} {args.precision}, {cpus} CPUs, load {load_before}')
  profile = profile_jax if args.framework == 'jax' else profile_torch
  per_kind, per_shape, steps, unit = profile(args)
  print(table(per_kind, per_shape, steps, args.top, unit))
  print(f'load after {hostinfo.load()}')
  if args.json:
    figures = {'framework': args.framework, 'stage': args.stage, 'precision': args.precision,
               'variant': args.variant, 'batch': args.batch, 'steps': steps, 'unit': unit,
               'ms_per_step': {k: v / steps for k, v in per_kind.items()},
               'by_shape': [{'kind': k, 'shape': shape, 'ops': n, 'ms_per_step': ms / steps}
                            for (k, shape), (ms, n) in sorted(per_shape.items(),
                                                              key=lambda kv: -kv[1][0])]}
    with open(args.json, 'w') as f:
      json.dump(hostinfo.record('op_profile', load_before, figures), f, indent=2)


if __name__ == '__main__':
  from livt_jax.runtime import host_malloc  # pylint: disable=g-import-not-at-top
  host_malloc.reexec_if_useful()
  main()
