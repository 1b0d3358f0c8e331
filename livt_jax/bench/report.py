"""The benchmark's report: per-runner summary (images/s, memory, FLOPs, MFU) and the table."""
import statistics

from livt_jax import chips
from livt_jax.bench import measure


def peak_tflops_for(device_kind: str) -> float | None:
  """Peak dense bf16 TFLOP/s of one chip of this `device.device_kind`, from the one table in
  livt_jax/chips.py (TPU v4/v5e/v5p/v6e, A100/H100/H200); None where unknown (CPU)."""
  chip = chips.for_device_kind(device_kind)
  return chip.peak_tflops if chip else None


def summarise(r: measure.Runner, args, peak_tflops: float | None) -> dict:
  med = statistics.median(r.times)
  out = {
      'stage': r.stage, 'framework': r.framework, 'impl': r.impl,
      'images_per_s': args.batch / med, 'step_ms_median': 1e3 * med,
      'step_ms_min': 1e3 * min(r.times), 'step_ms_max': 1e3 * max(r.times),
      'cpu_s_per_step_median': statistics.median(r.cpu_times),
      'num_steps_timed': len(r.times), 'compile_s': r.compile_s,
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


def _gb(x):
  return '-' if x is None else f'{x / 2**30:.2f}'


def format_table(results: list[dict], meta: dict) -> str:
  lines = [
      f"LiVT train step: ViT-{meta['variant']}, {meta['image_size']}px, patch {meta['patch']}, "
      f"batch {meta['batch']}, {meta['precision']}, gelu {meta['gelu']}, decoder "
      f"{meta['decoder']}, on {meta['num_devices']} x {meta['device_kind']} "
      f"(jax {meta['jax']}, {meta['cpu_count']} CPUs)",
      f"load average before {meta['load_before']}, after {meta['load_after']}; median of "
      f"{meta['steps']} x {meta['repeats']} steps after {meta['warmup']} warm-up; 'others': the "
      "largest share of all CPUs that other processes used during a timed round; 'CPU s': "
      "this process's CPU seconds per step (above the step time = parallel, or spinning)",
  ]
  head = (f"{'stage':5} {'framework':9} {'img/s':>8} {'step ms':>8} {'min-max ms':>15} "
          f"{'CPU s':>6} {'compile s':>9} {'peak RSS GB':>11} {'(start)':>7} {'XLA tmp GB':>10} "
          f"{'GFLOP/step':>10} {'TFLOP/s':>8} {'MFU':>6} {'others':>6}")
  lines += [head, '-' * len(head)]
  by_stage = {}
  for r in results:
    by_stage.setdefault(r['stage'], {})[r['framework']] = r
    mfu = f"{100 * r['mfu']:.1f}%" if r.get('mfu') is not None else '-'
    load = r['others_cpu_share_max']
    others = '-' if load is None else f'{100 * load:.0f}%'
    flops = r['flops_per_step_per_device']
    lines.append(
        f"{r['stage']:5} {r['framework']:9} {r['images_per_s']:8.1f} {r['step_ms_median']:8.1f} "
        f"{r['step_ms_min']:7.1f}-{r['step_ms_max']:<7.1f} "
        f"{r['cpu_s_per_step_median']:6.2f} "
        f"{'-' if r['compile_s'] is None else format(r['compile_s'], '.1f'):>9} "
        f"{_gb(r['peak_rss_bytes']):>11} {_gb(r['rss_before_bytes']):>7} "
        f"{_gb(r['xla_temp_bytes']):>10} {'-' if not flops else format(flops / 1e9, '.1f'):>10} "
        f"{'-' if not r.get('tflops_per_s_per_device') else format(r['tflops_per_s_per_device'], '.3f'):>8} "
        f'{mfu:>6} {others:>6}')
  for stage, fw in by_stage.items():
    if 'jax' in fw and 'torch' in fw:
      ratio = fw['jax']['images_per_s'] / fw['torch']['images_per_s']
      lines.append(f'{stage:5} jax/torch {ratio:8.2f}x')
  for r in results:
    lines.append(f"  {r['stage']} {r['framework']}: {r['impl']}; final loss {r['final_loss']:.4f}")
  return '\n'.join(lines)
