"""The first touch of a gs:// workdir or data dir: a bounded probe with a one-line verdict.

TensorFlow's GCS file system (etils' gs:// backend, TensorBoard) retries a server that answers
with errors for minutes (~200 s here) and ends in a traceback; a host name that does not
resolve takes ~8 s. Before any of that, `check` spends at most `storage.probe_timeout_s`:

1. a TCP connection to the endpoint TensorFlow uses (www.googleapis.com:443, or the
   HTTPS_PROXY it goes through), `storage.probe_retries` attempts with a growing pause: no
   name resolution means no network or DNS; a refused or timed-out connection, the service
   is unreachable;
2. TensorFlow's own calls (the same credentials as the run) on a thread waited for until the
   deadline: `exists(uri)` (HTTP 401: no usable credentials; 403: no permission), then
   `isdir('gs://BUCKET/')` (False: no such bucket).

Failure raises `StorageError` (a ValueError: `main` prints its one line and exits 2) naming the
URI, the cause and what to do. s3:// is refused in one line: TensorFlow's file layer no longer
reads it (docs/cloud_storage.md).
"""
import os
import socket
import sys
import threading
import time
import urllib.parse

from livt_jax.runtime import paths

TF_HOST = 'www.googleapis.com'  # TensorFlow's GCS JSON API host (built into TensorFlow)
_CREDENTIALS_HINT = ('run `gcloud auth application-default login`, or set '
                     'GOOGLE_APPLICATION_CREDENTIALS to a service-account key file')


class StorageError(ValueError):
  """A gs:// location that cannot be used; the message names it, the cause and the fix."""


def _proxy_for(host: str) -> tuple[str, int] | None:
  """The HTTPS proxy libcurl (TensorFlow) would use for `host`, as (host, port)."""
  proxy = os.environ.get('HTTPS_PROXY') or os.environ.get('https_proxy')
  if not proxy:
    return None
  no_proxy = os.environ.get('NO_PROXY', os.environ.get('no_proxy', ''))
  if any(n.strip() and (host == n.strip().lstrip('.') or host.endswith('.' + n.strip().lstrip(
      '.'))) for n in no_proxy.split(',')) or no_proxy.strip() == '*':
    return None
  parsed = urllib.parse.urlsplit(proxy if '://' in proxy else 'http://' + proxy)
  return parsed.hostname, parsed.port or 1080


def _connect(uri: str, deadline: float, retries: int):
  """Step 1: raises StorageError if the endpoint cannot be reached before `deadline`."""
  proxy = _proxy_for(TF_HOST)
  host, port = proxy or (TF_HOST, 443)
  via = ' (the proxy in HTTPS_PROXY)' if proxy else ''
  error = None
  for attempt in range(max(1, retries)):
    left = deadline - time.monotonic()
    if left <= 0:
      break
    try:
      with socket.create_connection((host, port), timeout=min(10.0, left)):
        return
    except socket.gaierror as e:
      error = ('no network or DNS', f'cannot resolve {host}{via} ({e.strerror or e})',
               'check the network connection and DNS of this machine')
    except OSError as e:
      error = ('storage unreachable', f'cannot connect to {host}:{port}{via} '
               f'({e.strerror or type(e).__name__})',
               'check the network, firewall and proxy settings of this machine')
    time.sleep(max(0.0, min(2.0 ** attempt, deadline - time.monotonic())))
  cause, detail, fix = error or ('storage unreachable', f'no connection to {host}:{port}{via}',
                                 'check the network of this machine')
  raise StorageError(f'cannot use {uri}: {cause}: {detail} after {max(1, retries)} attempt(s); '
                     f'{fix}')


def _call(fn, deadline: float):
  """fn() on a daemon thread: ('ok', value), ('error', exception) or ('timeout', None).

  A daemon thread: TensorFlow's retries may go on after the deadline, and they must not keep
  the process from exiting with its one-line error."""
  out = []

  def target():
    try:
      out.append(('ok', fn()))
    except Exception as e:  # pylint: disable=broad-except
      out.append(('error', e))

  thread = threading.Thread(target=target, name='storage probe', daemon=True)
  thread.start()
  thread.join(max(0.0, deadline - time.monotonic()))
  if thread.is_alive():
    _abandoned.append(thread)
  return out[0] if out else ('timeout', None)


_abandoned = []  # probe threads still inside TensorFlow after their deadline


def exit_now_if_abandoned(code: int):
  """Ends the process with `code` at once if a probe thread is still in TensorFlow.

  Interpreter shutdown under such a thread aborts in TensorFlow's C++ code ("terminate
  called ...") after our one-line error; os._exit skips that shutdown."""
  if any(t.is_alive() for t in _abandoned):
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # pylint: disable=protected-access


def _http_status(error: Exception) -> int | None:
  text = str(error)
  for code in (401, 403, 404):
    if f'response code {code}' in text or f'"code": {code}' in text:
      return code
  return None


def _classify(uri: str, bucket: str, error: Exception) -> StorageError:
  status = _http_status(error)
  first = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
  if status == 401 or 'credential' in str(error).lower():
    return StorageError(f'cannot use {uri}: no credentials (the storage service answered '
                        f'"unauthenticated": {first}); {_CREDENTIALS_HINT}')
  if status == 403 or type(error).__name__ == 'PermissionDeniedError':
    return StorageError(f'cannot use {uri}: no permission on gs://{bucket} ({first}); grant '
                        'this account read and write access to the bucket (e.g. the '
                        'Storage Object Admin role), or use another bucket')
  return StorageError(f'cannot use {uri}: {type(error).__name__}: {first}; check the path and '
                      'that this machine may use it')


def check(uri: str, what: str = 'path', timeout_s: float = 30.0, retries: int = 3):
  """Raises StorageError unless the gs:// `uri` answers within `timeout_s`; others pass.

  `what` names the setting in messages (e.g. '--workdir', 'dataset.data_dir')."""
  uri = os.fspath(uri)
  if uri.startswith('s3://'):
    raise StorageError(f'{what}={uri}: s3:// is not supported (TensorFlow\'s file layer, '
                       'which writes our TensorBoard events, no longer reads S3); copy the '
                       'data to local disk or gs://, or mount the bucket as a local folder '
                       '(e.g. with mountpoint-s3 or s3fs-fuse) and pass that path')
  if not uri.startswith('gs://'):
    return
  bucket = uri[len('gs://'):].split('/')[0]
  if not bucket:
    raise StorageError(f'{what}={uri} names no bucket; use gs://BUCKET/path')
  label = f'{what}={uri}'
  deadline = time.monotonic() + timeout_s
  _connect(label, deadline, retries)
  from tensorflow.io import gfile  # pylint: disable=g-import-not-at-top
  for step in ('exists', 'bucket'):
    fn = (lambda: gfile.exists(uri)) if step == 'exists' else (
        lambda: gfile.isdir(f'gs://{bucket}/'))
    kind, value = _call(fn, deadline)
    if kind == 'timeout':
      raise StorageError(f'cannot use {label}: storage unreachable: no answer within '
                         f'{timeout_s:g} s (storage.probe_timeout_s); check the network, or '
                         'raise --config.storage.probe_timeout_s on a slow link')
    if kind == 'error':
      raise _classify(label, bucket, value)
    if step == 'bucket' and not value:
      raise StorageError(f'cannot use {label}: no such bucket gs://{bucket} (or this account '
                         f'may not see it); create it (gcloud storage buckets create '
                         f'gs://{bucket}) or fix the name')


def check_config(config, workdir: str | None):
  """Probes the gs:// workdir and dataset.data_dir / split_dir of `config` (see `check`)."""
  storage = config.get('storage', {})
  timeout_s, retries = storage.get('probe_timeout_s', 30.0), storage.get('probe_retries', 3)
  if not isinstance(timeout_s, (int, float)) or not 0 < timeout_s < float('inf'):
    raise StorageError(f'config.storage.probe_timeout_s={timeout_s!r}: use a number of seconds '
                       '> 0, e.g. 30')
  if not isinstance(retries, int) or isinstance(retries, bool) or retries < 1:
    raise StorageError(f'config.storage.probe_retries={retries!r}: use a whole number >= 1, '
                       'e.g. 3')
  targets = [('--workdir', workdir), ('dataset.data_dir', config.dataset.get('data_dir')),
             ('dataset.split_dir', config.dataset.get('split_dir'))]
  if workdir and os.fspath(workdir).startswith('gs://'):
    import importlib.util  # pylint: disable=g-import-not-at-top
    if importlib.util.find_spec('google.cloud.storage') is None:
      # orbax's CheckpointManager asks google-cloud-storage whether a gs:// bucket has a
      # hierarchical namespace; without it the first save dies in an ImportError.
      raise StorageError(f'--workdir={workdir}: checkpoints in gs:// need the package '
                         'google-cloud-storage (orbax uses it); pip install google-cloud-storage')
  seen = set()
  for what, uri in targets:
    if uri and paths.is_uri(uri) and uri not in seen:
      seen.add(uri)
      check(os.fspath(uri), what, timeout_s, retries)
