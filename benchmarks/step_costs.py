"""What our pipeline moves into the train step, timed per image, for the loader benchmark.

Our loader hands the step uint8 images; the step (`data.device_augment.preprocess`, jitted in
the train step) then normalises, erases (BFT) and, with `bft.randaug_on='device'`, runs
RandAugment. A torch DataLoader row that does those on the host is only the same work as ours
once their cost in the step is added: `moved_costs` times that very function, jitted, on a
batch our pipeline made, on this process's first JAX device (the CPU here; an accelerator where
JAX has one), and returns seconds per image:

  normalise_erase  preprocess on the batch without RandAugment draws
  randaugment      preprocess with the draws less the above (RandAugment alone)

Wall seconds are the device's time; CPU seconds are this process's (on a CPU device that is
the work itself; on an accelerator, only the host's share).
"""
import functools
import statistics
import time

import jax
import numpy as np

from livt_jax.data import device_augment
from livt_jax.data import registry


def _time_call(fn, batch, repeats: int) -> tuple[float, float]:
  """Median (wall, process CPU) seconds of fn(batch) after one compiling call."""
  jax.block_until_ready(fn(batch))
  walls, cpus = [], []
  for _ in range(repeats):
    t0, c0 = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn(batch))
    walls.append(time.perf_counter() - t0)
    cpus.append(time.process_time() - c0)
  return statistics.median(walls), statistics.median(cpus)


def moved_costs(batch: dict, repeats: int = 5, dataset: str = 'image_folder') -> dict:
  """{'normalise_erase': {...}, 'randaugment': {...}, 'device': kind, 'batch': B}; each part
  {'wall_s_per_image', 'cpu_s_per_image'}. `batch` is a host batch of our pipeline; with a
  'randaug' entry RandAugment is timed too."""
  info = registry.get_info(dataset)
  fn = jax.jit(functools.partial(device_augment.preprocess, mean=info.mean, std=info.std))
  device = jax.devices()[0]
  on_device = {k: jax.device_put(np.asarray(v), device) for k, v in batch.items()}
  size = int(on_device['image'].shape[0])
  plain = {k: v for k, v in on_device.items() if k != 'randaug'}
  wall, cpu = _time_call(fn, plain, repeats)
  out = {'device': device.device_kind, 'batch': size, 'repeats': repeats,
         'normalise_erase': {'wall_s_per_image': wall / size, 'cpu_s_per_image': cpu / size}}
  if 'randaug' in on_device:
    wall_ra, cpu_ra = _time_call(fn, on_device, repeats)
    out['randaugment'] = {'wall_s_per_image': max(wall_ra - wall, 0.0) / size,
                          'cpu_s_per_image': max(cpu_ra - cpu, 0.0) / size}
  return out


def with_added(images_per_s: float | None, seconds_per_image: float) -> float | None:
  """A rate with `seconds_per_image` more work per image: 1 / (1 / rate + s)."""
  if not images_per_s:
    return None
  return 1.0 / (1.0 / images_per_s + seconds_per_image)
