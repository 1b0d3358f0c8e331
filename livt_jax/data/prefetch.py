"""Device prefetch: the next global batches are on the devices before the step asks for them.

Transfers are asynchronous, so putting batch k+1 (and k+2) on the devices while step k runs
hides the host-to-device copy (flax's `prefetch_to_device`, big_vision's prefetch). The data
position saved with a checkpoint must be that of the batches the steps consumed, not of those
waiting here: `get_state` gives the iterator state right after the last consumed batch, so a
resumed run reads exactly the batches an uninterrupted one would.
"""
import collections
import json
from typing import Any, Callable, Iterator


class DevicePrefetch:
  """Iterates global (device) batches `size` ahead of the consumer; checkpointable by grain.

  grain's checkpoint handler calls `get_state()` (bytes) / `set_state(bytes)` /
  `start_prefetch()` on iterators that are not its own; the bytes are the JSON of the wrapped
  iterator's state, the same file content as saving that iterator directly.
  """

  def __init__(self, iterator, to_device: Callable[[Any], Any], size: int = 2):
    self._iterator = iterator
    self._to_device = to_device
    self._size = max(0, int(size))
    self._queue = collections.deque()  # (device batch, iterator state after it)
    self._consumed_state = iterator.get_state()

  def __iter__(self) -> Iterator[Any]:
    return self

  def _fetch(self):
    batch = self._to_device(next(self._iterator))
    self._queue.append((batch, self._iterator.get_state()))

  def __next__(self):
    if not self._queue:
      self._fetch()
    batch, self._consumed_state = self._queue.popleft()
    while len(self._queue) < self._size:  # start the next transfers before the step runs
      self._fetch()
    return batch

  def get_state(self) -> bytes:
    return json.dumps(self._consumed_state, indent=4).encode()

  def set_state(self, state: bytes):
    self._queue.clear()
    self._consumed_state = json.loads(state)
    self._iterator.set_state(self._consumed_state)

  def start_prefetch(self):
    start = getattr(self._iterator, 'start_prefetch', None)
    if start is not None:
      start()
