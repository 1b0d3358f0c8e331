"""PyTorch files through the run: BFT from an MAE .pth (`bft.init_from`), then its checkpoint
exported (`python -m livt_jax.interop.export`) and evaluated from the .pth alone
(`evaluate.checkpoint`): the same metrics as the run's own evaluation. No torch needed: the
files are written by livt_jax.interop (tests/test_interop_torch.py proves them against torch).
"""
import jax
import numpy as np

from engine_helpers import tiny_config
from livt_jax.engine import run
from livt_jax.engine import train
from livt_jax import validate
from livt_jax.interop import export
from livt_jax.interop import torch_export
from livt_jax.interop import torch_files
from livt_jax.interop import torch_save
from livt_jax.models import factory


def test_bft_from_mae_pth_then_evaluate_the_exported_pth(tmp_path, monkeypatch):
  config = tiny_config(**{'stages': 'bft,evaluate', 'max_steps': 2,
                          'checkpoint_every_steps': 2})
  # An MAE of the config's size with random weights, as facebookresearch/mae would save it.
  mae = factory.build_mae(config)
  shape = (config.mgp.image_size, config.mgp.image_size, 1)
  mae_params = jax.device_get(factory.init_fn(mae, shape)(jax.random.key(3))['params'])
  mae_params = jax.tree.map(np.asarray, jax.tree.map(lambda b: getattr(b, 'value', b), mae_params,
                                                     is_leaf=lambda x: hasattr(x, 'value')))
  mae_file = str(tmp_path / 'mae_pretrain.pth')
  torch_save.save_pth(mae_file, torch_export.mae_state_dict(mae_params, mae, shape))

  seen, real_build = [], train.build_stage

  def build(cfg, name, *args, **kwargs):
    stage = real_build(cfg, name, *args, **kwargs)
    init = stage.init_state
    stage.init_state = lambda rng, enc: seen.append(enc) or init(rng, enc)
    return stage
  monkeypatch.setattr(train, 'build_stage', build)

  config.bft.init_from = mae_file
  validate.validate(config, jax.device_count())
  trained = run.run(config, str(tmp_path / 'a'))
  (encoder,) = seen
  sd = torch_files.load_state_dict(mae_file)
  np.testing.assert_array_equal(encoder['block_1']['mlp']['fc2']['kernel'],
                                sd['blocks.1.mlp.fc2.weight'].T)
  jax.tree.map(np.testing.assert_array_equal, encoder, mae_params['encoder'])

  out = str(tmp_path / 'livt.pth')
  export.export(tmp_path / 'a', 'bft', out)
  config = tiny_config(**{'stages': 'evaluate', 'evaluate.checkpoint': out})
  validate.validate(config, jax.device_count())
  again = run.run(config, str(tmp_path / 'b'))
  for key in ('top1', 'many', 'medium', 'few', 'ece', 'mce'):
    assert again[key] == trained[key], key
