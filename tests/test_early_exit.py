"""An early error exit is one line, also while clu's writers are still being imported in the
background with scikit-learn importable (TensorFlow -> keras -> scikit-learn), which used to
add a ~60-line "can't register atexit after shutdown" traceback after it."""
import importlib.util
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(__file__), '..')


def test_an_error_right_after_the_start_of_run_is_one_line(tmp_path):
  assert importlib.util.find_spec('sklearn'), (
      'scikit-learn must be importable for this test: bash launch/setup.sh --tests (requirements-dev.txt)')
  # BFT alone without an encoder: a ConfigError raised in run.run a second or two after the
  # background import of clu.metric_writers began (TensorFlow takes ~5 s to import here).
  r = subprocess.run([sys.executable, '-m', 'livt_jax.main', '--config=configs/fashion_mnist_lt.py',
                      '--config.stages=bft', f'--workdir={tmp_path}'], cwd=ROOT,
                     capture_output=True, text=True, timeout=300)
  assert r.returncode == 2, r.stderr[-3000:]
  errors = [l for l in r.stderr.splitlines() if l.startswith('livt_jax: error:')]
  assert len(errors) == 1 and 'config.bft.init_from is unset' in errors[0], r.stderr[-3000:]
  assert 'Traceback' not in r.stderr and 'atexit' not in r.stderr, r.stderr[-3000:]
