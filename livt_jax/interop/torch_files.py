"""Reads and writes PyTorch state-dict files (.pth/.pt/.bin and .safetensors) without torch.

Why not torch: the main venv stays free of a multi-GB torch install, and a foreign checkpoint is
never unpickled with Python's full pickle: only the few torch/collections globals a state dict
needs are resolved (as torch.load(weights_only=True) does); any other object becomes an inert
`Opaque` placeholder, so loading cannot run code.

Formats:
  * torch.save (zip, torch >= 1.6): `<root>/data.pkl` is a pickle whose tensors reference
    storages by persistent id ('storage', <dtype>Storage, key, location, numel); the raw
    little-endian bytes of storage `key` are the zip member `<root>/data/<key>`.
  * safetensors: 8-byte little-endian header length, a JSON header {name: {dtype, shape,
    data_offsets}} (and an optional "__metadata__" of strings), then the raw bytes.
"""
import collections
import io
import json
import pickle
import struct
import zipfile
import zlib

import ml_dtypes
import numpy as np

from livt_jax.runtime import paths
from livt_jax import validate

# torch storage class name -> numpy dtype (bfloat16 via ml_dtypes, a jax dependency).
_STORAGE_DTYPES = {
    'FloatStorage': np.float32, 'DoubleStorage': np.float64, 'HalfStorage': np.float16,
    'BFloat16Storage': ml_dtypes.bfloat16, 'LongStorage': np.int64, 'IntStorage': np.int32,
    'ShortStorage': np.int16, 'CharStorage': np.int8, 'ByteStorage': np.uint8,
    'BoolStorage': np.bool_,
}
_SAFETENSORS_DTYPES = {
    'F32': np.float32, 'F64': np.float64, 'F16': np.float16, 'BF16': ml_dtypes.bfloat16,
    'I64': np.int64, 'I32': np.int32, 'I16': np.int16, 'I8': np.int8, 'U8': np.uint8,
    'BOOL': np.bool_,
}
SUFFIXES = validate.TORCH_SUFFIXES


class TorchFileError(ValueError):
  """A file that is not a readable torch.save / safetensors state dict; says what to do."""


def is_torch_file(path) -> bool:
  """True for a path whose name says it is a PyTorch checkpoint (not an orbax dir)."""
  return str(path).lower().endswith(SUFFIXES)


class Opaque:
  """Stands in for any pickled object other than tensors and containers (args, scalers)."""

  def __new__(cls, *args, **kwargs):
    del kwargs
    obj = super().__new__(cls)
    obj.args = args
    return obj

  def __init__(self, *args, **kwargs):
    pass

  def __setstate__(self, state):
    self.state = state


def _opaque_class(module: str, name: str) -> type:
  return type(name, (Opaque,), {'__module__': f'livt_jax.opaque.{module}'})


def _rebuild_tensor(storage, offset, size, stride, *unused):
  """torch._utils._rebuild_tensor_v2: a strided view of the storage, copied to its own array."""
  del unused
  item = storage.itemsize
  view = np.lib.stride_tricks.as_strided(
      storage[offset:], shape=tuple(size), strides=tuple(s * item for s in stride))
  return np.array(view)


def _rebuild_parameter(data, *unused):
  del unused
  return data


def _rebuild_from_type(func, new_type, args, state):
  del new_type, state
  return func(*args)


class _StateDictUnpickler(pickle.Unpickler):
  """Resolves only what a state dict needs; storages come from the zip archive."""

  def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str):
    super().__init__(io.BytesIO(data))
    self._archive, self._root = archive, root

  def find_class(self, module, name):
    if module == 'collections' and name == 'OrderedDict':
      return collections.OrderedDict
    if module == 'torch._utils' and name == '_rebuild_tensor_v2':
      return _rebuild_tensor
    if module == 'torch._utils' and name in ('_rebuild_parameter',
                                             '_rebuild_parameter_with_state'):
      return _rebuild_parameter
    if module == 'torch._tensor' and name == '_rebuild_from_type_v2':
      return _rebuild_from_type
    if module == 'torch' and name in _STORAGE_DTYPES:
      return _STORAGE_DTYPES[name]
    return _opaque_class(module, name)

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and pid and pid[0] == 'storage'):
      raise pickle.UnpicklingError(f'unsupported persistent id {pid!r}')
    dtype, key = pid[1], pid[2]
    if not isinstance(dtype, type) or issubclass(dtype, Opaque):
      raise pickle.UnpicklingError(f'unsupported storage type {dtype!r}')
    raw = self._archive.read(f'{self._root}/data/{key}')
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder('<'))


def _read_torch_zip(path, data: bytes):
  try:
    archive = zipfile.ZipFile(io.BytesIO(data))
  except zipfile.BadZipFile as e:
    raise TorchFileError(_not_a_zip(path, data)) from e
  pickles = [n for n in archive.namelist() if n.endswith('/data.pkl') and n.count('/') == 1]
  if not pickles:
    raise TorchFileError(f'{path} is a zip file but no torch.save archive (no <root>/data.pkl)')
  root = pickles[0].split('/')[0]
  byteorder = f'{root}/byteorder'
  if byteorder in archive.namelist() and archive.read(byteorder).strip() != b'little':
    raise TorchFileError(f'{path} was saved on a big-endian machine; re-save it on x86/ARM')
  try:
    return _StateDictUnpickler(archive.read(pickles[0]), archive, root).load()
  except (pickle.UnpicklingError, KeyError, ValueError, TypeError, EOFError, zipfile.BadZipFile,
          zlib.error) as e:
    raise TorchFileError(f'cannot read {path}: {type(e).__name__}: {e} (a damaged file? copy or '
                         'download it again)') from e


def _not_a_zip(path, data: bytes) -> str:
  """Why `data` opens as no zip archive: cut short, the pre-1.6 format, or no torch file."""
  if not data:
    return f'{path} is empty (0 bytes): not a PyTorch checkpoint; copy or download it again'
  if data[:4] == b'PK\x03\x04':  # a zip's first local header, but no directory at its end
    return (f'{path} is truncated: a torch.save zip archive of {len(data)} bytes whose end (the '
            'zip directory) is missing; copy or download it again')
  if data[:1] == b'\x80':  # a pickle: torch.save before 1.6 wrote one stream, not a zip
    return (f'{path} is a torch file of the legacy format (torch < 1.6: a bare pickle); re-save it '
            'with a newer torch first: torch.save(torch.load(old), new)')
  return (f'{path} is not a PyTorch checkpoint: neither a torch.save zip archive nor a legacy '
          f'pickle (it starts with {data[:8]!r}); use a .pth/.pt/.bin written by torch.save or '
          'a .safetensors file')


def _read_safetensors(path, data: bytes) -> dict:
  if len(data) < 8:
    raise TorchFileError(f'{path} is truncated or not a safetensors file: {len(data)} bytes, '
                         'less than its 8-byte header length; copy or download it again')
  (length,) = struct.unpack('<Q', data[:8])
  if 8 + length > len(data):
    raise TorchFileError(f'{path} is truncated or not a safetensors file: its header says '
                         f'{length} bytes of JSON but the file has {len(data) - 8} after the '
                         'length; copy or download it again')
  try:
    header = json.loads(data[8:8 + length])
  except ValueError as e:
    raise TorchFileError(f'{path} is not a safetensors file (its header is no JSON: {e})') from e
  body = memoryview(data)[8 + length:]
  out = {}
  for name, info in header.items():
    if name == '__metadata__':
      continue
    if info['dtype'] not in _SAFETENSORS_DTYPES:
      raise TorchFileError(f'{path}: tensor {name} has unsupported dtype {info["dtype"]}')
    start, end = info['data_offsets']
    need = int(np.prod(info['shape'])) * np.dtype(_SAFETENSORS_DTYPES[info['dtype']]).itemsize
    if end > len(body):
      raise TorchFileError(
          f'{path} is truncated: tensor {name} lies at bytes {start}..{end} of the data but the '
          f'file holds {len(body)} bytes of data; copy or download it again')
    if end - start != need:
      raise TorchFileError(
          f'{path} is damaged: tensor {name} ({info["dtype"]} {info["shape"]}) needs {need} '
          f'bytes but its header gives it {end - start}; copy or download it again')
    out[name] = np.frombuffer(body[start:end], _SAFETENSORS_DTYPES[info['dtype']]).reshape(
        info['shape']).copy()
  return out


def read_checkpoint(path):
  """The unpickled object of a torch.save file, or the dict of a .safetensors file."""
  path_obj = paths.resolve(path)
  if not path_obj.exists():
    raise FileNotFoundError(f'no such PyTorch checkpoint: {path}')
  data = path_obj.read_bytes()
  if str(path).lower().endswith('.safetensors'):
    return _read_safetensors(path, data)
  return _read_torch_zip(path, data)


def state_dict_of(obj, path) -> dict[str, np.ndarray]:
  """The state dict inside a checkpoint object: itself, or its 'model' / 'state_dict' entry
  (MAE, DeiT and LiVT training checkpoints keep optimizer and args next to 'model')."""
  if isinstance(obj, dict):
    for key in ('model', 'state_dict', 'model_ema'):
      if isinstance(obj.get(key), dict):
        obj = obj[key]
        break
  if not isinstance(obj, dict) or not obj:
    raise TorchFileError(f'{path} holds no state dict (found {type(obj).__name__})')
  tensors = {k: v for k, v in obj.items() if isinstance(v, np.ndarray)}
  if not tensors:
    raise TorchFileError(f'{path} holds no tensors at its top level or under "model"')
  # DataParallel / DistributedDataParallel checkpoints prefix every key with 'module.'.
  if all(k.startswith('module.') for k in tensors):
    tensors = {k[len('module.'):]: v for k, v in tensors.items()}
  return tensors


def load_state_dict(path) -> dict[str, np.ndarray]:
  """{name: array} of a .pth/.pt/.bin (torch.save) or .safetensors file."""
  return state_dict_of(read_checkpoint(path), path)
