"""Every `python -m livt_jax.main` command in README.md and docs/*.md dry-runs.

The code blocks of the pages (fenced or indented) are scanned for commands that start with
`python -m livt_jax.main` or `.venv/bin/python -m livt_jax.main` (also after `&&`; lines
ending in `\\` are joined). Each is run with `--dry_run` added: the config file, its argument
and every `--config.*` override are parsed and validated as the real command would, and the
plan is printed, without data or training. An `--aot=...` command is dry-run without `--aot`
(its config and overrides are still checked; compiling for a TPU slice takes minutes:
tests/test_aot.py covers that path). All commands run in one process
(tests/docs_commands_runner.py), 8 simulated CPU devices. Commands that need a file or bucket
this machine lacks are listed in ALLOWED with the reason; those that name a missing file still
run and must stop with the one error line about that file.
"""
import glob
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
PAGES = [os.path.join(ROOT, 'README.md')] + sorted(glob.glob(os.path.join(ROOT, 'docs', '*.md')))
PREFIXES = ('python -m livt_jax.main', '.venv/bin/python -m livt_jax.main')

# Commands that need something this machine does not have. Substring of a command ->
# (why, the one error line its dry run must stop with; None: not run at all). Those with an
# expected line still run: they must fail with exactly that complaint and nothing else.
ALLOWED = {
    '--config=CONFIG --workdir=WORKDIR': (
        "a template (docs/launch.md): CONFIG, WORKDIR and the overrides stand for a launcher's "
        'arguments (tests/test_launchers.py checks the argv the launchers pass)', None),
    'gs://': ('a gs:// bucket: the dry run would ask Cloud Storage whether the data is there, and '
              'this machine has no bucket (tests/test_cloud_workdir.py runs gs:// paths against '
              'an emulator)', None),
    '--config.dataset.data_dir=/data/my_images': (
        "an example image folder: its class count is read from it (tests/test_cli_dry_run.py "
        'dry-runs a real one)',
        "livt_jax: error: image_folder: dataset.data_dir='/data/my_images' is not a directory"),
    '--config.evaluate.checkpoint=runs/fmnist/bft/checkpoints': (
        "the checkpoint of README's run, which the tests do not train",
        "livt_jax: error: config.evaluate.checkpoint='runs/fmnist/bft/checkpoints': no such "
        'checkpoint directory'),
    '--config.bft.init_from=mae_pretrain_vit_base.pth': (
        "MAE's released ViT-B file (tests/test_interop_stages.py fine-tunes from a .pth)",
        "livt_jax: error: config.bft.init_from='mae_pretrain_vit_base.pth': no such PyTorch "
        'checkpoint file'),
    '--config.evaluate.checkpoint=livt_vit_base.pth': (
        "an official LiVT file (tests/test_interop_stages.py evaluates a .pth)",
        "livt_jax: error: config.evaluate.checkpoint='livt_vit_base.pth': no such PyTorch "
        'checkpoint file'),
}


def code_lines(text: str) -> list[str]:
  """The lines of fenced (```) and indented (4+ spaces) code blocks, continuations joined."""
  lines, fenced, out = text.splitlines(), False, []
  for line in lines:
    if line.strip().startswith('```'):
      fenced = not fenced
      continue
    if fenced or line.startswith('    '):
      out.append(line.strip())
  joined = []
  for line in out:
    if joined and joined[-1].endswith('\\'):
      joined[-1] = joined[-1][:-1].rstrip() + ' ' + line
    else:
      joined.append(line)
  return joined


def commands(text: str) -> list[str]:
  """The `livt_jax.main` commands in a page's code blocks, as written (comments dropped)."""
  found = []
  for line in code_lines(text):
    for part in line.split('&&'):
      part = part.strip()
      if part.startswith(PREFIXES):
        found.append(' '.join(shlex.split(part, comments=True)))
  return found


def dry_run_args(command: str) -> list[str]:
  """What follows `-m livt_jax.main`, with --dry_run added and any --aot dropped."""
  words = shlex.split(command)
  args = words[words.index('livt_jax.main') + 1:]
  args = [a for a in args if not a.startswith('--aot=')]
  return args if '--dry_run' in args else args + ['--dry_run']


def _documented():
  out = []
  for page in PAGES:
    with open(page) as f:
      for command in commands(f.read()):
        out.append((os.path.relpath(page, ROOT), command))
  return out


DOCUMENTED = _documented()


def _allowed(command):
  """(why, expected error line or None) of the allowance that covers `command`, or None."""
  return next((entry for key, entry in ALLOWED.items() if key in command), None)


BAD = 'python -m livt_jax.main --config=configs/cifar10_lt.py --config.bft.nope=1'


@pytest.fixture(scope='module')
def results(tmp_path_factory):
  todo = [BAD] + sorted({c for _, c in DOCUMENTED
                         if not _allowed(c) or _allowed(c)[1] is not None})
  tmp = tmp_path_factory.mktemp('docs_commands')
  with open(tmp / 'in.json', 'w') as f:
    json.dump([dry_run_args(c) for c in todo], f)
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8',
             JAX_PLATFORMS='cpu', LIVT_MALLOC_TUNING='0')
  env.pop('JAX_NUM_CPU_DEVICES', None)
  r = subprocess.run([sys.executable, os.path.join(ROOT, 'tests', 'docs_commands_runner.py'),
                      str(tmp / 'in.json'), str(tmp / 'out.json')], cwd=ROOT, env=env,
                     capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  with open(tmp / 'out.json') as f:
    return dict(zip(todo, json.load(f)))


def test_the_pages_hold_the_commands_we_expect():
  # The scan finds README's run command and the data guide's per-dataset commands: a change in
  # how the pages write code blocks cannot silently leave everything unchecked.
  found = {page for page, _ in DOCUMENTED}
  assert {'README.md', 'docs/data.md', 'docs/getting_started.md'} <= found
  assert ('README.md', '.venv/bin/python -m livt_jax.main --config=configs/fashion_mnist_lt.py '
          '--workdir=runs/fmnist') in DOCUMENTED
  assert len(DOCUMENTED) >= 15


def test_every_allowance_is_used():
  for key in ALLOWED:
    assert any(key in c for _, c in DOCUMENTED), f'ALLOWED[{key!r}] matches no command: drop it'


@pytest.mark.parametrize('page, command', DOCUMENTED, ids=[f'{p}: {c[:90]}' for p, c in DOCUMENTED])
def test_documented_command_dry_runs(results, page, command):
  allowed = _allowed(command)
  if allowed and allowed[1] is None:
    return  # not runnable here at all (ALLOWED says why)
  r = results[command]
  if allowed:
    lines = [l for l in r['stderr'].splitlines() if l.startswith('livt_jax:')]
    assert r['code'] == 2 and lines and lines[0].startswith(allowed[1]), (page, command, r)
    return
  assert r['code'] == 0, f'{page}: {command}\n{r["stderr"][-2000:]}'
  assert r['stdout'].rstrip().endswith('dry run: the config is valid; nothing was trained.'), r


def test_the_scanner_reads_fences_continuations_and_chains():
  page = '\n'.join([
      'text python -m livt_jax.main --config=configs/x.py (prose is not a command)',
      '```bash',
      'python -m livt_jax.main --config=configs/a.py \\',
      '    --config.seed=1   # a comment',
      '```',
      '',
      '    bash launch/setup.sh && .venv/bin/python -m livt_jax.main --config=configs/b.py '
      '--aot=v5e:2x2',
  ])
  assert commands(page) == [
      'python -m livt_jax.main --config=configs/a.py --config.seed=1',
      '.venv/bin/python -m livt_jax.main --config=configs/b.py --aot=v5e:2x2']
  assert dry_run_args(commands(page)[1]) == ['--config=configs/b.py', '--dry_run']


def test_a_broken_command_fails_in_the_batch(results):
  # The check can fail: the batch starts with an override of a field that does not exist, which
  # must exit non-zero, and the documented commands after it in the same process still pass.
  r = results[BAD]
  assert r['code'] != 0 and 'nope' in r['stderr'], r
