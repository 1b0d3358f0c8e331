r"""LiVT entry point.

  python -m livt_jax.main --config=configs/fashion_mnist_lt.py --workdir=runs/fmnist
  python -m livt_jax.main --config=configs/inat18.py --dry_run
  python -m livt_jax.main --config=configs/inat18.py --aot=v5p:2x2x2   # plan a TPU run (aot/)
  python -m livt_jax.main --config=configs/inat18.py --aot=h100:8      # plan a GPU node's run
  python -m livt_jax.main --config=configs/places_lt.py --config.bft.tau=1.05 --workdir=...

Any config field can be overridden with --config.FIELD=VALUE (ml_collections config_flags).

Exit codes: 0 done; 2 a configuration, data or checkpoint error, or NaN/inf in training (one
line says what to do; --traceback shows where); 75 stopped by
SIGTERM/SIGINT after saving a checkpoint (rerun the same command to resume); 1 anything else.
"""
import logging as std_logging
from logging import handlers as std_log_handlers
import os
import sys
import tempfile

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from livt_jax import config_args
from livt_jax.runtime import distributed
from livt_jax.runtime import host_malloc
from livt_jax.runtime import supervise

flags.DEFINE_string('workdir', None, 'Where checkpoints, logs and the report go.')
flags.DEFINE_bool('dry_run', False, 'Validate and resolve the config, print it, and exit.')
flags.DEFINE_string('aot', None, 'Plan a TPU or GPU run from this host: compile the train steps '
                    'for a TPU topology (e.g. v5e:4x4, v5p:2x2x2) or GPU nodes (h100:8, '
                    'a100-80g:2x8, b200:8) and print memory per device, FLOPs, time per epoch '
                    'and collectives (livt_jax/aot/; needs requirements-tpu-aot.txt installed '
                    'into .libtpu, or requirements-gpu-aot.txt into .cuda-aot).')
flags.DEFINE_string('aot_json', None, 'With --aot: also write the plan as JSON to this path '
                    '(results, estimates, command, git commit, versions; benchmarks/aot_table.py '
                    'renders such files).')
flags.DEFINE_bool('traceback', False, 'Show the full traceback for configuration/data errors.')
flags.DEFINE_bool('verbose', False, 'Show library INFO logs (orbax, absl, jax) on the console '
                  'too; by default they only go to the log file in WORKDIR/logs.')
config_flags.DEFINE_config_file('config', None, 'A config file under configs/.', lock_config=True)
FLAGS = flags.FLAGS


def _quiet_console():
  """Library INFO logs stop reaching the console; they are held until the log file opens."""
  if FLAGS.verbose:
    return None
  console = logging.get_absl_handler()
  console.setLevel(std_logging.WARNING)
  # Library records that carry a traceback (e.g. asyncio's "Task exception was never
  # retrieved" after a failed checkpoint read) stay out of the console; the file keeps them.
  console.addFilter(lambda r: not r.exc_info and r.name != 'asyncio')
  held = std_log_handlers.MemoryHandler(capacity=100_000, flushLevel=std_logging.CRITICAL + 1)
  held.setLevel(std_logging.INFO)
  std_logging.getLogger().addHandler(held)
  return held


def _route_logs(held, workdir: str | None, process_index: int):
  """Library INFO logs go to a log file, the console keeps warnings and our own lines."""
  if held is None:
    return None
  std_logging.getLogger().removeHandler(held)
  if workdir is None:
    held.close()
    return None
  from livt_jax.runtime import paths  # pylint: disable=g-import-not-at-top
  if workdir and not paths.is_uri(workdir):
    log_dir = os.path.join(os.path.abspath(workdir), 'logs')
  else:  # a gs:// workdir: Python's file logging needs a local file
    log_dir = os.path.join(tempfile.gettempdir(), 'livt_jax_logs')
  os.makedirs(log_dir, exist_ok=True)
  path = os.path.join(log_dir, f'livt_jax.{process_index}.log')
  handler = std_logging.FileHandler(path)
  handler.setLevel(std_logging.INFO)
  handler.setFormatter(std_logging.Formatter(
      '%(asctime)s %(levelname)s %(name)s %(filename)s:%(lineno)d] %(message)s'))
  std_logging.getLogger().addHandler(handler)
  held.setTarget(handler)
  held.close()  # flushes what was held into the file
  return path


def _clear_errors() -> tuple[type, ...]:
  """Errors whose message says what to do: one line, no traceback. Looked up lazily, so a
  config error does not wait for TensorFlow (clu) and orbax to import."""
  types = [ValueError, FileNotFoundError]
  for module, name in (('livt_jax.engine.checkpointing', 'CheckpointSaveError'),
                       ('livt_jax.engine.train', 'NonFiniteError')):
    if module in sys.modules:
      types.append(getattr(sys.modules[module], name))
  return tuple(types)


def _config_arg_error(error: BaseException):
  """The ConfigArgError behind a flag error (config_flags re-raises it with the traceback as
  text; the original, with the plain message, is the deepest in the chain), or None."""
  found, seen = None, set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, config_args.ConfigArgError):
      found = error
    error = error.__cause__ or error.__context__
  return found


def _parse_flags(argv):
  """absl's flag parsing, but a bad `--config=FILE.py:ARG` is one line and exit code 2."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    arg_error = _config_arg_error(e)
    if arg_error is None:
      return app.parse_flags_with_usage(argv)  # absl's own message and exit code
    print(f'livt_jax: error: {arg_error}', file=sys.stderr)
    sys.exit(2)


def _main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if FLAGS.aot:  # before jax starts: the AOT plan sets up libtpu and the host platform itself
    from livt_jax import aot  # pylint: disable=g-import-not-at-top
    return aot.main(FLAGS.config, FLAGS.aot, traceback=FLAGS.traceback, json_path=FLAGS.aot_json)
  if FLAGS.aot_json:
    print('livt_jax: error: --aot_json needs --aot=TOPOLOGY (e.g. --aot=h100:8)', file=sys.stderr)
    return 2
  held = _quiet_console()
  from livt_jax.runtime import gpu_flags  # pylint: disable=g-import-not-at-top
  gpu_flags.add_for_gpu_run()  # before jax starts: XLA reads XLA_FLAGS once
  # Imports after flag parsing: jax must see the distributed/platform settings first.
  try:
    distributed.split_cpu_into_devices(FLAGS.config.get('cpu_devices', 0))
  except ValueError as e:
    print(f'livt_jax: error: {e}', file=sys.stderr)
    return 2
  distributed.maybe_initialize()
  import jax  # pylint: disable=g-import-not-at-top
  from livt_jax import plan  # pylint: disable=g-import-not-at-top
  from livt_jax.runtime import preemption  # pylint: disable=g-import-not-at-top
  from livt_jax import validate  # pylint: disable=g-import-not-at-top
  log_file = _route_logs(held, None if FLAGS.dry_run else FLAGS.workdir, jax.process_index())

  config = FLAGS.config
  if host_malloc.is_tuned():
    logging.info('CPU run: glibc malloc tunables set (%s); LIVT_MALLOC_TUNING=0 turns this off',
                 host_malloc.TUNABLES)
  try:
    # gs:// paths first, bounded: TensorFlow would retry an unreachable bucket for minutes.
    from livt_jax.runtime import storage_probe  # pylint: disable=g-import-not-at-top
    storage_probe.check_config(config, None if FLAGS.dry_run else FLAGS.workdir)
    validate.validate(config, jax.device_count(), check_data=not FLAGS.dry_run)
    if FLAGS.dry_run:
      print(plan.describe(config, jax.device_count()))
      print('dry run: the config is valid; nothing was trained.')
      return 0
    if not FLAGS.workdir:
      raise validate.ConfigError('--workdir is required to train (or pass --dry_run)')
    from livt_jax.engine import run  # pylint: disable=g-import-not-at-top
    if log_file and jax.process_index() == 0:
      print(f'livt_jax: library logs in {log_file} (--verbose shows them here)', flush=True)
    run.run(config, FLAGS.workdir)
  except preemption.Preempted as e:
    if jax.process_index() == 0:
      print(f'livt_jax: {e}', flush=True)
    return preemption.EXIT_PREEMPTED
  except Exception as e:  # pylint: disable=broad-except
    if not isinstance(e, _clear_errors()) or FLAGS.traceback:
      raise
    logging.debug('error', exc_info=True)
    print(f'livt_jax: error: {e}', file=sys.stderr, flush=True)
    if 'livt_jax.runtime.storage_probe' in sys.modules:
      sys.modules['livt_jax.runtime.storage_probe'].exit_now_if_abandoned(2)
    return 2
  return 0


def _main_then_wait(argv):
  try:
    return _main(argv)
  finally:  # no import may still run at interpreter shutdown (run.wait_for_background_imports)
    if 'livt_jax.engine.run' in sys.modules:
      sys.modules['livt_jax.engine.run'].wait_for_background_imports()


def main():
  # Multi-process runs: a parent reports a crash caused by another process in one line.
  supervise.run_supervised_if_multiprocess(distributed.is_multiprocess_env())
  host_malloc.reexec_if_useful()  # CPU-only hosts: faster XLA steps (see host_malloc)
  if '--verbose' not in sys.argv:
    # TensorFlow (TensorBoard writing, TFDS only: it computes nothing here) prints C++ INFO
    # lines at import, one of them about its oneDNN kernels.
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
  flags.mark_flag_as_required('config')
  app.run(lambda argv: sys.exit(_main_then_wait(argv)), flags_parser=_parse_flags)


if __name__ == '__main__':
  main()
