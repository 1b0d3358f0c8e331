r"""The prepared accelerator check: measure a GPU / TPU host, the plan's prediction beside it.

    bash launch/accelerator_check.sh                      # on the accelerator host, < 8 minutes
    python -m benchmarks.accelerator_check --out=runs/accelerator_check.json [--tiny]

In order, each in its own process (this one never starts a JAX backend: it would hold the
accelerator's memory while the children need it):
  1. the devices (kind, count);
  2. the deviceless AOT plan of configs/imagenet_lt.py's MGP and BFT for the same device and
     count (`--aot`, compiled on the host's CPUs while step 3 runs on the accelerator), at the
     per-device batches below;
  3. `python -m benchmarks.step` of ViT-B/16 MGP and BFT at 224 px in bfloat16 (images/s,
     MFU, peak device memory), the step alone;
  4. a 200-step BFT run of `livt_jax.main` with configs/imagenet_lt.py's shapes (ViT-B/16,
     224 px, RandAugment as `auto` picks) on a generated image folder (random JPEGs, 10
     classes: `dataset.name=image_folder`), so the input pipeline is in the measurement;
and writes one JSON: every step's result, and per stage the measured images/s per device and
MFU beside the plan's images/s at its peak and at 50% MFU and its memory per device.

--tiny shrinks everything (a 'nano' ViT at 32 px, a few steps; the plan only when --plan names
a target) so that the whole path runs on a CPU in a test. Exit code: 0 when every step ran, 1
when one failed (its error is in the JSON).
"""
import argparse
import datetime
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = 'configs/imagenet_lt.py'
# The paper's global batches over 8 devices (MGP 4096, BFT 1024).
FULL = dict(variant='B', patch=16, image_size=224, mgp_per_device=512, bft_per_device=128,
            decoder=(8, 512, 16), bench_steps=10, run_steps=200, classes=10,
            images_per_class=64, jpeg_size=256)
TINY = dict(variant='nano', patch=8, image_size=32, mgp_per_device=8, bft_per_device=8,
            decoder=(1, 32, 2), bench_steps=2, run_steps=4, classes=4, images_per_class=8,
            jpeg_size=40)
# Device kind -> --aot target family (chips.py names -> topology names).
GPU_TARGETS = {'h100': 'h100', 'a100': 'a100-80g', 'b200': 'b200'}
TPU_DIMS = {2: {1: '1x1', 4: '2x2', 8: '2x4'}, 3: {4: '2x2x1', 8: '2x2x2'}}


def _child(args: list[str], timeout: float, env=None) -> dict:
  """Runs `python ARGS`; {'ok', 'seconds', 'tail'}."""
  t0 = time.perf_counter()
  try:
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout, env=env)
    text = proc.stdout + proc.stderr
    errors = [line for line in text.splitlines() if line.startswith('livt_jax: error')]
    ok, tail = proc.returncode == 0, '\n'.join(errors + [text[-2000:]])
  except subprocess.TimeoutExpired as e:
    ok, tail = False, f'timed out after {timeout:.0f} s: {str(e.stdout or "")[-1500:]}'
  return {'ok': ok, 'seconds': round(time.perf_counter() - t0, 1), 'tail': tail}


def devices(timeout: float) -> dict:
  code = ('import json, jax; d = jax.devices(); print("DEVICES " + json.dumps({"platform": '
          'd[0].platform, "kind": d[0].device_kind, "count": len(d)}))')
  out = _child(['-c', code], timeout)
  for line in out['tail'].splitlines():
    if line.startswith('DEVICES '):
      out.update(json.loads(line[len('DEVICES '):]))
  return out


def aot_target(kind: str, platform: str, count: int) -> str | None:
  """The --aot target of `count` devices of this kind, or None (CPU, an unknown chip)."""
  from livt_jax.runtime import chips  # pylint: disable=g-import-not-at-top
  chip = chips.for_device_kind(kind)
  if chip is None or platform == 'cpu':
    return None
  if platform == 'gpu' or chip.name in GPU_TARGETS:
    return f'{GPU_TARGETS[chip.name]}:{count}' if chip.name in GPU_TARGETS else None
  dims = TPU_DIMS[3 if chip.name in ('v4', 'v5p') else 2].get(count)
  return f'{chip.name}:{dims}' if dims else None


def model_overrides(s: dict, count: int) -> list[str]:
  return [f'--config.model.variant={s["variant"]}', f'--config.model.patch_size={s["patch"]}',
          f'--config.mgp.image_size={s["image_size"]}',
          f'--config.bft.image_size={s["image_size"]}',
          f'--config.mgp.batch_size={s["mgp_per_device"] * count}',
          f'--config.bft.batch_size={s["bft_per_device"] * count}',
          f'--config.model.decoder_depth={s["decoder"][0]}',
          f'--config.model.decoder_width={s["decoder"][1]}',
          f'--config.model.decoder_heads={s["decoder"][2]}']


def start_plan(target: str, s: dict, count: int, json_path: str):
  args = ['-m', 'livt_jax.main', f'--config={CONFIG}', f'--aot={target}',
          f'--aot_json={json_path}', '--config.stages=mgp,bft', '--config.bft.init_from=scratch',
          *model_overrides(s, count)]
  env = dict(os.environ, JAX_PLATFORMS='cpu')  # compiled on the host's CPUs, not the devices
  env.pop('XLA_FLAGS', None)
  return subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT), time.perf_counter()


def benchmark(stage: str, s: dict, count: int, precision: str, timeout: float) -> dict:
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'bench.json')
    out = _child(['-m', 'benchmarks.step', '--stages', stage, '--variant', s['variant'],
                  '--patch', str(s['patch']), '--image_size', str(s['image_size']),
                  '--batch', str(s[f'{stage}_per_device'] * count), '--precision', precision,
                  '--num_classes', '1000', '--decoder_depth', str(s['decoder'][0]),
                  '--decoder_width', str(s['decoder'][1]), '--decoder_heads', str(s['decoder'][2]),
                  '--steps', str(s['bench_steps']), '--warmup', '2',
                  '--json', path], timeout)
    if os.path.exists(path):
      with open(path) as f:
        result = json.load(f)['results'][0]
      out.update({k: result.get(k) for k in (
          'images_per_s', 'step_ms_median', 'compile_s', 'mfu', 'tflops_per_s_per_device',
          'device_peak_bytes', 'xla_temp_bytes', 'flops_per_step_per_device')})
      out['images_per_s_per_device'] = result['images_per_s'] / count
  return out


def make_folder(root: str, s: dict) -> str:
  """train/ (`classes` x `images_per_class`) and val/ (2 per class) of random RGB JPEGs."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  for split, per_class in (('train', s['images_per_class']), ('val', 2)):
    for c in range(s['classes']):
      d = os.path.join(root, split, f'class_{c:02d}')
      os.makedirs(d, exist_ok=True)
      for i in range(per_class):
        pixels = rng.integers(0, 256, (s['jpeg_size'], s['jpeg_size'], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(d, f'{i:03d}.jpg'), quality=90)
  return root


def _last_scalars(event_dir: str) -> dict:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  out = {}
  for name in sorted(glob.glob(os.path.join(event_dir, 'events*'))):
    for event in tf.compat.v1.train.summary_iterator(name):
      for v in event.summary.value:
        out.setdefault(v.tag, {})[event.step] = float(tf.make_ndarray(v.tensor))
  return {k: v[max(v)] for k, v in out.items()} | {'last_step': max(
      (max(v) for v in out.values()), default=0)}


def train_run(s: dict, count: int, work: str, timeout: float) -> dict:
  data = make_folder(os.path.join(work, 'images'), s)
  args = ['-m', 'livt_jax.main', f'--config={CONFIG}', f'--workdir={os.path.join(work, "run")}',
          '--config.dataset.name=image_folder', f'--config.dataset.data_dir={data}',
          '--config.stages=bft', '--config.bft.init_from=scratch',
          f'--config.max_steps={s["run_steps"]}', f'--config.log_every_steps={s["run_steps"] // 4}',
          '--config.checkpoint_every_steps=100000',
          '--config.evals.val.every_epochs=100000',  # val only once, at the end
          *model_overrides(s, count)]
  out = _child(args, timeout)
  scalars_dir = os.path.join(work, 'run', 'tensorboard', 'bft')
  if os.path.isdir(scalars_dir):
    last = _last_scalars(scalars_dir)
    out.update({'steps': int(last['last_step']), 'images_per_sec': last.get('images_per_sec'),
                'images_per_sec_per_device': last.get('images_per_sec_per_device'),
                'mfu': last.get('mfu'), 'loss': last.get('loss')})
  return out


def finish_plan(proc, t0: float, json_path: str, timeout: float) -> dict:
  try:
    tail = proc.communicate(timeout=max(timeout - (time.perf_counter() - t0), 1))[0][-2000:]
  except subprocess.TimeoutExpired:
    proc.kill()
    tail = 'timed out: ' + (proc.communicate()[0] or '')[-1500:]
  out = {'ok': proc.returncode in (0, 3), 'rc': proc.returncode,
         'seconds': round(time.perf_counter() - t0, 1), 'tail': tail}
  if os.path.exists(json_path):
    with open(json_path) as f:
      out['record'] = json.load(f)
  return out


def compare(result: dict) -> dict:
  """Per stage: measured (benchmark: the step alone; run: with the input pipeline) beside the
  plan's prediction for the same device."""
  record = (result.get('plan') or {}).get('record')
  out = {}
  for stage in ('mgp', 'bft'):
    bench = result['benchmark'].get(stage, {})
    row = {'benchmark_images_per_s_per_device': bench.get('images_per_s_per_device'),
           'benchmark_mfu': bench.get('mfu'),
           'benchmark_device_peak_bytes': bench.get('device_peak_bytes')}
    if stage == 'bft':
      row['run_images_per_s_per_device'] = result['run'].get('images_per_sec_per_device')
    if record and stage in record['stages'] and record['stages'][stage]['estimates']:
      p = record['stages'][stage]
      row.update(plan_images_per_s_per_device_peak=p['estimates']['images_per_sec_per_chip_peak'],
                 plan_images_per_s_per_device_at_50_mfu=p['estimates']['images_per_sec_per_chip'],
                 plan_total_bytes=p['total_bytes'], plan_flops_source=p['flops_source'])
      measured = row['benchmark_images_per_s_per_device']
      if measured:
        # MFU with the plan's FLOPs per image (the same count for plan and measurement).
        row['mfu_by_plan_flops'] = measured / p['estimates']['images_per_sec_per_chip_peak']
    out[stage] = row
  return out


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--out', default='runs/accelerator_check.json')
  p.add_argument('--tiny', action='store_true', help='a nano ViT at 32 px, a few steps (CPU)')
  p.add_argument('--plan', default=None,
                 help='the --aot target to plan for (default: the devices found; none on CPU)')
  p.add_argument('--precision', default='bfloat16')
  p.add_argument('--step_timeout_s', type=float, default=240.0)
  args = p.parse_args(argv)
  s = TINY if args.tiny else FULL
  t_start = time.perf_counter()
  from livt_jax.runtime import gpu_flags  # pylint: disable=g-import-not-at-top
  gpu_flags.add_for_gpu_run()  # the benchmark and the run inherit the flags livt_jax.main sets
  result = {'mode': 'tiny' if args.tiny else 'full', 'sizes': s, 'config': CONFIG,
            'precision': args.precision, 'xla_flags': os.environ.get('XLA_FLAGS', ''),
            'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}
  info = devices(args.step_timeout_s)
  result['devices'] = info
  count = info.get('count', 1)
  target = args.plan or aot_target(info.get('kind', ''), info.get('platform', 'cpu'), count)
  result['plan_target'] = target
  with tempfile.TemporaryDirectory() as work:
    plan_json = os.path.join(work, 'plan.json')
    plan = start_plan(target, s, count, plan_json) if target else None
    result['benchmark'] = {stage: benchmark(stage, s, count, args.precision,
                                            args.step_timeout_s) for stage in ('mgp', 'bft')}
    result['run'] = train_run(s, count, work, args.step_timeout_s)
    result['plan'] = (finish_plan(*plan, plan_json, 2 * args.step_timeout_s) if plan
                      else {'ok': True, 'skipped': 'no --aot target for these devices'})
  result['comparison'] = compare(result)
  result['seconds'] = round(time.perf_counter() - t_start, 1)
  steps = [info, *result['benchmark'].values(), result['run'], result['plan']]
  result['ok'] = all(x.get('ok') for x in steps)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump(result, f, indent=1, sort_keys=True)
    f.write('\n')
  print(json.dumps(result['comparison'], indent=1))
  print(f'accelerator check: {"ok" if result["ok"] else "a step failed"} in '
        f'{result["seconds"]:.0f} s; written to {args.out}')
  return 0 if result['ok'] else 1


if __name__ == '__main__':
  sys.exit(main())
