"""XLA flags a GPU run sets before JAX's backends start (and the GPU AOT plan compiles with).

  --xla_gpu_enable_latency_hiding_scheduler=true: schedules the data-parallel all-reduces and
      the FSDP all-gathers to overlap with compute instead of in the order written;
  --xla_gpu_enable_highest_priority_async_stream=true: runs those collectives on a
      high-priority stream so the overlap is not starved by the compute kernels.

The first is the one XLA flag NVIDIA's JAX-Toolbox containers set, and the example flag of JAX's
"GPU performance tips" page (docs.jax.dev/en/latest/gpu_performance_tips.html); the second is
set next to it by many public JAX GPU trainers. Neither has been measured here (no GPU): the
accelerator check (launch/accelerator_check.sh) runs with them. A flag the user already put in
XLA_FLAGS wins (its name is not added twice). Added only where the
CUDA plugin is installed and JAX_PLATFORMS allows a GPU: TPU and CPU runs have no use for them,
and XLA aborts on a flag its build does not know (checked: both are known to the 0.10.2 plugin).
"""
import importlib.util
import os

GPU_XLA_FLAGS = ('--xla_gpu_enable_latency_hiding_scheduler=true',
                 '--xla_gpu_enable_highest_priority_async_stream=true')


def add(environ=None) -> list[str]:
  """Appends the GPU flags missing from environ['XLA_FLAGS']; returns those it added."""
  environ = os.environ if environ is None else environ
  current = environ.get('XLA_FLAGS', '')
  added = [f for f in GPU_XLA_FLAGS if f.split('=')[0] not in current]
  if added:
    environ['XLA_FLAGS'] = ' '.join([current, *added]).strip()
  return added


def cuda_wanted(environ=None) -> bool:
  """True where this process would start JAX's CUDA backend: the plugin is importable and
  JAX_PLATFORMS is unset or names cuda/gpu."""
  environ = os.environ if environ is None else environ
  platforms = environ.get('JAX_PLATFORMS', '')
  if platforms and not any(p in platforms for p in ('cuda', 'gpu')):
    return False
  try:
    return importlib.util.find_spec('jax_plugins.xla_cuda12') is not None
  except (ImportError, ValueError):
    return False


def add_for_gpu_run(environ=None) -> list[str]:
  """`add` on a host that will run on its GPUs (called by livt_jax.main before jax starts)."""
  return add(environ) if cuda_wanted(environ) else []
