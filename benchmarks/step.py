"""Train-step benchmark of the two LiVT stages (MGP and BFT), optionally against PyTorch.

Runs the project's real train step (the one `train.train` runs: `train.build_stage` +
`steps.*_loss_fn` + `train.compile_step`, state donated, batch sharded over every device) on a
fixed synthetic batch and reports, after warm-up, the median step time as images/s, the
compile time, the peak memory and the FLOPs XLA counts for one step (and, on an accelerator,
the model FLOP utilisation against the chip's peak bf16 rate). The input pipeline is left out
on purpose: this measures the step alone.

    python -m benchmarks.step --variant Ti --image_size 32 --patch 4 --batch 128
    python -m benchmarks.step --stages bft --vs_torch --repeats 3 --json /tmp/bench.json

`--vs_torch` times the same model in PyTorch in a child process (timm's `VisionTransformer`
and timm `Block`s for the MAE), doing the same work by default: float32 against float32,
`bf16_matmul` against `torch.autocast(device, torch.bfloat16)`, `bfloat16` against a bf16 model
(`benchmarks/pairing.py` says what autocast puts in bf16 and where the two still differ).
`--torch_precision` pairs otherwise; those ratios are labelled 'NOT same work'.
`--torch_compile` adds torch.compile (inductor) rows, their compile time apart. It needs the
separate benchmark venv, see requirements-benchmark.txt:

    python3 -m venv .venv-bench && .venv-bench/bin/pip install -r requirements.txt -r requirements-benchmark.txt

Where timm cannot be imported (e.g. a CPU-only torch next to PyPI's CUDA torchvision wheel,
which timm imports), a replica of timm's ViT block (same modules, same op sequence,
`F.scaled_dot_product_attention`) is used instead and the table says so.

XLA flags go through the environment as usual, e.g.
`XLA_FLAGS=--xla_dump_to=/tmp/dump python -m benchmarks.step ...`; `--profile_dir` writes a
`jax.profiler` trace of the first timed steps (open it with TensorBoard or Perfetto).

On a CPU-only host the script restarts itself with the glibc malloc tunables the engine uses
(`livt_jax/runtime/host_malloc.py`), so the JAX figures are what `livt_jax.main` gets; the PyTorch child
gets the same allocator settings (`--torch_malloc same`), glibc's defaults (`default`), or runs
twice, once each (`both`). The machine's speed drifts (10-20% over minutes on a shared VM):
compare frameworks with `--repeats 3` or more. `--json` writes every figure with the host (CPU
model and flags), versions, load and command; `python -m benchmarks.render` makes the
docs/benchmarks.md tables from the JSON files committed under benchmarks/results/.

This file is the command line; the parts are in `benchmarks/`: `workload` (config, batch),
`measure` (step times, CPU load, memory), `jax_runner`, `torch_models` and `torch_runner` (the
PyTorch reference and its child process), `report` (summary and table).
"""
import argparse
import json
import os
import platform
import sys

import jax

from livt_jax.runtime import distributed
from livt_jax.runtime import host_malloc
from livt_jax.engine import sharding
from benchmarks import hostinfo
from benchmarks import measure
from benchmarks import pairing
from benchmarks import report
from benchmarks import torch_runner
from benchmarks import workload
from livt_jax.models import vit


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  p.add_argument('--stages', default='mgp,bft', help='comma-separated: mgp, bft')
  p.add_argument('--variant', default='Ti', choices=sorted(vit.VARIANTS))
  p.add_argument('--image_size', type=int, default=32)
  p.add_argument('--patch', type=int, default=4)
  p.add_argument('--batch', type=int, default=128, help='global batch')
  p.add_argument('--channels', type=int, default=3)
  p.add_argument('--num_classes', type=int, default=100)
  p.add_argument('--steps', type=int, default=20, help='timed steps per repeat')
  p.add_argument('--warmup', type=int, default=3, help='untimed steps after compiling')
  p.add_argument('--repeats', type=int, default=1,
                 help='timed rounds of --steps steps, interleaved across the runners (fairer on a busy machine)')
  p.add_argument('--precision', default='float32', choices=('float32', 'bfloat16', 'bf16_matmul'),
                 help='JAX precision; with --vs_torch PyTorch runs the same work: float32, '
                      'autocast(bfloat16) for bf16_matmul, a bf16 model for bfloat16')
  p.add_argument('--decoder_depth', type=int, default=8)
  p.add_argument('--decoder_width', type=int, default=512)
  p.add_argument('--decoder_heads', type=int, default=16)
  p.add_argument('--mask_ratio', type=float, default=0.75)
  p.add_argument('--drop_path', type=float, default=0.1)
  p.add_argument('--gelu', default='erf', choices=('erf', 'tanh'),
                 help='tanh: approximate GELU in both frameworks (changes numerics)')
  p.add_argument('--remat', action='store_true')
  p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                 help='JAX side only: a config override, e.g. model.attention=xla (repeatable; '
                      'the value read as a Python literal, else as a string)')
  p.add_argument('--cpu_devices', type=int, default=0,
                 help='CPU-only hosts: split the CPU into this many JAX devices, the step data '
                      'parallel over them (config.cpu_devices; a device count in XLA_FLAGS '
                      'wins); 0: JAX\'s one device')
  p.add_argument('--vs_torch', action='store_true', help='also time the PyTorch (timm) model')
  p.add_argument('--torch_precision', default='same',
                 choices=('same',) + pairing.TORCH_PRECISIONS,
                 help="PyTorch's precision; anything but 'same' may not be the same work as "
                      "--precision, and the table then says 'NOT same work'")
  p.add_argument('--torch_compile', action='store_true',
                 help='also time torch.compile (inductor) rows; compile time reported apart')
  p.add_argument('--torch_malloc', default='same', choices=('same', 'default', 'both'),
                 help="the PyTorch process's glibc malloc settings: 'same' as the JAX process "
                      "(host_malloc's tunables), glibc's 'default', or 'both' (two PyTorch "
                      'processes, rows for each)')
  p.add_argument('--peak_tflops', type=float, default=None,
                 help='peak FLOP/s per device in TFLOP/s for MFU (default: looked up)')
  p.add_argument('--profile_dir', default=None, help='write a jax.profiler trace here')
  p.add_argument('--json', default=None,
                 help='also save the results here (host, versions, load, command, figures; '
                      'benchmarks/results/step/ holds the committed ones)')
  # Internal: the PyTorch side runs in a child process (see `torch_runner.TorchChild`).
  p.add_argument('--torch_child', action='store_true', help=argparse.SUPPRESS)
  return p.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  stages = [s.strip() for s in args.stages.split(',') if s.strip()]
  bad = [s for s in stages if s not in ('mgp', 'bft')]
  if bad or not stages:
    sys.exit(f'--stages={args.stages!r}: use a comma-separated subset of mgp,bft')
  if args.torch_child:  # before touching JAX's devices (on a GPU, JAX would claim its memory)
    torch_runner.serve_torch_child(args, stages)
    return []
  # Imported here, not at the top: the engine's modules pull in TensorFlow (clu's metric
  # writers), and timm's import of torchvision/triton segfaults in a process that holds it.
  from benchmarks import jax_runner  # pylint: disable=g-import-not-at-top
  load_before = hostinfo.load()
  try:
    distributed.split_cpu_into_devices(args.cpu_devices, '--cpu_devices')
  except ValueError as e:
    sys.exit(str(e))
  config = workload.make_config(args)
  mesh = sharding.make_mesh(config)
  device = jax.devices()[0]
  peak = args.peak_tflops
  if peak is None and device.platform != 'cpu':
    peak = report.peak_tflops_for(device.device_kind)

  jax_runners = [jax_runner.build_jax_runner(stage, args, mesh) for stage in stages]
  runners = list(jax_runners)
  children = []
  if args.vs_torch:
    child_argv = list(sys.argv[1:] if argv is None else argv)
    for malloc in (('same', 'default') if args.torch_malloc == 'both' else (args.torch_malloc,)):
      children.append(torch_runner.TorchChild(child_argv, malloc))
      runners += children[-1].runners()
  # Timed rounds alternate between the runners, so a change of load hits all alike.
  for _ in range(args.repeats):
    for r in runners:
      r.timed_round(args.steps)

  results = [report.summarise(r, args, peak) for r in jax_runners]
  for child in children:
    results += child.finish({r.stage: r.flops for r in jax_runners}, peak)
  results = [x for stage in stages for x in results if x['stage'] == stage]
  meta = {
      'variant': args.variant, 'image_size': args.image_size, 'patch': args.patch,
      'batch': args.batch, 'precision': args.precision, 'gelu': args.gelu,
      'decoder': f'{args.decoder_depth}x{args.decoder_width}x{args.decoder_heads}',
      'num_devices': mesh.size, 'device_kind': device.device_kind, 'platform': device.platform,
      'jax': jax.__version__, 'cpu_count': measure.usable_cpus(),
      'python': platform.python_version(),
      'steps': args.steps, 'warmup': args.warmup, 'repeats': args.repeats,
      'peak_tflops': peak, 'xla_flags': os.environ.get('XLA_FLAGS', ''),
      'load_before': ' '.join(f'{x:.2f}' for x in load_before),
      'load_after': ' '.join(f'{x:.2f}' for x in hostinfo.load()),
      'torch_compile': args.torch_compile, 'torch_malloc': args.torch_malloc,
      'glibc_tunables': os.environ.get('GLIBC_TUNABLES', ''),
  }
  ratio_rows = report.ratios(results, args.precision, meta['glibc_tunables'])
  print(report.format_table(results, meta, ratio_rows))
  if args.json:
    record = hostinfo.record('step', load_before,
                             {'meta': meta, 'results': results, 'ratios': ratio_rows})
    with open(args.json, 'w') as f:
      json.dump(record, f, indent=2)
  return results


if __name__ == '__main__':
  host_malloc.reexec_if_useful()
  main()
