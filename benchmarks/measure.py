"""Measuring a train step: step times, process CPU time, other processes' CPU load, peak RSS.

`Runner` is one (stage, framework) pair ready to time; `jax_runner` and `torch_runner` build them.
"""
import dataclasses
import os
import resource
import time
from typing import Any, Callable

# Memory: the process's peak RSS per phase. Linux lets a process reset its own high-water mark
# (VmHWM) by writing 5 to /proc/self/clear_refs; elsewhere fall back to ru_maxrss (a peak since
# the process started, so later phases then include earlier ones).


def _status_kb(field: str) -> int | None:
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith(field + ':'):
          return int(line.split()[1])
  except OSError:
    pass
  return None


def reset_peak_rss() -> bool:
  try:
    with open('/proc/self/clear_refs', 'w') as f:
      f.write('5')
    return True
  except OSError:
    return False


def current_rss_bytes() -> int | None:
  kb = _status_kb('VmRSS')
  return None if kb is None else kb * 1024


def peak_rss_bytes() -> int:
  kb = _status_kb('VmHWM')
  if kb is None:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux
  return kb * 1024


def usable_cpus() -> int:
  """CPUs this process may run on (respects taskset / cgroup affinity, unlike os.cpu_count)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def timed_steps(run_one: Callable[[], Any], n: int) -> list[tuple[float, float]]:
  """(wall seconds, process CPU seconds) of n steps, one pair per step."""
  times = []
  for _ in range(n):
    t0, c0 = time.perf_counter(), time.process_time()
    run_one()
    times.append((time.perf_counter() - t0, time.process_time() - c0))
  return times


def _cpu_sample() -> tuple[float, float, float] | None:
  """(busy seconds of all CPUs, CPU seconds of this process, wall time), or None off Linux."""
  try:
    with open('/proc/stat') as f:
      fields = [int(x) for x in f.readline().split()[1:]]
    with open('/proc/self/stat') as f:
      mine = f.read().rsplit(')', 1)[1].split()
  except OSError:
    return None
  tick = os.sysconf('SC_CLK_TCK')
  idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
  busy = (sum(fields[:8]) - idle) / tick
  return busy, (int(mine[11]) + int(mine[12])) / tick, time.perf_counter()


def others_load(before, after) -> float | None:
  """Share of all CPUs that *other* processes kept busy between two `_cpu_sample`s."""
  if before is None or after is None or after[2] <= before[2]:
    return None
  other = (after[0] - before[0]) - (after[1] - before[1])
  return max(0.0, other / ((after[2] - before[2]) * (os.cpu_count() or 1)))


@dataclasses.dataclass
class Runner:
  """One (stage, framework) pair, ready to time: `run(n)` returns n step times in seconds."""
  stage: str
  framework: str
  run: Callable[[int], list[float]]
  compile_s: float | None = None
  peak_rss: int | None = None
  rss_before: int | None = None
  device_peak: int | None = None
  xla_temp: int | None = None
  flops: float | None = None
  bytes_accessed: float | None = None  # XLA's cost analysis, one step
  loss: Callable[[], float] | None = None
  impl: str = ''
  first_step_s: float | None = None  # wall time of the first call (torch.compile compiles then)
  times: list = dataclasses.field(default_factory=list)      # wall seconds per step
  cpu_times: list = dataclasses.field(default_factory=list)  # process CPU seconds per step
  others: list = dataclasses.field(default_factory=list)  # other processes' CPU share per round

  def timed_round(self, n: int):
    before = _cpu_sample()
    for wall, cpu in self.run(n):
      self.times.append(wall)
      self.cpu_times.append(cpu)
    load = others_load(before, _cpu_sample())
    if load is not None:
      self.others.append(load)

