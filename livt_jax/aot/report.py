"""The plan's printed lines: memory per device against the usable memory, FLOPs per image,
images/s and time at the peak bf16 rate and at PLAN_MFU, collectives."""
from livt_jax.runtime import chips
from livt_jax.aot.compiling import HEADROOM
from livt_jax.aot.compiling import StageResult

PLAN_MFU = 0.5        # the utilisation the time estimates assume


def gib(n: float) -> str:
  """Bytes in GiB, or MiB / KiB where GiB would round to nothing."""
  if n >= 0.1 * chips.GIB or n == 0:
    return f'{n / chips.GIB:.2f} GiB'
  if n >= 2 ** 20:
    return f'{n / 2 ** 20:.1f} MiB'
  return f'{n / 2 ** 10:.1f} KiB'


def _flop(n: float) -> str:
  if n >= 1e12:
    return f'{n / 1e12:.2f} TFLOP'
  return f'{n / 1e9:.1f} GFLOP' if n >= 1e9 else f'{n / 1e6:.2f} MFLOP'


def _duration(seconds: float) -> str:
  if seconds < 1e-3:
    return f'{seconds * 1e6:.1f} us'
  if seconds < 1:
    return f'{seconds * 1e3:.1f} ms'
  if seconds < 120:
    return f'{seconds:.1f} s'
  if seconds < 7200:
    return f'{seconds / 60:.1f} min'
  if seconds < 2 * 86400:
    return f'{seconds / 3600:.1f} h'
  return f'{seconds / 86400:.1f} days'


def device_time(days: float, word: str = 'chip') -> str:
  return f'{days * 24:.3g} {word}-hours ({days:.2g} {word}-days)'


def fit_phrase(r: StageResult) -> str:
  if r.error is not None:
    return f'does not fit: XLA says "{r.error}"'
  share = r.total_bytes / r.hbm_bytes
  verdict = 'fits' if r.fits else f'does not fit (limit {HEADROOM:.0%})'
  return f'{gib(r.total_bytes)} of {gib(r.hbm_bytes)} per {r.device_word} ({share:.0%}): {verdict}'


def estimates(r: StageResult, chip: chips.Chip) -> dict:
  """Throughput and time at the chip's (GPU's) peak and at PLAN_MFU, from the step's FLOPs
  (`flops_source`); the keys say chip for either."""
  step_s_peak = r.flops_per_step / chip.peak_flops
  step_s = step_s_peak / PLAN_MFU
  stage_s = r.total_steps * step_s
  return {
      'images_per_sec_per_chip_peak': r.global_batch / r.num_chips / step_s_peak,
      'images_per_sec_per_chip': r.global_batch / r.num_chips / step_s,
      'step_s': step_s, 'epoch_s': r.steps_per_epoch * step_s, 'stage_s': stage_s,
      'chip_days': stage_s * r.num_chips / 86400,
  }


def _flops_line(r: StageResult) -> str:
  if r.flops_source == 'analytic':
    return (f'  FLOPs per image: {_flop(r.flops_per_image)} (the analytic matmul count: the CUDA '
            f'compiler gives no cost analysis; remat\'s recomputation, elementwise ops not '
            f'counted; {_flop(r.flops_per_step)} per GPU per step)')
  return (f'  FLOPs per image: {_flop(r.flops_per_image)} (XLA; {_flop(r.flops_per_step)} per '
          f'{r.device_word} per step), analytic matmul count {_flop(r.analytic_flops_per_image)} '
          f'(XLA / analytic = {r.flops_per_image / r.analytic_flops_per_image:.2f})')


def report_lines(r: StageResult, chip: chips.Chip) -> list[str]:
  w = r.device_word
  lines = [f'  compiled in {r.compile_s:.1f} s; global batch {r.global_batch} '
           f'({r.global_batch // r.num_chips}/{w}, micro-batch {r.micro_batch_per_chip}/{w}), '
           f'{r.steps_per_epoch} steps/epoch x {r.epochs:g} epochs = {r.total_steps} steps']
  memory = (f'  memory per {w}: parameters {gib(r.params_bytes)} + optimizer state '
            f'{gib(r.opt_bytes)} + batch {gib(r.batch_bytes)}')
  if r.error is not None:
    return lines + [memory + '; ' + fit_phrase(r)]
  e = estimates(r, chip)
  lines += [
      memory + f' (arguments {gib(r.argument_bytes)}) + temporaries {gib(r.temp_bytes)} + '
      f'outputs {gib(r.output_bytes)} + code {gib(r.code_bytes)} = {fit_phrase(r)}',
      _flops_line(r),
      f'  images/s per {w}: {e["images_per_sec_per_chip_peak"]:,.0f} at peak bf16 '
      f'({chip.peak_tflops:g} TFLOP/s), {e["images_per_sec_per_chip"]:,.0f} at '
      f'{PLAN_MFU:.0%} MFU',
      f'  at {PLAN_MFU:.0%} MFU: {_duration(e["step_s"])}/step, {_duration(e["epoch_s"])}/epoch, '
      f'{_duration(e["stage_s"])} for the stage = {device_time(e["chip_days"], w)}',
      f'  collectives per step (per {w}, as written in the HLO): ' + (', '.join(
          f'{kind} x{count} ({gib(size)})'
          for kind, (count, size) in sorted(r.collectives.items())) or 'none'),
  ]
  return lines


def override_line(overrides: dict) -> str:
  return ' '.join(f'--config.{k}={v}' for k, v in overrides.items())
