"""PyTorch interop, proven on outputs: timm ViTs (Ti/S, 'avg' and 'token' pools) and an MAE
(models_mae.py layout, with decoder) with random weights are built, run and saved by
tests/torch_reference.py in .venv-torch (launch/setup.sh installs it); we import the files
without torch, run our models on the same images (and MAE noise), and compare to 1e-5.
Then we export, and timm/torch load the exports strictly and must give the same outputs.
"""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from livt_jax.engine.checkpointing import CheckpointMismatchError
from livt_jax.interop import torch_export
from livt_jax.interop import torch_files
from livt_jax.interop import torch_import
from livt_jax.interop import torch_save
from livt_jax.models import mae as mae_lib
from livt_jax.models import posemb
from livt_jax.models import vit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH_PYTHON = os.environ.get('LIVT_TORCH_PYTHON', os.path.join(ROOT, '.venv-torch', 'bin',
                                                                'python'))
ATOL = 1e-5  # float32; relative to the output scale where that exceeds 1 (see _assert_close)


def _torch(mode, out):
  assert os.path.exists(TORCH_PYTHON), (
      f'{TORCH_PYTHON} is missing: run `bash launch/setup.sh` (it installs torch + timm from '
      'requirements-benchmark.txt into .venv-torch)')
  subprocess.run([TORCH_PYTHON, os.path.join(ROOT, 'tests', 'torch_reference.py'), mode, out],
                 check=True, env={**os.environ, 'PYTHONPATH': ''}, timeout=300)


@pytest.fixture(scope='module')
def ref(tmp_path_factory):
  out = str(tmp_path_factory.mktemp('torch_ref'))
  _torch('make', out)
  spec = json.load(open(os.path.join(out, 'spec.json')))
  load = lambda name: np.load(os.path.join(out, f'{name}.npy'))
  images = load('images').transpose(0, 2, 3, 1)  # NCHW -> NHWC
  return dict(dir=out, spec=spec, load=load, images=images,
              shape=(spec['img'], spec['img'], 3))


def _vit(kw, patch, posemb_kind='learned'):
  return vit.ViT(width=kw['embed_dim'], depth=kw['depth'], num_heads=kw['num_heads'],
                 patch_size=patch, num_classes=kw['num_classes'],
                 pool='gap' if kw['global_pool'] == 'avg' else 'cls', posemb=posemb_kind)


def _mae(kw, patch):
  return mae_lib.MAE(width=kw['embed_dim'], depth=kw['depth'], num_heads=kw['num_heads'],
                     patch_size=patch, decoder_width=kw['decoder_embed_dim'],
                     decoder_depth=kw['decoder_depth'], decoder_heads=kw['decoder_num_heads'],
                     mask_ratio=kw['mask_ratio'], norm_pix_loss=True)


def _assert_close(got, want, what):
  got, want = np.asarray(got), np.asarray(want)
  diff = float(np.max(np.abs(got - want)))
  print(f'{what}: max |diff| {diff:.2e} (outputs up to {np.max(np.abs(want)):.2f})')
  assert diff <= ATOL * max(1.0, float(np.max(np.abs(want)))), (what, diff)


def _logits(model, params, images):
  return np.asarray(model.apply({'params': params}, images, train=False))


def _mae_run(model, params, images, noise, monkeypatch):
  # The torch side drew the noise; ours is drawn inside the model: hand it the same one.
  orig = mae_lib.random_masking
  monkeypatch.setattr(mae_lib, 'random_masking', lambda _, ratio: orig(noise, ratio))
  loss, out = model.apply({'params': params}, images, rngs={'mask': jax.random.key(0)})
  return float(loss), np.asarray(out['pred']), np.asarray(out['mask'])


@pytest.mark.parametrize('name,suffix', [('ti_gap', 'pth'), ('ti_gap', 'safetensors'),
                                         ('ti_cls', 'pth'), ('s_gap', 'pth')])
def test_timm_classifier_logits(ref, name, suffix):
  kw = ref['spec']['classifiers'][name]
  model = _vit(kw, ref['spec']['patch'])
  path = os.path.join(ref['dir'], f'{name}.{suffix}')
  params = torch_import.load(path, model, ref['shape'], 'classifier')
  want = ref['load'](f'{name}_logits')
  assert np.std(want) > 0.1  # the comparison means something: logits are not all ~0
  _assert_close(_logits(model, params, ref['images']), want, f'{name}.{suffix} logits')


def test_mae_loss_and_prediction(ref, monkeypatch):
  kw = ref['spec']['mae']
  model = _mae(kw, ref['spec']['patch'])
  params = torch_import.load(os.path.join(ref['dir'], 'mae.pth'), model, ref['shape'], 'mae')
  loss, pred, mask = _mae_run(model, params, ref['images'], ref['load']('mae_noise'), monkeypatch)
  np.testing.assert_array_equal(mask, ref['load']('mae_mask'))
  _assert_close(pred, ref['load']('mae_pred'), 'mae prediction')
  _assert_close(loss, ref['load']('mae_loss'), 'mae loss')


def test_mae_encoder_feeds_the_classifier(ref):
  """bft.init_from=mae.pth: the encoder arrives unchanged; the fixed sin-cos table is dropped
  (BFT keeps its own); head, decoder and mask token are not taken."""
  kw = dict(ref['spec']['mae'], num_classes=3, global_pool='avg')
  model = _vit(kw, ref['spec']['patch'], posemb_kind='fixed')
  model = model.clone(pretrain_grid=(4, 4))
  sd = torch_files.load_state_dict(os.path.join(ref['dir'], 'mae.pth'))
  enc = torch_import.load(os.path.join(ref['dir'], 'mae.pth'), model, ref['shape'], 'encoder')
  assert 'pos_embedding' not in enc
  np.testing.assert_array_equal(enc['block_3']['attn']['qkv']['kernel'],
                                sd['blocks.3.attn.qkv.weight'].T)
  np.testing.assert_array_equal(enc['encoder_norm']['scale'], sd['norm.weight'])
  with pytest.raises(CheckpointMismatchError, match=r'mgp.image_size=32'):
    torch_import.load(os.path.join(ref['dir'], 'mae.pth'), model.clone(pretrain_grid=(2, 2)),
                      ref['shape'], 'encoder')


def test_export_round_trip_and_timm_loads_it(ref, monkeypatch):
  """Ours -> timm/MAE files -> ours is exact; timm and torch load them strictly and match."""
  rng = np.random.default_rng(0)
  expected = {}
  for name, kw in ref['spec']['classifiers'].items():
    model = _vit(kw, ref['spec']['patch'])
    params = torch_import.load(os.path.join(ref['dir'], f'{name}.pth'), model, ref['shape'],
                               'classifier')
    # Our own parameters, not the imported ones: no zero class row or ones in any norm.
    params = jax.tree.map(lambda a: np.asarray(a) + rng.normal(0, 0.05, np.shape(a))
                          .astype(np.float32), params)
    sd = torch_export.classifier_state_dict(params, model, ref['shape'])
    torch_save.save_pth(os.path.join(ref['dir'], f'exported_{name}.pth'), sd)
    torch_save.save_safetensors(os.path.join(ref['dir'], f'exported_{name}.safetensors'), sd,
                                {'timm_kwargs': json.dumps(torch_export.timm_kwargs(
                                    model, ref['shape']))})
    back = torch_import.load(os.path.join(ref['dir'], f'exported_{name}.safetensors'), model,
                             ref['shape'], 'classifier')
    if model.pool == 'gap':  # timm has no place for our unused encoder_norm in 'avg' mode
      back['encoder']['encoder_norm'] = params['encoder']['encoder_norm']
    jax.tree.map(np.testing.assert_array_equal, back, params)
    expected[name] = _logits(model, params, ref['images'])
  mkw = ref['spec']['mae']
  mae = _mae(mkw, ref['spec']['patch'])
  mparams = torch_import.load(os.path.join(ref['dir'], 'mae.pth'), mae, ref['shape'], 'mae')
  mparams = jax.tree.map(lambda a: np.asarray(a) + np.float32(0.01), mparams)
  torch_save.save_pth(os.path.join(ref['dir'], 'exported_mae.pth'),
                      torch_export.mae_state_dict(mparams, mae, ref['shape']))
  back = torch_import.load(os.path.join(ref['dir'], 'exported_mae.pth'), mae, ref['shape'], 'mae')
  jax.tree.map(np.testing.assert_array_equal, back, mparams)
  mae_loss = _mae_run(mae, mparams, ref['images'], ref['load']('mae_noise'), monkeypatch)[0]

  _torch('check', ref['dir'])
  for name, want in expected.items():
    for suffix in ('pth', 'safetensors'):
      got = ref['load'](f'exported_{name}_{suffix}_logits')
      _assert_close(got, want, f'exported {name}.{suffix} in timm, logits')
  _assert_close(ref['load']('exported_mae_loss'), mae_loss, 'exported mae in torch, loss')


def test_grid_change_resizes_the_learned_table(ref):
  """A 4x4-grid checkpoint evaluated at 48 px (6x6): the table is resized bicubically; the
  class row still goes into the class token."""
  kw = ref['spec']['classifiers']['ti_gap']
  model = _vit(kw, ref['spec']['patch'])
  path = os.path.join(ref['dir'], 'ti_gap.pth')
  sd = torch_files.load_state_dict(path)
  params = torch_import.load(path, model, (48, 48, 3), 'classifier')
  table = sd['pos_embed'][0]
  np.testing.assert_array_equal(params['encoder']['pos_embedding'],
                                posemb.resize_bicubic(table[1:], 4, 4, 6, 6))
  np.testing.assert_array_equal(params['encoder']['cls_token'][0, 0],
                                sd['cls_token'][0, 0] + table[0])


@pytest.mark.parametrize('change,pattern', [
    (dict(width=384, num_heads=6), r'holds a ViT-Ti \(width 192, depth 12\) but the config asks '
                                   r'for ViT-S .*variant=Ti'),
    (dict(patch_size=16), r'8x8 patches .* 16x16; set --config.model.patch_size=8'),
    (dict(pool='cls'), r'pools with gap .* set --config.model.pool=gap'),
    (dict(num_classes=4), r'10-class head but the data has 4 classes'),
    (dict(posemb='fixed'), r'learned\) position table .* --config.model.posemb=learned'),
])
def test_mismatch_is_one_clear_line(ref, change, pattern):
  model = _vit(ref['spec']['classifiers']['ti_gap'], ref['spec']['patch']).clone(**change)
  with pytest.raises(CheckpointMismatchError, match=pattern) as err:
    torch_import.load(os.path.join(ref['dir'], 'ti_gap.pth'), model, ref['shape'], 'classifier')
  assert '\n' not in str(err.value)


def test_unknown_parameters_and_non_checkpoints_are_refused(ref, tmp_path):
  sd = torch_files.load_state_dict(os.path.join(ref['dir'], 'ti_gap.pth'))
  model = _vit(ref['spec']['classifiers']['ti_gap'], ref['spec']['patch'])
  torch_save.save_pth(tmp_path / 'ls.pth', {**sd, 'blocks.0.ls1.gamma': np.ones(192, np.float32)})
  with pytest.raises(CheckpointMismatchError, match=r'no place for: blocks.0.ls1.gamma'):
    torch_import.load(tmp_path / 'ls.pth', model, ref['shape'], 'classifier')
  (tmp_path / 'x.pth').write_bytes(b'\x80\x02}q\x00.')  # a legacy (non-zip) pickle
  with pytest.raises(torch_files.TorchFileError, match='legacy format'):
    torch_import.load(tmp_path / 'x.pth', model, ref['shape'], 'classifier')


if __name__ == '__main__':
  sys.exit(pytest.main([__file__, '-q', '-s']))
