"""Multi-process start-up: `jax.distributed.initialize` when the run spans several processes."""
import os

from absl import logging


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
