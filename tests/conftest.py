"""Test session set-up: 8 simulated CPU devices, so sharded code runs as on a pod slice."""
import atexit
import os
import shutil
import sys
import tempfile

# Must happen before jax is imported anywhere in the test session.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# One persistent compilation cache for the session and the `python -m livt_jax.main` processes
# the tests start (they inherit the environment): many of them compile the same tiny models,
# and a hit loads the executable instead of compiling it again. Fresh per session, removed after.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _cache = tempfile.mkdtemp(prefix='livt_jax_test_cache_')
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _cache
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  os.environ['JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'] = '0'
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
