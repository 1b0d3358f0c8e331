"""Writes state dicts of NumPy arrays as files that torch.load / timm read, without torch.

`save_pth` writes the zip archive of torch.save: a pickle of an OrderedDict whose tensors are
`torch._utils._rebuild_tensor_v2(storage, 0, shape, stride, False, OrderedDict())` calls and
whose storages are persistent ids pointing at raw little-endian members `archive/data/<i>`.
torch.load(weights_only=True), torch's default since 2.6, accepts exactly these globals.
The pickle names torch's globals without importing torch: Python's pure pickler is given
`_Global` stand-ins that it writes as GLOBAL opcodes.
"""
import collections
import io
import json
import pickle
import struct
import zipfile

import ml_dtypes
import numpy as np

from livt_jax.runtime import paths

_STORAGE_NAMES = {
    np.dtype(np.float32): 'FloatStorage', np.dtype(np.float64): 'DoubleStorage',
    np.dtype(np.float16): 'HalfStorage', np.dtype(ml_dtypes.bfloat16): 'BFloat16Storage',
    np.dtype(np.int64): 'LongStorage', np.dtype(np.int32): 'IntStorage',
    np.dtype(np.uint8): 'ByteStorage', np.dtype(np.bool_): 'BoolStorage',
}
_SAFETENSORS_NAMES = {
    np.dtype(np.float32): 'F32', np.dtype(np.float64): 'F64', np.dtype(np.float16): 'F16',
    np.dtype(ml_dtypes.bfloat16): 'BF16', np.dtype(np.int64): 'I64', np.dtype(np.int32): 'I32',
    np.dtype(np.uint8): 'U8', np.dtype(np.bool_): 'BOOL',
}


class _Global:
  """A module-level name of torch, pickled by reference (GLOBAL opcode), never resolved here."""

  def __init__(self, module: str, name: str):
    self.module, self.name = module, name

  def __call__(self, *args):  # pickle's save_reduce insists on a callable
    raise TypeError(f'{self.module}.{self.name} is only a name for pickling')


class _Storage:
  def __init__(self, key: str, array: np.ndarray):
    self.key, self.array = key, array


class _Tensor:
  def __init__(self, storage: _Storage):
    self.storage = storage


_REBUILD = _Global('torch._utils', '_rebuild_tensor_v2')


class _TorchPickler(pickle._Pickler):  # pylint: disable=protected-access
  """Python's pure pickler (its dispatch table can be extended) that speaks torch.save."""
  dispatch = dict(pickle._Pickler.dispatch)  # pylint: disable=protected-access

  def _save_global_name(self, obj):
    self.write(pickle.GLOBAL + f'{obj.module}\n{obj.name}\n'.encode('utf-8'))
    self.memoize(obj)

  dispatch[_Global] = _save_global_name

  def persistent_id(self, obj):
    if isinstance(obj, _Storage):
      storage_type = _Global('torch', _STORAGE_NAMES[obj.array.dtype])
      return ('storage', storage_type, obj.key, 'cpu', int(obj.array.size))
    return None

  def reducer_override(self, obj):
    if isinstance(obj, _Tensor):
      a = obj.storage.array
      stride = tuple(int(s) // a.itemsize for s in a.strides) if a.ndim else ()
      return _REBUILD, (obj.storage, 0, tuple(a.shape), stride, False,
                        collections.OrderedDict())
    return NotImplemented


def _contiguous(name, array) -> np.ndarray:
  a = np.array(array, order="C", copy=None)  # (ascontiguousarray would make 0-d arrays 1-d)
  if a.dtype not in _STORAGE_NAMES:
    raise ValueError(f'{name}: dtype {a.dtype} cannot be written as a torch tensor')
  return a.astype(a.dtype.newbyteorder('<'), copy=False)


def save_pth(path, state_dict: dict[str, np.ndarray]) -> None:
  """Writes `state_dict` as torch.save would (zip archive, members stored uncompressed)."""
  arrays = {k: _contiguous(k, v) for k, v in state_dict.items()}
  storages = {k: _Storage(str(i), a) for i, (k, a) in enumerate(arrays.items())}
  obj = collections.OrderedDict((k, _Tensor(s)) for k, s in storages.items())
  buf = io.BytesIO()
  _TorchPickler(buf, protocol=2).dump(obj)
  out = io.BytesIO()
  with zipfile.ZipFile(out, 'w', compression=zipfile.ZIP_STORED) as z:
    z.writestr('archive/data.pkl', buf.getvalue())
    z.writestr('archive/byteorder', 'little')
    for s in storages.values():
      z.writestr(f'archive/data/{s.key}', s.array.tobytes())
    z.writestr('archive/version', '3\n')
  paths.resolve(path).write_bytes(out.getvalue())


def save_safetensors(path, state_dict: dict[str, np.ndarray],
                     metadata: dict[str, str] | None = None) -> None:
  """Writes `state_dict` as a .safetensors file (timm's `load_checkpoint` reads it)."""
  header, chunks, offset = {}, [], 0
  for name, array in state_dict.items():
    a = _contiguous(name, array)
    header[name] = {'dtype': _SAFETENSORS_NAMES[a.dtype], 'shape': list(a.shape),
                    'data_offsets': [offset, offset + a.nbytes]}
    chunks.append(a.tobytes())
    offset += a.nbytes
  if metadata:
    header['__metadata__'] = {str(k): str(v) for k, v in metadata.items()}
  text = json.dumps(header, separators=(',', ':')).encode('utf-8')
  text += b' ' * (-len(text) % 8)  # the format pads the header to 8 bytes
  paths.resolve(path).write_bytes(struct.pack('<Q', len(text)) + text + b''.join(chunks))
