"""Worker processes (dataset.workers) change nothing in the data: the same global batches, bit
for bit, for 0, 1 and 2 workers and any thread count, and the iterator state resumes exactly."""
import numpy as np

from livt_jax.data import pipeline
from test_data_pipeline import INFO, IndexSource, stage_config


def _iterator(workers, threads=2):
  return pipeline.train_iterator(
      IndexSource(), stage='bft', stage_config=stage_config('bft'), dataset_info=INFO,
      global_batch_size=16, seed=0, read_threads=threads, workers=workers)


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def _assert_same(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert set(x) == set(y)
    for key in x:
      np.testing.assert_array_equal(x[key], y[key])


def test_same_batches_for_any_worker_and_thread_count_and_exact_resume():
  steps = 2 * pipeline.steps_per_epoch(len(IndexSource()), 16) + 1  # crosses epochs
  reference = _take(_iterator(0, threads=1), steps)
  for workers, threads in ((1, 2), (2, 1)):
    iterator = _iterator(workers, threads)
    first = _take(iterator, 5)
    state = iterator.get_state()
    rest = _take(iterator, steps - 5)
    _assert_same(first + rest, reference)
    resumed = _iterator(workers, threads)
    resumed.set_state(state)
    _assert_same(_take(resumed, steps - 5), reference[5:])
    for it in (iterator, resumed):
      it.close()
