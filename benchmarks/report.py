"""The benchmark's report: per-runner summary (images/s, memory, FLOPs, MFU) and the table."""
import statistics

from livt_jax.runtime import chips
from benchmarks import measure
from benchmarks import pairing


def peak_tflops_for(device_kind: str) -> float | None:
  """Peak dense bf16 TFLOP/s of one chip of this `device.device_kind`, from the one table in
  livt_jax/runtime/chips.py (TPU v4/v5e/v5p/v6e, A100/H100/H200); None where unknown (CPU)."""
  chip = chips.for_device_kind(device_kind)
  return chip.peak_tflops if chip else None


def summarise(r: measure.Runner, args, peak_tflops: float | None) -> dict:
  med = statistics.median(r.times)
  compile_s = r.compile_s
  if compile_s is None and r.first_step_s is not None and r.framework == 'torch.compile':
    compile_s = r.first_step_s - med  # the first step compiled forward and backward
  out = {
      'stage': r.stage, 'framework': r.framework, 'impl': r.impl,
      'images_per_s': args.batch / med, 'step_ms_median': 1e3 * med,
      'step_ms_min': 1e3 * min(r.times), 'step_ms_max': 1e3 * max(r.times),
      'cpu_s_per_step_median': statistics.median(r.cpu_times),
      'num_steps_timed': len(r.times), 'compile_s': compile_s,
      'first_step_s': r.first_step_s,
      'peak_rss_bytes': r.peak_rss, 'rss_before_bytes': r.rss_before,
      'device_peak_bytes': r.device_peak, 'xla_temp_bytes': r.xla_temp,
      'flops_per_step_per_device': r.flops, 'final_loss': r.loss() if r.loss else None,
      'others_cpu_share_max': max(r.others) if r.others else None,
  }
  if r.flops:
    out['tflops_per_s_per_device'] = r.flops / med / 1e12
    if peak_tflops:
      out['mfu'] = out['tflops_per_s_per_device'] / peak_tflops
  return out


def row_name(r: dict) -> str:
  """'jax', 'torch', 'torch.compile', with ' [glibc default malloc]' where the PyTorch child ran
  with other allocator settings than the JAX process."""
  name = r['framework']
  if r.get('malloc') == 'glibc default':
    name += ' [glibc default malloc]'
  return name


def ratios(results: list[dict], jax_precision: str, jax_tunables: str) -> list[dict]:
  """JAX img/s over each PyTorch row's, per stage, labelled same work or not (see `pairing`);
  a PyTorch row whose GLIBC_TUNABLES differ from the JAX process's (`jax_tunables`) is
  labelled 'other malloc'."""
  out = []
  for jax_row in (r for r in results if r['framework'] == 'jax'):
    for other in results:
      if other['stage'] != jax_row['stage'] or other['framework'] == 'jax':
        continue
      same = pairing.pairing_label(jax_precision, other['torch_precision'])
      if other.get('glibc_tunables', jax_tunables) != jax_tunables:
        same += ', other malloc'
      out.append({
          'stage': jax_row['stage'], 'jax': 'jax', 'torch': row_name(other),
          'jax_precision': jax_precision, 'torch_precision': other['torch_precision'],
          'pairing': same,
          'ratio': jax_row['images_per_s'] / other['images_per_s'],
      })
  return out


def _gb(x):
  return '-' if x is None else f'{x / 2**30:.2f}'


def format_table(results: list[dict], meta: dict, ratio_rows: list[dict]) -> str:
  lines = [
      f"LiVT train step: ViT-{meta['variant']}, {meta['image_size']}px, patch {meta['patch']}, "
      f"batch {meta['batch']}, {meta['precision']}, gelu {meta['gelu']}, decoder "
      f"{meta['decoder']}, on {meta['num_devices']} x {meta['device_kind']} "
      f"(jax {meta['jax']}, {meta['cpu_count']} CPUs)",
      f"load average before {meta['load_before']}, after {meta['load_after']}; median of "
      f"{meta['steps']} x {meta['repeats']} steps after {meta['warmup']} warm-up; 'others': the "
      "largest share of all CPUs that other processes used during a timed round; 'CPU s': "
      "this process's CPU seconds per step (above the step time = parallel, or spinning); "
      "torch.compile's 'compile s': its first step less one median step",
  ]
  head = (f"{'stage':5} {'row':36} {'img/s':>8} {'step ms':>8} {'min-max ms':>15} "
          f"{'CPU s':>6} {'compile s':>9} {'peak RSS GB':>11} {'(start)':>7} {'XLA tmp GB':>10} "
          f"{'GFLOP/step':>10} {'TFLOP/s':>8} {'MFU':>6} {'others':>6}")
  lines += [head, '-' * len(head)]
  for r in results:
    mfu = f"{100 * r['mfu']:.1f}%" if r.get('mfu') is not None else '-'
    load = r['others_cpu_share_max']
    others = '-' if load is None else f'{100 * load:.0f}%'
    flops = r['flops_per_step_per_device']
    lines.append(
        f"{r['stage']:5} {row_name(r):36} {r['images_per_s']:8.1f} {r['step_ms_median']:8.1f} "
        f"{r['step_ms_min']:7.1f}-{r['step_ms_max']:<7.1f} "
        f"{r['cpu_s_per_step_median']:6.2f} "
        f"{'-' if r['compile_s'] is None else format(r['compile_s'], '.1f'):>9} "
        f"{_gb(r['peak_rss_bytes']):>11} {_gb(r['rss_before_bytes']):>7} "
        f"{_gb(r['xla_temp_bytes']):>10} {'-' if not flops else format(flops / 1e9, '.1f'):>10} "
        f"{'-' if not r.get('tflops_per_s_per_device') else format(r['tflops_per_s_per_device'], '.3f'):>8} "
        f'{mfu:>6} {others:>6}')
  for x in ratio_rows:
    lines.append(f"{x['stage']:5} jax/{x['torch']}: {x['ratio']:.2f}x ({x['pairing']}: jax "
                 f"{x['jax_precision']} vs torch {pairing.DESCRIBE[x['torch_precision']]})")
  for r in results:
    lines.append(f"  {r['stage']} {row_name(r)}: {r['impl']}; final loss {r['final_loss']:.4f}"
                 + (f"; malloc {r['malloc']} (GLIBC_TUNABLES={r['glibc_tunables']!r})"
                    if 'malloc' in r else ''))
  return '\n'.join(lines)
