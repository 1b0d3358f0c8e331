"""pyproject.toml and the requirements files: one set of pins, a wheel that holds the package.

The wheel is built here (offline: `pip wheel --no-build-isolation` with this venv's setuptools)
from a copy of the files it is made of, and its metadata is compared with the requirements
files that pyproject.toml names: the run's dependencies and each extra. The jax build pins
(requirements-tpu/cuda12, libtpu for AOT) are checked against jax's own metadata.
"""
import email
import glob
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
EXTRAS = {'tpu': 'requirements-tpu.txt', 'cuda12': 'requirements-cuda12.txt',
          'torch': 'requirements-benchmark.txt', 'dev': 'requirements-dev.txt'}


def _requirements(name):
  """The requirement lines of a requirements file, as comparable strings."""
  with open(os.path.join(ROOT, name)) as f:
    lines = [line.split('#')[0].strip() for line in f]
  for line in lines:
    assert not line.startswith('-'), f'{name}: pip options are not package metadata: {line}'
  return sorted(_canonical(Requirement(line)) for line in lines if line)


def _canonical(req):
  extras = f'[{",".join(sorted(req.extras))}]' if req.extras else ''
  return f'{canonicalize_name(req.name)}{extras}{req.specifier}'


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
  src = tmp_path_factory.mktemp('src')
  for name in ['pyproject.toml', 'README.md', *map(os.path.basename,
                                                   glob.glob(f'{ROOT}/requirements*.txt'))]:
    shutil.copy(os.path.join(ROOT, name), src)
  shutil.copytree(os.path.join(ROOT, 'livt_jax'), src / 'livt_jax',
                  ignore=shutil.ignore_patterns('__pycache__'))
  out = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps',
                        '--no-build-isolation', '-w', str(src / 'dist'), str(src)],
                       capture_output=True, text=True, timeout=300, check=False)
  assert out.returncode == 0, out.stderr
  [path] = glob.glob(str(src / 'dist' / '*.whl'))
  return zipfile.ZipFile(path)


def _dist_info(wheel, name):
  [path] = [n for n in wheel.namelist() if n.endswith(f'.dist-info/{name}')]
  return wheel.read(path).decode()


def test_pyproject_reads_its_pins_from_the_requirements_files():
  with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
    dynamic = tomllib.load(f)['tool']['setuptools']['dynamic']
  assert dynamic['dependencies'] == {'file': ['requirements.txt']}
  assert dynamic['optional-dependencies'] == {k: {'file': [v]} for k, v in EXTRAS.items()}


def test_wheel_requires_exactly_the_pinned_requirements(wheel):
  meta = email.message_from_string(_dist_info(wheel, 'METADATA'))
  reqs = [Requirement(r) for r in meta.get_all('Requires-Dist')]
  assert sorted(_canonical(r) for r in reqs if r.marker is None) == _requirements(
      'requirements.txt')
  assert sorted(meta.get_all('Provides-Extra')) == sorted(EXTRAS)
  for extra, name in EXTRAS.items():
    got = sorted(_canonical(r) for r in reqs if r.marker and r.marker.evaluate({'extra': extra}))
    assert got == _requirements(name), extra
  assert meta['Requires-Python'] == '>=3.11'


def test_wheel_holds_every_module_of_the_package_and_nothing_else(wheel):
  names = set(wheel.namelist())
  modules = {os.path.relpath(p, ROOT) for p in glob.glob(f'{ROOT}/livt_jax/**/*.py',
                                                         recursive=True)}
  assert {n for n in names if n.endswith('.py')} == modules
  specs = {os.path.relpath(p, ROOT) for p in glob.glob(f'{ROOT}/livt_jax/aot/specs/*.txtpb')}
  assert specs and specs <= names, 'the GPU plans need their XLA target configs in the wheel'
  for folder in {os.path.dirname(m) for m in modules}:
    assert f'{folder}/__init__.py' in names, f'{folder} is not a package'
  assert '[console_scripts]\nlivt-jax = livt_jax.main:main' in _dist_info(wheel, 'entry_points.txt')


def test_every_run_pin_is_what_this_venv_has():
  """launch/setup.sh installed requirements.txt here: the installed versions satisfy it."""
  for line in _requirements('requirements.txt'):
    req = Requirement(line)
    assert req.specifier.contains(metadata.version(req.name), prereleases=True), line


def test_accelerator_and_aot_pins_follow_the_jax_pin():
  jax_pin = [r for r in map(Requirement, _requirements('requirements.txt')) if r.name == 'jax']
  [jax_pin] = jax_pin
  for name, extra in (('requirements-tpu.txt', 'tpu'), ('requirements-cuda12.txt', 'cuda12')):
    [req] = map(Requirement, _requirements(name))
    assert (req.name, req.extras, req.specifier) == ('jax', {extra}, jax_pin.specifier), name
  # The libtpu that launch/setup.sh --tests puts in .libtpu is the one jax[tpu] would install.
  [libtpu] = map(Requirement, _requirements('requirements-tpu-aot.txt'))
  assert metadata.version('jax') in jax_pin.specifier
  wanted = [Requirement(r) for r in metadata.requires('jax')
            if r.startswith('libtpu') and 'extra == "tpu"' in r]
  assert len(wanted) == 1 and len(libtpu.specifier) == 1
  assert wanted[0].specifier.contains(next(iter(libtpu.specifier)).version)
