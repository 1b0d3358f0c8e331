"""`python -m livt_jax.benchmark` still works: the train-step benchmark moved to the repository's
benchmarks/ folder (`python -m benchmarks.step`), out of the installed package; the committed
results in benchmarks/results/ record this older command."""
import sys


def main():
  try:
    from benchmarks import step  # pylint: disable=g-import-not-at-top
  except ImportError:
    sys.exit('livt_jax.benchmark: the benchmarks live in the repository (benchmarks/step.py), not '
             'in the installed package: run `python -m benchmarks.step` from a clone of livt_jax.')
  step.main()


if __name__ == '__main__':
  main()
