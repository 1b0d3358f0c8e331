"""The JAX side: the project's own train step, built, compiled and warmed up for timing."""
import gc
import os
import time

import jax

from livt_jax.runtime import chips
from livt_jax.engine import sharding
from livt_jax.engine import steps
from livt_jax.engine import train
from benchmarks import measure
from benchmarks import workload


def _xla_temp_bytes(compiled) -> int | None:
  try:
    m = compiled.memory_analysis()
    return int(m.temp_size_in_bytes)
  except Exception:  # pylint: disable=broad-except
    return None


def _xla_bytes_accessed(compiled) -> float | None:
  """Bytes XLA's cost analysis counts as read and written by one step (all its ops)."""
  cost = chips.compiled_cost(compiled)
  return float(cost['bytes accessed']) if cost and 'bytes accessed' in cost else None


def build_jax_runner(stage_name: str, args, mesh) -> measure.Runner:
  """Builds, compiles and warms up the engine's train step for one stage."""
  config = workload.make_config(args)
  counts = workload.long_tail_counts(args.num_classes)
  num_train = max(sum(counts), args.batch)
  gc.collect()
  rss_before = measure.current_rss_bytes()
  measure.reset_peak_rss()
  stage = train.build_stage(config, stage_name, mesh, num_train=num_train,
                            image_channels=args.channels, num_classes=args.num_classes)
  if args.gelu == 'tanh':
    # Same parameters, only the activation's formula differs: a speed experiment, not a default.
    stage.model = stage.model.clone(gelu_approximate=True)
  if stage_name == 'mgp':
    loss_fn = steps.mgp_loss_fn(stage.model)
  else:
    loss_fn = steps.bft_loss_fn(stage.model, config, counts)
  state = stage.init_state(jax.random.key(0), None)
  step = train.compile_step(stage, loss_fn, mesh, config)
  batch = sharding.global_batch(workload.synthetic_batch(args), mesh)

  # Compile explicitly (the same executable the engine's first call would build) so the
  # compile time is measured apart from the first step, and the FLOP count can be read.
  t0 = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0

  holder = {'state': state, 'metrics': None}

  def run_one():
    holder['state'], holder['metrics'] = compiled(holder['state'], batch)
    holder['metrics']['loss'].block_until_ready()

  def run(n):
    return measure.timed_steps(run_one, n)

  run(args.warmup)
  runner = measure.Runner(stage_name, 'jax', run, compile_s=compile_s, rss_before=rss_before,
                          xla_temp=_xla_temp_bytes(compiled),
                          flops=chips.compiled_flops(compiled),
                          bytes_accessed=_xla_bytes_accessed(compiled),
                          loss=lambda: float(holder['metrics']['loss']),
                          impl=f'livt_jax ({config.precision}, gelu {args.gelu})')
  # The warm-up steps ran the same executable: the peak is reached already.
  runner.peak_rss = measure.peak_rss_bytes()
  if args.profile_dir:
    with jax.profiler.trace(os.path.join(args.profile_dir, stage_name)):
      run(min(args.steps, 5))
  stats = getattr(jax.local_devices()[0], 'memory_stats', lambda: None)()
  if stats and 'peak_bytes_in_use' in stats:
    runner.device_peak = int(stats['peak_bytes_in_use'])
  return runner
