"""A stand-in cloud bucket: `mock://bucket/...` paths that etils.epath maps onto a local dir.

Code that handles user paths through `etils.epath` (as it must for gs://) reads and writes
`mock://` paths in the local root; code that calls `os.path` / `open()` on the raw string
instead creates a relative `mock:` folder in the current directory or fails to find the file,
exactly as it would mistreat `gs://...`. Offline, no credentials.

    from tests.cloud_fakes import mock_bucket  # pytest fixture (import it into the module)

    def test_x(mock_bucket):
      mock_bucket.url          # 'mock://bucket': use it (or mock_bucket.url + '/sub') as a path
      mock_bucket.root         # the local pathlib.Path it maps onto (put files there)
      mock_bucket.local('mock://bucket/a/b')  # -> root / 'a' / 'b'
      cloud_fakes.to_local('mock://bucket/a')  # the same as a str (no fixture object needed)
      mock_bucket.cwd          # the (empty) current directory during the test
      mock_bucket.assert_cwd_untouched()      # nothing was created in the cwd (no 'mock:')

Outside a test, `with cloud_fakes.bucket(local_root) as url:` does the same. The scheme is
registered with epath once per process; a `mock://` path used outside the fixture raises.
Only epath sees the scheme: tensorstore (orbax array data), TFDS's TensorFlow file system and
grain do not, so they cannot read or write `mock://` paths.
"""
import contextlib
import dataclasses
import os
import pathlib

from etils import epath
from etils.epath import backend as backend_lib
from etils.epath import gpath
from etils.epath import register
import pytest

SCHEME = 'mock'
PREFIX = f'{SCHEME}://'
BUCKET_URL = f'{PREFIX}bucket'
# Shared with an earlier copy of this module (imported both as `cloud_fakes` and as
# `tests.cloud_fakes`): the scheme has one registered class, and all copies map the same root.
_state = getattr(register._URI_PREFIXES_TO_CLS.get(PREFIX), 'livt_state', None) or {  # pylint: disable=protected-access
    'root': None}


def to_local(path) -> str:
  """The local path a `mock://` path maps onto (other paths unchanged)."""
  path = os.fspath(path)
  if not path.startswith(PREFIX):
    return path
  root = _state['root']
  if root is None:
    raise RuntimeError(f'{path} used outside cloud_fakes.bucket() / the mock_bucket fixture')
  return os.path.join(root, path[len(PREFIX):])


_to_local = to_local  # the first name of it, used by tests/test_cloud_workdir.py


def _to_uri(local_path) -> str:
  rel = os.path.relpath(os.fspath(local_path), _state['root'])
  return PREFIX + ('' if rel == '.' else rel)


class _MockBackend(backend_lib._OsPathBackend):  # pylint: disable=protected-access
  """The os backend on the mapped local paths."""

  def open(self, path, mode):
    return super().open(_to_local(path), mode)

  def exists(self, path):
    return super().exists(_to_local(path))

  def isdir(self, path):
    return super().isdir(_to_local(path))

  def listdir(self, path):
    return super().listdir(_to_local(path))

  def glob(self, path):
    return [_to_uri(p) for p in super().glob(_to_local(path))]

  def walk(self, top, *, top_down=True, on_error=None):
    for root, dirs, files in super().walk(_to_local(top), top_down=top_down, on_error=on_error):
      yield _to_uri(root), dirs, files

  def makedirs(self, path, *, exist_ok=False, mode=None):
    return super().makedirs(_to_local(path), exist_ok=exist_ok, mode=mode)

  def mkdir(self, path, *, exist_ok=False, mode=None):
    return super().mkdir(_to_local(path), exist_ok=exist_ok, mode=mode)

  def rmtree(self, path):
    return super().rmtree(_to_local(path))

  def remove(self, path):
    return super().remove(_to_local(path))

  def rename(self, path, dst):
    return super().rename(_to_local(path), _to_local(dst))

  def replace(self, path, dst):
    return super().replace(_to_local(path), _to_local(dst))

  def copy(self, path, dst, overwrite):
    return super().copy(_to_local(path), _to_local(dst), overwrite)

  def stat(self, path):
    return super().stat(_to_local(path))


_BACKEND = _MockBackend()


@epath.register_path_cls(PREFIX)
class MockPath(gpath.PosixGPath):
  """`mock://bucket/a` is stored as the parts ('/', 'mock', 'bucket', 'a'), like gs://."""

  livt_state = _state

  def __new__(cls, *parts):
    full = '/'.join(os.fspath(p) for p in parts)
    if full.startswith(PREFIX):
      full = f'/{SCHEME}/' + full[len(PREFIX):]
    return super().__new__(cls, full)

  @property
  def _uri_scheme(self):
    if len(self.parts) >= 2 and self.parts[0] == '/' and self.parts[1] == SCHEME:
      return SCHEME
    return super()._uri_scheme

  @property
  def _backend(self):
    if self._uri_scheme == SCHEME:
      return _BACKEND
    return super()._backend


@contextlib.contextmanager
def bucket(local_root):
  """Maps `mock://` onto `local_root` inside the block; yields 'mock://bucket'."""
  root = os.path.abspath(os.fspath(local_root))
  os.makedirs(os.path.join(root, 'bucket'), exist_ok=True)
  previous, _state['root'] = _state['root'], root
  try:
    yield BUCKET_URL
  finally:
    _state['root'] = previous


@dataclasses.dataclass
class MockBucket:
  url: str              # 'mock://bucket'
  root: pathlib.Path    # the local dir 'mock://bucket' maps onto
  cwd: pathlib.Path     # the current directory during the test (empty at its start)

  def local(self, uri) -> pathlib.Path:
    """The local path a `mock://bucket/...` URI maps onto."""
    return pathlib.Path(_to_local(uri))

  def assert_cwd_untouched(self):
    """Nothing was written relative to the cwd (os.path/open on a raw URI would have)."""
    created = sorted(os.listdir(self.cwd))
    assert not created, f'created in the current directory: {created}'


@pytest.fixture
def mock_bucket(tmp_path, monkeypatch):
  """A `MockBucket`: mock://bucket maps onto tmp_path/store/bucket; the cwd is an empty dir."""
  cwd = tmp_path / 'cwd'
  cwd.mkdir()
  monkeypatch.chdir(cwd)
  with bucket(tmp_path / 'store') as url:
    yield MockBucket(url=url, root=tmp_path / 'store' / 'bucket', cwd=cwd)
