"""User paths (workdir, data, checkpoints) as `etils.epath` paths: gs:// and local alike.

Never `os.path`/`open()` on a user path: `os.path.abspath('gs://b/x')` is a local folder
named `gs:`. Only local paths are made absolute (orbax wants absolute checkpoint dirs).
"""
import os

from etils import epath


def is_uri(path) -> bool:
  return '://' in os.fspath(path)


def resolve(path) -> epath.Path:
  """An absolute epath.Path for a local path; a URI (gs://, s3://, ...) as it is."""
  text = os.fspath(path)
  return epath.Path(text if is_uri(text) else os.path.abspath(os.path.expanduser(text)))


def native(path) -> str:
  """The string for libraries with file systems of their own, which take gs:// natively:
  TensorFlow's gfile (TensorBoard events) and TensorStore (orbax's array data)."""
  return os.fspath(path)
