"""Input pipelines side by side, one run: ours (grain) vs a torch DataLoader (torchvision + timm).

  .venv-bench/bin/python -m benchmarks.loaders [--workers=1,2 --batch_size=128 \
      --num_batches=8 --images=2048 --long_side=500 --image_size=224]

Both read the same generated folder of photo-like JPEGs (ImageNet's sizes and file sizes) and
make the training batches of MGP (RandomResizedCrop + flip) and BFT (+ RandAugment
rand-m9-mstd0.5-inc1, random erasing 0.25), S x S, with the same number of worker processes.
Rows:
  livt_jax      our pipeline: uint8 out, per-image erasing box + seed (normalise and erase run
                on the accelerator); one reader thread per worker.
  livt_jax_ra_device  BFT only: the same with bft.randaug_on='device', the host only draws
                RandAugment's ops (applied in the train step: see the same-work table).
  torch_uint8   DataLoader, torchvision RandomResizedCrop/flip + timm RandAugment, PILToTensor:
                the same uint8 output (erasing cannot run on uint8: left out, as in ours).
  torch_float   the same + ToTensor, Normalize and timm RandomErasing (pixel mode): float32
                out, the transform MAE/LiVT's code runs on the host.
img/s is wall-clock; img/CPU-s counts the CPU seconds of the main process and its workers in
the timed window (the rate per core, mostly immune to other processes' load, which is
printed). The torch side needs the benchmark venv (requirements-benchmark.txt); without torch
only the livt_jax rows run.

Same work: our rows leave normalising, erasing (and, for livt_jax_ra_device, RandAugment) to
the train step. The second table pairs each of our rows with the torch row that does the same
work per image, after adding to ours the per-image cost of what it moved, timed in the step's
own jitted function (`step_costs`): livt_jax vs torch_uint8 as they are; livt_jax + normalise
/ erase vs torch_float; livt_jax_ra_device + RandAugment (+ normalise / erase) vs torch_uint8
(torch_float). Every ratio printed is computed here. `--json` writes the rows, the step costs,
the host and the command (benchmarks/results/loader/ holds the committed ones).
"""
import dataclasses
import functools
import json
import os
import shutil
import tempfile
import time
from typing import Callable, Iterator, Optional

from absl import app
from absl import flags

from benchmarks import hostinfo
from benchmarks import jpegs
from benchmarks import measure

_WORKERS = flags.DEFINE_list('workers', ['1', '2'], 'Worker process counts to measure.')
_BATCH = flags.DEFINE_integer('batch_size', 128, 'Images per batch.')
_BATCHES = flags.DEFINE_integer('num_batches', 8, 'Timed batches per row.')
_IMAGES = flags.DEFINE_integer('images', 2048, 'JPEGs in the folder (>= warm-up + timed).')
_LONG = flags.DEFINE_integer('long_side', 500, 'Long side of the JPEGs (ImageNet 500).')
_SIZE = flags.DEFINE_integer('image_size', 224, 'Output side S.')
_STAGES = flags.DEFINE_list('stages', ['mgp', 'bft'], 'Augmentations to measure.')
_RA_DEVICE = flags.DEFINE_bool('ra_device', True, "Also time BFT with RandAugment on the "
                                'device (the livt_jax_ra_device row).')
_JSON = flags.DEFINE_string('json', None, 'Also write the results here.')
_REPEATS = flags.DEFINE_integer('repeats', 2, 'Rounds over all rows (interleaved); the best '
                                'img/s and img/CPU-s of each row are kept.')

PIPELINES = ('livt_jax', 'livt_jax_ra_device', 'torch_uint8', 'torch_float')


@dataclasses.dataclass
class Result:
  pipeline: str
  stage: str
  workers: int
  images_per_s: float
  images_per_cpu_s: Optional[float]
  others_load: Optional[float]  # share of all CPUs other processes used meanwhile


def write_folder(root: str, num_images: int, long_side: int, unique: int = 96,
                 num_classes: int = 10) -> None:
  """root/train/<class>/*.jpg: `unique` generated JPEGs, copied up to num_images files.

  Copies keep the set-up short (generating a photo-like JPEG takes ~50 ms); decoding a copy
  costs what decoding the original does.
  """
  paths = jpegs.write_jpeg_folder(root, min(unique, num_images), num_classes,
                                           long_side=long_side)
  for i in range(len(paths), num_images):
    target = os.path.join(root, 'train', f'class_{i % num_classes:02d}', f'{i:05d}.jpg')
    shutil.copyfile(paths[i % len(paths)], target)


def cpu_seconds() -> Optional[float]:
  """User + system CPU seconds of this process and its live descendants (None without psutil)."""
  try:
    import psutil  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  me = psutil.Process()
  total = 0.0
  for proc in [me] + me.children(recursive=True):
    try:
      times = proc.cpu_times()
    except psutil.Error:  # a worker that just exited
      continue
    total += times.user + times.system
  return total


def _system_busy() -> Optional[float]:
  sample = measure._cpu_sample()  # pylint: disable=protected-access
  return None if sample is None else sample[0]


def time_batches(batches: Iterator, batch_size: int, warmup: int, timed: int) -> tuple:
  """(images/s, images per CPU second or None, other processes' CPU share or None)."""
  for _ in range(warmup):
    next(batches)
  busy0, cpu0, t0 = _system_busy(), cpu_seconds(), time.perf_counter()
  for _ in range(timed):
    next(batches)
  wall = time.perf_counter() - t0
  busy1, cpu1 = _system_busy(), cpu_seconds()
  images = timed * batch_size
  per_cpu = None if cpu0 is None or cpu1 <= cpu0 else images / (cpu1 - cpu0)
  others = None
  if busy0 is not None and cpu0 is not None:
    others = max(0.0, ((busy1 - busy0) - (cpu1 - cpu0)) / (wall * (os.cpu_count() or 1)))
  return images / wall, per_cpu, others


def livt_batches(root: str, stage: str, image_size: int, batch_size: int, workers: int,
                 randaug_on: str = 'host') -> tuple[Iterator, Callable[[], None]]:
  """Our training iterator over root's image folder, and a function that stops it.

  `randaug_on` is bft.randaug_on; 'host' by default, so the row means the same on any machine.
  """
  from livt_jax import config_defaults  # pylint: disable=g-import-not-at-top
  from livt_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from livt_jax.data import sources  # pylint: disable=g-import-not-at-top
  config = config_defaults.get_base_config()
  config.dataset.name = 'image_folder'
  config.dataset.data_dir = root
  source = sources.load_source(config.dataset, 'train')
  stage_config = config[stage]
  stage_config.image_size = image_size
  config.bft.randaug_on = randaug_on
  # One reader thread per worker process, as a torch DataLoader worker runs one transform at
  # a time; workers=0 would decode in this process's thread.
  it = pipeline.train_iterator(source, stage=stage, stage_config=stage_config,
                               dataset_info=source.info, global_batch_size=batch_size,
                               seed=0, read_threads=1, prefetch_buffer=2, workers=workers)
  return it, it.close


def format_table(results: list[Result]) -> str:
  """Markdown: one row per (pipeline, stage), columns per worker count, and the 1 -> 2 scaling.
  The rows do different work: ratios between them are in `format_same_work`."""
  workers = sorted({r.workers for r in results})
  by_key = {(r.pipeline, r.stage, r.workers): r for r in results}
  head = ['stage', 'pipeline'] + [f'{w}w img/s (img/CPU-s)' for w in workers]
  if 1 in workers and 2 in workers:
    head.append('1->2 w wall (CPU-normalised)')
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for stage in dict.fromkeys(r.stage for r in results):
    for name in PIPELINES:
      row = [by_key.get((name, stage, w)) for w in workers]
      if not any(row):
        continue
      cells = [stage, name]
      for r in row:
        per_cpu = '-' if r is None or r.images_per_cpu_s is None else f'{r.images_per_cpu_s:.0f}'
        cells.append('-' if r is None else f'{r.images_per_s:.0f} ({per_cpu})')
      if 1 in workers and 2 in workers:
        one, two = by_key.get((name, stage, 1)), by_key.get((name, stage, 2))
        cells.append(_scaling(one, two))
      lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def _scaling(one: Optional[Result], two: Optional[Result]) -> str:
  """Wall-clock 2-worker / 1-worker rate, and 2 x the per-CPU-second ratio: the speed-up two
  idle cores would give (other processes' load distorts the first, hardly the second)."""
  if not one or not two:
    return '-'
  text = f'{two.images_per_s / one.images_per_s:.2f}x'
  if one.images_per_cpu_s and two.images_per_cpu_s:
    text += f' ({2 * two.images_per_cpu_s / one.images_per_cpu_s:.2f}x)'
  return text


def best_of(results: list[Result]) -> list[Result]:
  """One Result per (pipeline, stage, workers): the best img/s and img/CPU-s of its rounds."""
  best = {}
  for r in results:
    key = (r.pipeline, r.stage, r.workers)
    b = best.setdefault(key, dataclasses.replace(r))
    b.images_per_s = max(b.images_per_s, r.images_per_s)
    if r.images_per_cpu_s is not None:
      b.images_per_cpu_s = max(b.images_per_cpu_s or 0.0, r.images_per_cpu_s)
    if r.others_load is not None:
      b.others_load = min(b.others_load if b.others_load is not None else 1.0, r.others_load)
  return list(best.values())


# (ours, the parts of the step's preprocessing to add to it, the torch row doing that work)
SAME_WORK = (
    ('livt_jax', (), 'torch_uint8'),
    ('livt_jax', ('normalise_erase',), 'torch_float'),
    ('livt_jax_ra_device', ('randaugment',), 'torch_uint8'),
    ('livt_jax_ra_device', ('randaugment', 'normalise_erase'), 'torch_float'),
)
MOVED_NAMES = {'normalise_erase': 'normalise/erase', 'randaugment': 'RandAugment'}


def same_work(results: list[Result], costs: dict) -> list[dict]:
  """Our rows with the per-image step costs of what they moved added, against the torch row
  that does the same per image; costs: {stage: `step_costs.moved_costs` output}."""
  from benchmarks import step_costs  # pylint: disable=g-import-not-at-top
  by_key = {(r.pipeline, r.stage, r.workers): r for r in results}
  out = []
  for stage in dict.fromkeys(r.stage for r in results):
    for ours_name, moved, theirs_name in SAME_WORK:
      for w in sorted({r.workers for r in results}):
        ours, theirs = by_key.get((ours_name, stage, w)), by_key.get((theirs_name, stage, w))
        if not ours or not theirs or any(m not in costs.get(stage, {}) for m in moved):
          continue
        wall = sum(costs[stage][m]['wall_s_per_image'] for m in moved)
        cpu = sum(costs[stage][m]['cpu_s_per_image'] for m in moved)
        rate = step_costs.with_added(ours.images_per_s, wall)
        per_cpu = step_costs.with_added(ours.images_per_cpu_s, cpu)
        out.append({
            'stage': stage, 'workers': w, 'ours': ours_name,
            'added': [MOVED_NAMES[m] for m in moved], 'torch': theirs_name,
            'ours_images_per_s': rate, 'ours_images_per_cpu_s': per_cpu,
            'torch_images_per_s': theirs.images_per_s,
            'torch_images_per_cpu_s': theirs.images_per_cpu_s,
            'ratio_wall': rate / theirs.images_per_s,
            'ratio_per_cpu_s': (per_cpu / theirs.images_per_cpu_s
                                if per_cpu and theirs.images_per_cpu_s else None),
        })
  return out


def same_work_label(row: dict) -> str:
  return row['ours'] + ''.join(f' + {a} in step' for a in row['added'])


def format_same_work(rows: list[dict]) -> str:
  """Markdown: each same-work pair, img/s (img/CPU-s) of both and the two ratios."""
  lines = ['| stage | workers | ours (+ step costs of what it moved) | vs | ours img/s (img/CPU-s) '
           '| theirs img/s (img/CPU-s) | ours / theirs wall | per CPU-s |', '|' + '---|' * 8]
  for r in rows:
    def cell(rate, per_cpu):
      return f"{rate:.0f} ({'-' if per_cpu is None else format(per_cpu, '.0f')})"
    per_cpu_ratio = '-' if r['ratio_per_cpu_s'] is None else f"{r['ratio_per_cpu_s']:.2f}x"
    lines.append(
        f"| {r['stage']} | {r['workers']} | {same_work_label(r)} | {r['torch']} | "
        f"{cell(r['ours_images_per_s'], r['ours_images_per_cpu_s'])} | "
        f"{cell(r['torch_images_per_s'], r['torch_images_per_cpu_s'])} | "
        f"{r['ratio_wall']:.2f}x | {per_cpu_ratio} |")
  return '\n'.join(lines)


def measure_step_costs(root: str, stages: list[str], image_size: int, batch: int) -> dict:
  """{stage: step_costs.moved_costs} on one batch of ours (BFT with RandAugment draws)."""
  from benchmarks import step_costs  # pylint: disable=g-import-not-at-top
  costs = {}
  for stage in stages:
    batches, stop = livt_batches(root, stage, image_size, batch, workers=0,
                                 randaug_on='device' if stage == 'bft' else 'host')
    host = next(batches)
    stop()
    costs[stage] = step_costs.moved_costs(host)
  return costs


def main(argv):
  del argv
  try:
    from benchmarks import loaders_torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    loaders_torch = None
    print(f'torch rows skipped: {e} (use the benchmark venv, requirements-benchmark.txt)')
  workers = [int(w) for w in _WORKERS.value]
  batch, timed = _BATCH.value, _BATCHES.value
  needed = (2 + 2 * max(workers) + timed) * batch  # warm-up + timed within one torch epoch
  if _IMAGES.value < needed:
    raise app.UsageError(f'--images={_IMAGES.value} is less than the {needed} images the '
                         'warm-up and timed batches take from one epoch: raise it')
  results = []
  load_before = hostinfo.load()
  with tempfile.TemporaryDirectory() as root:
    write_folder(root, _IMAGES.value, _LONG.value)
    print(f'{_IMAGES.value} JPEGs, long side {_LONG.value}, output {_SIZE.value} px, batch '
          f'{batch}, {timed} timed batches; usable CPUs {measure.usable_cpus()}, load average '
          f'{os.getloadavg()[0]:.2f} at start')
    makers = {'livt_jax': livt_batches}
    if _RA_DEVICE.value:
      makers['livt_jax_ra_device'] = functools.partial(livt_batches, randaug_on='device')
    if loaders_torch is not None:
      makers['torch_uint8'] = functools.partial(loaders_torch.torch_batches, uint8=True)
      makers['torch_float'] = functools.partial(loaders_torch.torch_batches, uint8=False)
    for round_index in range(_REPEATS.value):
      for stage in _STAGES.value:
        for w in workers:
          for name, make in makers.items():
            if name == 'livt_jax_ra_device' and stage != 'bft':
              continue  # only BFT has RandAugment
            batches, close = make(root, stage, _SIZE.value, batch, w)
            rate, per_cpu, others = time_batches(batches, batch, warmup=2 + 2 * w, timed=timed)
            close()
            results.append(Result(name, stage, w, rate, per_cpu, others))
            load = '-' if others is None else f'{others:.0%}'
            print(f'  round {round_index + 1} {stage} {name:18s} workers={w}: {rate:6.0f} img/s, '
                  f'{per_cpu or float("nan"):6.0f} img/CPU-s (others kept {load} of the CPUs '
                  'busy)', flush=True)
    costs = measure_step_costs(root, _STAGES.value, _SIZE.value, batch)
  best = best_of(results)
  pairs = same_work(best, costs)
  print(f'best of {_REPEATS.value} rounds; load average {os.getloadavg()[0]:.2f} at the end')
  print(format_table(best))
  for stage, c in costs.items():
    print(f'{stage}: moved to the step, per image on {c["device"]} (batch {c["batch"]}): '
          + ', '.join(f'{MOVED_NAMES[m]} {1e3 * c[m]["wall_s_per_image"]:.2f} ms wall / '
                      f'{1e3 * c[m]["cpu_s_per_image"]:.2f} ms CPU'
                      for m in MOVED_NAMES if m in c))
  print(format_same_work(pairs))
  if _JSON.value:
    settings = {'workers': workers, 'batch_size': batch, 'num_batches': timed,
                'images': _IMAGES.value, 'long_side': _LONG.value, 'image_size': _SIZE.value,
                'stages': list(_STAGES.value), 'repeats': _REPEATS.value}
    record = hostinfo.record('loader', load_before, {
        'settings': settings, 'rounds': [dataclasses.asdict(r) for r in results],
        'results': [dataclasses.asdict(r) for r in best], 'step_costs': costs,
        'same_work': pairs})
    # The committed results' folder may not exist yet (a first result, a fresh checkout).
    os.makedirs(os.path.dirname(_JSON.value) or '.', exist_ok=True)
    with open(_JSON.value, 'w') as f:
      json.dump(record, f, indent=2)


if __name__ == '__main__':
  app.run(main)
