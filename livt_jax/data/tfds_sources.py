"""Opening TFDS array_record datasets offline, and reading their labels without decoding images.

Random access (grain) needs `tfds.data_source`, i.e. array_record files; we never download
(`download=False` semantics: an absent dataset is an error naming the directory).
"""
import hashlib
import logging
import os
from typing import Optional, Sequence

import io

import numpy as np

from livt_jax.runtime import paths

_SCAN_CHUNK = 1024


def cache_dir() -> str:
  """Where label / file-name scans of large datasets are cached (env LIVT_CACHE_DIR).

  May be a URI (gs://...), like the data dir.
  """
  return os.environ.get('LIVT_CACHE_DIR') or os.path.join(
      os.path.expanduser('~'), '.cache', 'livt_jax')


def describe(data_source, tfds_name: str) -> str:
  """'TFDS <name> in <dir>', for messages."""
  return f'TFDS {tfds_name} in {os.fspath(data_source.dataset_info.data_dir)}'


def _builder(dataset: str, tfds_name: str, data_dir: Optional[str]):
  """A prepared TFDS builder, or FileNotFoundError naming the dataset, the dir, the fix."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  # Imported here: TFDS (and the TensorFlow it may pull in) costs seconds, and the
  # Fashion-MNIST and image-folder paths never need it.
  try:
    builder = tfds.builder(tfds_name, data_dir=data_dir)
  except Exception as e:  # pylint: disable=broad-except
    # tfds raises many types here (DatasetNotFoundError, registry errors, ...).
    raise FileNotFoundError(
        f'{dataset}: cannot open TFDS {tfds_name!r} in {data_dir or "the default TFDS dir"} '
        f'({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""})') from e
  if not builder.is_prepared():
    raise FileNotFoundError(
        f'{dataset}: TFDS {tfds_name!r} is not prepared in {builder.data_dir} (no '
        'dataset_info.json); prepare it elsewhere with `tfds build '
        f'{tfds_name} --file_format=array_record` and set dataset.data_dir to its data dir')
  file_format = str(getattr(builder.info.file_format, 'value', builder.info.file_format))
  if 'array_record' not in file_format:
    raise ValueError(
        f'{dataset}: TFDS {tfds_name!r} in {builder.data_dir} is stored as {file_format}; '
        'random access needs array_record: rebuild with `tfds build '
        f'{tfds_name} --file_format=array_record`')
  return builder


def open_split(dataset: str, tfds_name: str, split: str, data_dir: Optional[str],
               skip_image_decoding: bool = False):
  """`builder.as_data_source(split)` (what `tfds.data_source(download=False)` does)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = _builder(dataset, tfds_name, data_dir)
  if split not in builder.info.splits:
    raise ValueError(f'{dataset}: TFDS {tfds_name!r} has no split {split!r} (has '
                     f'{", ".join(builder.info.splits)})')
  decoders = {'image': tfds.decode.SkipDecoding()} if skip_image_decoding else None
  return builder.as_data_source(split=split, decoders=decoders)


def label_names(data_source) -> list[str]:
  return list(data_source.dataset_info.features['label'].names)


def scan_fields(dataset: str, tfds_name: str, split: str, data_dir: Optional[str],
                fields: Sequence[str]) -> dict[str, np.ndarray]:
  """Reads small fields (label, file name) of every record of a split, cached on disk.

  Images are not decoded, but the records are still read; on ImageNet-scale data that is
  minutes, so the result is cached under `cache_dir()` keyed by the data location.
  """
  ds = open_split(dataset, tfds_name, split, data_dir, skip_image_decoding=True)
  # A local data dir is made absolute; a gs://... one must stay as it is.
  location = paths.absolute(os.fspath(ds.dataset_info.data_dir))
  key = hashlib.sha1(f'{location}|{split}|{len(ds)}|{",".join(fields)}'.encode()).hexdigest()
  path = paths.as_path(paths.join(cache_dir(), tfds_name, f'{split}-{key[:16]}.npz'))
  try:
    cached_bytes = path.read_bytes() if path.exists() else None
  except OSError as e:
    logging.warning('could not read the cached %s scan %s: %s', tfds_name, path, e)
    cached_bytes = None
  if cached_bytes is not None:
    try:
      with np.load(io.BytesIO(cached_bytes)) as cached:
        if all(f in cached for f in fields):
          return {f: cached[f] for f in fields}
    except (OSError, ValueError, EOFError) as e:  # a damaged cache file: scan again
      logging.warning('ignoring the damaged cache file %s: %s', path, e)
  values = {f: [] for f in fields}
  for start in range(0, len(ds), _SCAN_CHUNK):
    for record in ds.__getitems__(range(start, min(start + _SCAN_CHUNK, len(ds)))):
      for f in fields:
        value = record[f]
        values[f].append(value.decode() if isinstance(value, bytes) else value)
  arrays = {f: np.asarray(v) for f, v in values.items()}
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    tmp = path.parent / f'{path.name}.{os.getpid()}.tmp'
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)  # Atomic locally, so a concurrent reader never sees half a file.
  except OSError as e:
    logging.warning('could not cache %s scan in %s: %s', tfds_name, path, e)
  return arrays
