"""grain pipelines: endless augmented training batches and padded, exact-once eval batches.

Determinism: which record sits at which position of which global batch depends only on
(seed, epoch); each record's augmentation generator only on (seed, stage, epoch, record).
Threads, prefetching and the process count therefore change nothing in the data: the
global batch b is the same set of records in the same order for any process count, with
process p holding rows [p * local, (p + 1) * local) of it (the layout
`jax.make_array_from_process_local_data` assembles).
"""
import functools
import sys
import threading
from typing import Iterator

import grain
import numpy as np

from livt_jax.data import augment
from livt_jax.data import registry

STAGES = ('mgp', 'bft')
RANDAUG_ON = ('host', 'device', 'auto')
_STAGE_IDS = {'mgp': 1, 'bft': 2}
_PERMUTATION = 0  # Stream tags, so permutation and augmentation seeds never collide.
_AUGMENT = 1


def steps_per_epoch(num_train: int, global_batch: int) -> int:
  """Full global batches per epoch (the remainder is dropped, a new one each epoch)."""
  return num_train // global_batch


def num_eval_batches(n: int, global_batch: int) -> int:
  """Global batches that cover n records once (the last one padded)."""
  return -(-n // global_batch)


def _local_batch(global_batch: int, process_count: int) -> int:
  if global_batch <= 0 or global_batch % process_count:
    raise ValueError(f'global batch size {global_batch} must be a positive multiple of the '
                     f'process count {process_count}')
  return global_batch // process_count


def _read_options(read_threads: int, prefetch: int) -> grain.ReadOptions:
  threads = max(1, read_threads or 1)
  # One prefetch slot per thread at least, or threads would idle.
  return grain.ReadOptions(num_threads=threads,
                           prefetch_buffer_size=max(threads, prefetch or 1))


class _TrainBatches:
  """Random access: this process's k-th local batch -> (epoch, record indices [local]).

  Each epoch is a seeded permutation of all records; its first steps * global_batch
  positions form the epoch's batches, and process p reads the rows [p * L, (p + 1) * L) of
  each global batch. Endless: the length is sys.maxsize. One element per batch, not per
  record: grain's per-element bookkeeping costs as much as a small image's augmentation.
  """

  def __init__(self, num_records: int, global_batch: int, local_batch: int,
               process_index: int, seed: int):
    self._n = num_records
    self._global = global_batch
    self._local = local_batch
    self._offset = process_index * local_batch
    self._seed = seed
    self._per_epoch = steps_per_epoch(num_records, global_batch)
    self._cache = {}
    self._lock = threading.Lock()

  def __len__(self) -> int:
    return sys.maxsize

  def __getstate__(self):
    # Picklable for grain worker processes: the lock and cache are rebuilt there.
    state = dict(self.__dict__, _cache={})
    del state['_lock']
    return state

  def __setstate__(self, state):
    self.__dict__.update(state, _lock=threading.Lock())

  def permutation(self, epoch: int) -> np.ndarray:
    with self._lock:
      perm = self._cache.get(epoch)
      if perm is None:
        rng = np.random.default_rng([self._seed, _PERMUTATION, epoch])
        perm = rng.permutation(self._n)
        # Keep only the current and the next epoch: threads straddle at most one boundary.
        self._cache = {e: p for e, p in self._cache.items() if e >= epoch - 1}
        self._cache[epoch] = perm
      return perm

  def __getitem__(self, k: int) -> tuple[int, np.ndarray]:
    # Epochs hold a whole number of batches, so a batch never straddles two epochs.
    epoch, batch = divmod(int(k), self._per_epoch)
    start = batch * self._global + self._offset
    return epoch, self.permutation(epoch)[start:start + self._local]


class RecordGenerators:
  """Each record's augmentation generator, a function of (seed, stage, epoch, record) only.

  Philox is counter-based: re-keying one generator per record costs ~2 us where a new
  `np.random.default_rng` costs ~23 us, two thirds of the host time of a record (~35 us) in
  the embedded default's fine-tuning. Key: (a hash of seed, stream tag and stage;
  epoch << 32 | record).
  Not thread-safe: each batch makes its own.
  """

  def __init__(self, seed: int, stage_id: int):
    self._stream = np.random.SeedSequence([seed, _AUGMENT, stage_id]).generate_state(
        1, np.uint64)[0]
    self._bits = np.random.Philox(key=0)
    self._state = self._bits.state
    self._generator = np.random.Generator(self._bits)

  def __call__(self, epoch: int, index: int) -> np.random.Generator:
    if not (0 <= epoch < 2**32 and 0 <= index < 2**32):
      raise ValueError(f'epoch {epoch} and record {index} must lie in [0, 2**32)')
    state = self._state
    state['state']['counter'][:] = 0
    state['state']['key'][:] = (self._stream, (epoch << 32) | index)
    state['buffer_pos'], state['has_uint32'], state['uinteger'] = 4, 0, 0  # nothing buffered
    self._bits.state = state
    return self._generator


def _train_example(epoch_and_index, *, source, rngs: RecordGenerators, cfg):
  epoch, index = epoch_and_index
  rng = rngs(epoch, index)
  # Image files stay encoded until the crop is drawn, so JPEGs decode at reduced scale.
  read = getattr(source, 'record_for_crop', None)
  record = read(index) if read is not None else source[index]
  example = {'image': augment.train_transform(record['image'], rng, cfg),
             'label': np.int32(record['label'])}
  if cfg.randaug_on_device and cfg.randaug_num_ops > 0:
    example['randaug'] = augment.randaug_params(rng, cfg)
  if cfg.random_erase_prob > 0:
    example['erase_box'], example['erase_seed'] = augment.erase_box(
        cfg.image_size, rng, cfg.random_erase_prob)
  return example


def _train_batch(epoch_and_indices, *, seed, stage_id, **kwargs):
  """A local batch of one epoch's records: `_train_example` of each, stacked."""
  epoch, indices = epoch_and_indices
  rngs = RecordGenerators(seed, stage_id)
  examples = [_train_example((epoch, int(index)), rngs=rngs, **kwargs) for index in indices]
  return {key: np.stack([example[key] for example in examples]) for key in examples[0]}


def randaug_on_device(stage_config, platform: str | None = None) -> bool:
  """`bft.randaug_on`: 'device', 'host', or 'auto' = the device on GPU / TPU, the host on CPU.

  `platform` is where the step will run (e.g. 'tpu' for the AOT plan); default: the default
  backend of this process. A stage config without the field keeps RandAugment on the host.
  """
  where = stage_config.get('randaug_on', 'host')
  if where not in RANDAUG_ON:
    raise ValueError(f'randaug_on={where!r}: use one of {", ".join(RANDAUG_ON)}')
  if where == 'auto':
    import jax  # pylint: disable=g-import-not-at-top
    return (platform or jax.default_backend()) != 'cpu'
  return where == 'device'


def train_augment_config(stage: str, stage_config,
                         dataset_info: registry.DatasetInfo) -> augment.TrainAugment:
  """The host augmentation of a stage: MGP crops and flips; BFT adds RandAugment + erasing
  (or, RandAugment on the device, its draws: `randaug_on_device`)."""
  if stage not in STAGES:
    raise ValueError(f'stage={stage!r} is not one of {", ".join(STAGES)}')
  common = dict(image_size=int(stage_config.image_size), mean=tuple(dataset_info.mean),
                std=tuple(dataset_info.std), crop_scale_min=float(stage_config.crop_scale_min))
  if stage == 'mgp':
    return augment.TrainAugment(**common)
  return augment.TrainAugment(
      **common,
      randaug_num_ops=int(stage_config.randaug_num_ops),
      randaug_magnitude=float(stage_config.randaug_magnitude),
      randaug_magnitude_std=float(stage_config.randaug_magnitude_std),
      randaug_on_device=randaug_on_device(stage_config),
      random_erase_prob=float(stage_config.random_erase_prob))


def abstract_train_batch(source, *, stage: str, stage_config,
                         dataset_info: registry.DatasetInfo, global_batch_size: int, seed: int,
                         sharding=None) -> dict:
  """The global batch `train_iterator` sends, as jax.ShapeDtypeStructs with `sharding`: made
  from the source's first record by the pipeline's own host transform, so the keys, dtypes and
  shapes are what training sends. The step can be compiled for it before any batch is read (the
  training loop compiles it while the state is initialised; the AOT plan, with no data)."""
  import jax  # pylint: disable=g-import-not-at-top
  example = _train_example(
      (0, 0), source=source, rngs=RecordGenerators(seed, _STAGE_IDS[stage]),
      cfg=train_augment_config(stage, stage_config, dataset_info))
  return {k: jax.ShapeDtypeStruct((global_batch_size, *np.shape(v)), np.asarray(v).dtype,
                                  sharding=sharding) for k, v in example.items()}


def train_iterator(source, *, stage: str, stage_config, dataset_info: registry.DatasetInfo,
                   global_batch_size: int, seed: int, process_index: int = 0,
                   process_count: int = 1, read_threads: int = 2,
                   prefetch_buffer: int = 2, workers: int = 0) -> grain.DatasetIterator:
  """Endless training batches for this process.

  Args:
    source: a random-access source of {'image': uint8 [H, W, C], 'label': int}.
    stage: 'mgp' or 'bft' (selects the augmentation).
    stage_config: config.mgp or config.bft.
    dataset_info: for the normalization statistics.
    global_batch_size: examples per step over all processes.
    seed: run seed; epoch order and augmentations derive from it.
    process_index: this process (jax.process_index()).
    process_count: jax.process_count().
    read_threads: grain reader threads (config.dataset.read_threads).
    prefetch_buffer: batches read ahead (config.dataset.prefetch_buffer).
    workers: worker processes for decoding and augmentation (config.dataset.workers); 0 keeps
      it in this process's threads. Worker w makes global batches w, w + workers, ... and
      they are read round-robin, so the batches are the same for any count.

  Returns:
    A grain DatasetIterator (get_state / set_state for checkpointing) of
    {'image': uint8 [local, S, S, C], 'label': int32 [local]}, plus 'erase_box' int32
    [local, 4] and 'erase_seed' uint32 [local] when BFT erases, and 'randaug' float32
    [local, num_ops, 3] when BFT's RandAugment runs on the device (`device_augment.preprocess`
    turns this into the model's input inside the jitted step).
  """
  local = _local_batch(global_batch_size, process_count)
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index {process_index} not in [0, {process_count})')
  if steps_per_epoch(len(source), global_batch_size) < 1:
    raise ValueError(f'{len(source)} training records are fewer than one global batch '
                     f'({global_batch_size})')
  cfg = train_augment_config(stage, stage_config, dataset_info)
  batches = _TrainBatches(len(source), global_batch_size, local, process_index, seed)
  ds = grain.MapDataset.source(batches).map(functools.partial(
      _train_batch, source=source, seed=seed, stage_id=_STAGE_IDS[stage], cfg=cfg))
  ds = ds.to_iter_dataset(_read_options(read_threads, prefetch_buffer))
  if workers > 0:
    _absl_flags_parsed()  # grain's workers read absl flags
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=int(workers)))
  return iter(ds)


def _absl_flags_parsed():
  """grain's worker processes read absl flags; outside `app.run` (tests, notebooks) nothing
  parsed them, and the defaults are what we want."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


class _EvalOrder:
  """This process's k-th eval slot -> record index, or -1 for padding."""

  def __init__(self, num_records: int, global_batch: int, local_batch: int,
               process_index: int):
    self._n = num_records
    self._global = global_batch
    self._local = local_batch
    self._offset = process_index * local_batch
    self._len = num_eval_batches(num_records, global_batch) * local_batch

  def __len__(self) -> int:
    return self._len

  def __getitem__(self, k: int) -> int:
    batch, row = divmod(int(k), self._local)
    position = batch * self._global + self._offset + row
    return position if position < self._n else -1


def _eval_example(index, *, source, image_size, native_size, pad_shape):
  if index < 0:
    return {'image': np.zeros(pad_shape, np.uint8), 'label': np.int32(0),
            'mask': np.float32(0)}
  record = source[index]
  image = augment.eval_transform(record['image'], image_size, native_size)
  return {'image': image, 'label': np.int32(record['label']), 'mask': np.float32(1)}


class EvalBatches:
  """Re-iterable eval batches with a known length (same on every process)."""

  def __init__(self, dataset, num_batches: int):
    self._dataset = dataset
    self._num_batches = num_batches

  def __len__(self) -> int:
    return self._num_batches

  def __iter__(self) -> Iterator[dict]:
    return iter(self._dataset)


def eval_batches(source, *, dataset_info: registry.DatasetInfo, image_size: int,
                 global_batch_size: int, process_index: int = 0, process_count: int = 1,
                 read_threads: int = 2, prefetch_buffer: int = 2) -> EvalBatches:
  """Every record of `source` exactly once, in order, in padded global batches.

  Returns:
    An iterable of {'image': uint8 [local, S, S, C], 'label': int32 [local],
    'mask': float32 [local]} (mask 0 on padding rows), `num_eval_batches(len(source),
    global_batch_size)` batches on every process.
  """
  local = _local_batch(global_batch_size, process_count)
  order = _EvalOrder(len(source), global_batch_size, local, process_index)
  shape = dataset_info.image_shape
  native = max(shape[:2]) if shape is not None else None
  pad_shape = (image_size, image_size, dataset_info.num_channels)
  ds = grain.MapDataset.source(order).map(functools.partial(
      _eval_example, source=source, image_size=image_size, native_size=native,
      pad_shape=pad_shape))
  ds = ds.batch(local, drop_remainder=False)
  ds = ds.to_iter_dataset(_read_options(read_threads, prefetch_buffer))
  return EvalBatches(ds, num_eval_batches(len(source), global_batch_size))
