"""Device prefetch keeps batches ahead of the step, and the saved data position is the
consumer's: resuming from it yields the batches an uninterrupted iterator would."""
import json

import numpy as np

from livt_jax.data import prefetch
from test_data_pipeline import train_iter


def test_prefetch_runs_ahead_and_saves_the_consumed_position():
  moved = []
  batches = prefetch.DevicePrefetch(train_iter(), lambda b: (moved.append(1), b)[1], size=2)
  straight = train_iter()
  for _ in range(3):
    np.testing.assert_array_equal(next(batches)['image'], next(straight)['image'])
  assert len(moved) == 5  # 3 consumed + 2 already on their way to the devices
  state = batches.get_state()
  assert json.loads(state) == straight.get_state()  # the consumer's position, not the reader's

  resumed = prefetch.DevicePrefetch(train_iter(), lambda b: b, size=2)
  resumed.set_state(state)
  resumed.start_prefetch()
  for _ in range(4):
    np.testing.assert_array_equal(next(resumed)['image'], next(straight)['image'])


def test_no_prefetch_is_the_plain_iterator():
  batches = prefetch.DevicePrefetch(train_iter(), lambda b: b, size=0)
  straight = train_iter()
  next(batches), next(straight)
  assert json.loads(batches.get_state()) == straight.get_state()
