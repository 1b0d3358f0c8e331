"""Process start-up, before JAX's backends start: the CPU device count (`split_cpu_into_devices`)
and `jax.distributed.initialize` when the run spans several processes."""
import os

from absl import logging


def split_cpu_into_devices(count, name: str = 'config.cpu_devices'):
  """`count` > 0: JAX makes this many CPU devices (call before its backends start).

  On a CPU-only host the mesh then runs the step data parallel over them. An explicit device
  count (XLA_FLAGS' --xla_force_host_platform_device_count or JAX_NUM_CPU_DEVICES, as tests and
  simulations set) wins. GPU/TPU runs are unaffected (JAX's default backend is the accelerator).
  `name` is what the error message calls the setting.
  """
  if not isinstance(count, int) or count < 0:
    raise ValueError(f'{name}={count!r}: use 0 (JAX\'s default, one CPU device) '
                     'or the number of CPU devices to make, e.g. the number of cores')
  explicit = ('xla_force_host_platform_device_count' in os.environ.get('XLA_FLAGS', '')
              or os.environ.get('JAX_NUM_CPU_DEVICES'))
  if count and not explicit:
    import jax  # pylint: disable=g-import-not-at-top
    jax.config.update('jax_num_cpu_devices', count)


def is_multiprocess_env() -> bool:
  env = os.environ
  if env.get('LIVT_COORDINATOR_ADDRESS') or env.get('JAX_COORDINATOR_ADDRESS'):
    return True
  if int(env.get('SLURM_NTASKS', '1')) > 1:
    return True
  # Cloud TPU pods: more than one worker host.
  hosts = env.get('TPU_WORKER_HOSTNAMES', '')
  return len([h for h in hosts.split(',') if h]) > 1


def maybe_initialize():
  """Initializes JAX's distributed runtime when the environment says this is one of many."""
  if not is_multiprocess_env():
    return
  import jax  # pylint: disable=g-import-not-at-top
  if os.environ.get('JAX_PLATFORMS', '').startswith('cpu'):
    # CPU processes (tests, laptops) need an explicit cross-process collectives backend.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  # A process that dies (kill -9, a lost VM) is noticed by the others after this many seconds
  # without its heartbeat; they then exit instead of waiting in a collective forever.
  timeouts = dict(heartbeat_timeout_seconds=int(os.environ.get('LIVT_HEARTBEAT_TIMEOUT_S', 30)))
  address = os.environ.get('LIVT_COORDINATOR_ADDRESS')
  if address:
    jax.distributed.initialize(
        coordinator_address=address,
        num_processes=int(os.environ['LIVT_NUM_PROCESSES']),
        process_id=int(os.environ['LIVT_PROCESS_ID']), **timeouts)
  else:
    jax.distributed.initialize(**timeouts)  # auto-detects TPU pods and SLURM
  logging.info('process %d of %d, %d local / %d global devices', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
