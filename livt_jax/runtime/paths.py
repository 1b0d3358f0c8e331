"""User paths (workdir, data, split files, checkpoints) as `etils.epath` paths: gs:// and local
alike.

Never `os.path`/`open()` on a user path: `os.path.abspath('gs://b/x')` is a local folder named
`gs:`. Only local paths are made absolute (orbax wants absolute checkpoint dirs) and get `~`
expanded.
"""
import os
from typing import Union

from etils import epath

PathLike = Union[str, os.PathLike]


def as_path(path: PathLike) -> epath.Path:
  """An epath.Path for a local path (with `~` expanded) or a URI."""
  path = os.fspath(path)
  return epath.Path(path if is_uri(path) else os.path.expanduser(path))


def join(path: PathLike, *names: str) -> str:
  """`path/name/...` as a string; a URI stays a URI."""
  return os.fspath(as_path(path).joinpath(*names))


def absolute(path: PathLike) -> str:
  """A local path made absolute; a URI unchanged."""
  path = os.fspath(path)
  return path if is_uri(path) else os.path.abspath(os.path.expanduser(path))


def _probe(path: PathLike, check) -> bool:
  try:
    return bool(check(as_path(path)))
  except Exception as e:  # pylint: disable=broad-except
    # Cloud back-ends raise their own types (permission denied, no credentials, ...).
    reason = str(e).splitlines()[0] if str(e) else ''
    raise FileNotFoundError(
        f'cannot access {os.fspath(path)} ({type(e).__name__}: {reason}); check the path '
        'and that this machine may read it') from e


def exists(path: PathLike) -> bool:
  return _probe(path, lambda p: p.exists())


def is_dir(path: PathLike) -> bool:
  return _probe(path, lambda p: p.is_dir())


def is_file(path: PathLike) -> bool:
  return _probe(path, lambda p: p.exists() and not p.is_dir())


def is_uri(path: PathLike) -> bool:
  """True for `scheme://...` paths (gs://, s3://, ...), which must never be made absolute."""
  return '://' in os.fspath(path)


def resolve(path: PathLike) -> epath.Path:
  """An absolute epath.Path for a local path; a URI (gs://, s3://, ...) as it is."""
  return epath.Path(absolute(path))


def native(path: PathLike) -> str:
  """The string for libraries with file systems of their own, which take gs:// natively:
  TensorFlow's gfile (TensorBoard events) and TensorStore (orbax's array data)."""
  return os.fspath(path)
