"""A PyTorch checkpoint that cannot be used is one line through the command line (exit 2): a
truncated .pth or .safetensors names the file and the cause, a ViT of a size no variant has
names the size overrides that build it (and those do); `python -m livt_jax.interop.export`
prints only its own lines. No torch needed: the files are written by livt_jax.interop."""
import concurrent.futures
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from engine_helpers import tiny_config
from livt_jax.engine import run
from livt_jax import validate
from livt_jax.interop import torch_export
from livt_jax.interop import torch_files
from livt_jax.interop import torch_import
from livt_jax.interop import torch_save
from livt_jax.models import factory
from livt_jax.models import vit

ROOT = os.path.join(os.path.dirname(__file__), '..')
SHAPE = (28, 28, 1)  # Fashion-MNIST


def _numpy(tree):
  tree = jax.tree.map(lambda b: getattr(b, 'value', b), tree, is_leaf=lambda x: hasattr(x, 'value'))
  return jax.tree.map(np.asarray, jax.device_get(tree))


def _classifier_state_dict(**size):
  """A timm-layout state dict of a ViT (patch 7, gap, 10 classes) of `size`, random weights."""
  model = vit.ViT(patch_size=7, num_classes=10, pool='gap', **size)
  params = _numpy(factory.init_fn(model, SHAPE)(jax.random.key(0))['params'])
  return torch_export.classifier_state_dict(params, model, SHAPE)


def _cli(module_args, cwd_args=()):
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8',
             JAX_PLATFORMS='cpu', LIVT_MALLOC_TUNING='0')
  return subprocess.run([sys.executable, '-m', *module_args, *cwd_args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)


def _evaluate(checkpoint, workdir):
  return _cli(['livt_jax.main', '--config=configs/fashion_mnist_lt.py', f'--workdir={workdir}',
               '--config.stages=evaluate', f'--config.evaluate.checkpoint={checkpoint}'])


def _lines(stderr):
  return [l for l in stderr.splitlines() if l.strip() and not re.match(r'[IWEF]\d{4} ', l)]


@pytest.fixture(scope='module')
def files(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('files')
  mu = _classifier_state_dict(width=128, depth=6, num_heads=4)  # the config's ViT-mu
  out = {'depth4': tmp / 'depth4.pth', 'pth': tmp / 'cut.pth', 'st': tmp / 'cut.safetensors'}
  torch_save.save_pth(out['depth4'], _classifier_state_dict(width=128, depth=4, num_heads=2))
  torch_save.save_pth(out['pth'], mu)
  torch_save.save_safetensors(out['st'], mu, {'format': 'pt'})
  for key in ('pth', 'st'):
    data = out[key].read_bytes()
    out[key].write_bytes(data[:len(data) // 2])
  return {k: str(v) for k, v in out.items()}


def test_command_line_errors_are_one_line(files, tmp_path):
  expected = {
      'pth': f'livt_jax: error: {files["pth"]} is truncated: a torch.save zip archive of ',
      'st': f'livt_jax: error: {files["st"]} is truncated: tensor ',
      'depth4': (f'livt_jax: error: PyTorch checkpoint {files["depth4"]} holds a ViT (width 128, '
                 'depth 4) but the config asks for ViT-mu (width 128, depth 6); no ViT variant of '
                 "livt_jax has this size: set the variant's size overrides "
                 '--config.model.width=128 --config.model.depth=4 --config.model.heads=2 (a '
                 'state dict does not record the heads; ViTs use width / 64: check its source) '
                 'to use it'),
  }
  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    futures = {k: pool.submit(_evaluate, files[k], tmp_path / k) for k in expected}
    results = {k: f.result() for k, f in futures.items()}
  for key, start in expected.items():
    r = results[key]
    assert r.returncode == 2, (key, r.returncode, r.stderr[-3000:])
    lines = _lines(r.stderr)
    assert len(lines) == 1 and lines[0].startswith(start), (key, lines)
    if key == 'depth4':
      assert lines[0] == start
    assert 'legacy' not in lines[0] and 'reshape' not in lines[0]
  assert 'copy or download it again' in _lines(results['pth'].stderr)[0]
  assert 'copy or download it again' in _lines(results['st'].stderr)[0]


def test_not_a_torch_file_and_legacy_files(tmp_path):
  cases = {b'': 'is empty (0 bytes)', b'\x80\x02}q\x00.': 'is a torch file of the legacy format',
           b'hello world': "is not a PyTorch checkpoint: neither a torch.save zip archive nor "
                           "a legacy pickle (it starts with b'hello wo')"}
  for i, (data, message) in enumerate(cases.items()):
    path = tmp_path / f'{i}.pth'
    path.write_bytes(data)
    with pytest.raises(torch_files.TorchFileError, match=re.escape(message)):
      torch_files.load_state_dict(path)
  path = tmp_path / 'short.safetensors'
  path.write_bytes(b'\x10\x00')
  with pytest.raises(torch_files.TorchFileError, match='2 bytes, less than its 8-byte header'):
    torch_files.load_state_dict(path)


def test_the_size_overrides_named_in_the_message_load_the_checkpoint(files):
  config = tiny_config(**{'model.variant': 'mu', 'model.width': 128, 'model.depth': 4,
                          'model.heads': 2})
  validate.validate(config, 8, check_data=False)
  assert vit.config_size(config.model) == dict(width=128, depth=4, heads=2, mlp_ratio=4.0)
  model = factory.build_vit(config, num_classes=10)
  params = torch_import.load(files['depth4'], model, SHAPE, 'classifier')
  sd = torch_files.load_state_dict(files['depth4'])
  np.testing.assert_array_equal(params['encoder']['block_3']['mlp']['fc1']['kernel'],
                                sd['blocks.3.mlp.fc1.weight'].T)


@pytest.mark.parametrize('field, value, message', [
    ('model.depth', 0, 'config.model.depth=0: use a positive whole number'),
    ('model.heads', 3, 'config.model.width=128: must be divisible by the 3 heads'),
    ('model.width', 130, 'config.model.width=130: must be divisible by the 4 heads'),
    ('model.mlp_ratio', -1.0, 'config.model.mlp_ratio=-1.0: use a positive MLP width'),
])
def test_size_overrides_are_validated(field, value, message):
  config = tiny_config(**{'model.variant': 'mu', field: value})
  with pytest.raises(validate.ConfigError, match=re.escape(message)):
    validate.validate(config, 8, check_data=False)


def test_export_prints_only_its_own_lines(tmp_path):
  config = tiny_config(**{'stages': 'bft', 'max_steps': 1, 'checkpoint_every_steps': 1,
                          'bft.init_from': 'scratch'})
  validate.validate(config, jax.device_count())
  run.run(config, str(tmp_path / 'run'))
  out = tmp_path / 'vit.pth'
  r = _cli(['livt_jax.interop.export', f'--workdir={tmp_path / "run"}', f'--out={out}'])
  assert r.returncode == 0, r.stderr[-3000:]
  assert r.stderr == ''  # no absl INFO lines, no orbax warning
  assert r.stdout.startswith(f'livt_jax: wrote {out}: ') and len(r.stdout.splitlines()) == 2
  assert torch_files.load_state_dict(out).keys() == _classifier_state_dict(
      width=32, depth=2, num_heads=2).keys()
  r = _cli(['livt_jax.interop.export', f'--workdir={tmp_path / "run"}', f'--out={out}',
            '--step=7'])
  assert r.returncode == 2 and _lines(r.stderr) == [
      f'livt_jax: error: no step 7 in {tmp_path / "run" / "bft" / "checkpoints"}; it holds '
      'steps 1']
