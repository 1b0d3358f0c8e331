r"""LiVT entry point.

  python -m livt_jax.main --config=configs/fashion_mnist_lt.py --workdir=runs/fmnist
  python -m livt_jax.main --config=configs/inat18.py --dry_run
  python -m livt_jax.main --config=configs/places_lt.py --config.bft.tau=1.05 --workdir=...

Any config field can be overridden with --config.FIELD=VALUE (ml_collections config_flags).
"""
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from livt_jax import host_malloc

flags.DEFINE_string('workdir', None, 'Where checkpoints, logs and the report go.')
flags.DEFINE_bool('dry_run', False, 'Validate and resolve the config, print it, and exit.')
flags.DEFINE_bool('traceback', False, 'Show the full traceback for configuration/data errors.')
config_flags.DEFINE_config_file('config', None, 'A config file under configs/.', lock_config=True)
FLAGS = flags.FLAGS


def _main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  # Imports after flag parsing: jax must see the distributed/platform settings first.
  from livt_jax import distributed  # pylint: disable=g-import-not-at-top
  distributed.maybe_initialize()
  import jax  # pylint: disable=g-import-not-at-top
  from livt_jax import plan  # pylint: disable=g-import-not-at-top
  from livt_jax import validate  # pylint: disable=g-import-not-at-top

  config = FLAGS.config
  if host_malloc.is_tuned():
    logging.info('CPU run: glibc malloc tunables set (%s); LIVT_MALLOC_TUNING=0 turns this off',
                 host_malloc.TUNABLES)
  try:
    validate.validate(config, jax.device_count(), check_data=not FLAGS.dry_run)
    if FLAGS.dry_run:
      print(plan.describe(config, jax.device_count()))
      print('dry run: the config is valid; nothing was trained.')
      return 0
    if not FLAGS.workdir:
      raise validate.ConfigError('--workdir is required to train (or pass --dry_run)')
    from livt_jax import run  # pylint: disable=g-import-not-at-top
    run.run(config, FLAGS.workdir)
  except (ValueError, FileNotFoundError) as e:
    if FLAGS.traceback:
      raise
    logging.debug('error', exc_info=True)
    print(f'livt_jax: error: {e}', file=sys.stderr)
    return 2
  return 0


def main():
  host_malloc.reexec_if_useful()  # CPU-only hosts: faster XLA steps (see host_malloc)
  flags.mark_flag_as_required('config')
  app.run(lambda argv: sys.exit(_main(argv)))


if __name__ == '__main__':
  main()
