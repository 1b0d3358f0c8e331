"""Config arguments (`--config=configs/NAME.py:key=value[,key=value]`): parsed or refused with
one line (exit 2 from the command line), and the variants they select: 384-px fine-tuning
(imagenet_lt, inat18) and the official CIFAR recipe (cifar10_lt / cifar100_lt), whose values
are those of the LiVT files cited in livt_jax/recipes.py, checked here number by number."""
import concurrent.futures
import os
import re
import subprocess
import sys

import pytest

from livt_jax import config_args
from livt_jax import validate
from test_config import load

ROOT = os.path.join(os.path.dirname(__file__), '..')


def test_parse_types_choices_and_defaults():
  spec = dict(imb=100.0, res=(224, 384), recipe=('livt', 'official'))
  assert config_args.parse(None, 'x.py', **spec) == dict(imb=100.0, res=224, recipe='livt')
  assert config_args.parse('', 'x.py', **spec) == dict(imb=100.0, res=224, recipe='livt')
  assert config_args.parse(' res=384 , imb=10', 'x.py', **spec) == dict(imb=10.0, res=384,
                                                                         recipe='livt')


@pytest.mark.parametrize('arg, problem', [
    ('gamma=10', "unknown key 'gamma'"),
    ('imb', "'imb' is not key=value"),
    ('=10', "'=10' is not key=value"),
    ('imb=ten', "imb='ten' is not a float"),
    ('imb=10,imb=20', 'imb is given twice'),
    ('res=300', "res='300': use one of 224, 384"),
])
def test_bad_arguments_name_the_file_the_problem_and_the_syntax(arg, problem):
  with pytest.raises(config_args.ConfigArgError) as e:
    config_args.parse(arg, '/a/configs/x.py', imb=100.0, res=(224, 384))
  assert str(e.value) == (f'--config=configs/x.py:{arg}: {problem}; configs/x.py takes '
                          'key=value[,key=value] with imb=<float, default 100>, res=224|384')


@pytest.mark.parametrize('name', ['fashion_mnist_lt', 'places_lt'])
def test_a_config_without_arguments_refuses_one(name):
  load(name)
  with pytest.raises(config_args.ConfigArgError, match=f'configs/{name}.py takes no argument'):
    load(name, 'res=384')


def test_384_variants_follow_liVT_args():
  # exp/finetune/ImageNet-LT/vit_base_384/args.txt: input 384, blr 5e-4, layer decay 0.65,
  # effective batch 32 x 16 x 2 = 1024; MGP stays at 224 px.
  base, hi = load('imagenet_lt'), load('imagenet_lt', 'res=384')
  assert (hi.bft.image_size, hi.bft.base_lr, hi.bft.layer_decay, hi.bft.batch_size) == (
      384, 5e-4, 0.65, 32 * 16 * 2)
  assert hi.mgp.image_size == 224 and base.bft.image_size == 224
  changed = {k for k in base.bft.keys() if base.bft[k] != hi.bft[k]}
  assert changed == {'image_size', 'base_lr', 'layer_decay'}
  # exp/finetune/iNat18/vit_base_384/args.txt: only the input size differs from 224 px here.
  base, hi = load('inat18'), load('inat18', 'res=384')
  assert {k for k in base.bft.keys() if base.bft[k] != hi.bft[k]} == {'image_size'}
  assert (hi.bft.image_size, hi.mgp.image_size, hi.bft.drop_path) == (384, 128, 0.2)
  assert load('imagenet_lt', 'res=224').to_dict() == load('imagenet_lt').to_dict()


def test_official_cifar_recipe_is_the_authors_setting():
  # XuZhengzhuo/LiVT issue #3: epochs 20, batch 64 x accum_iter 8 x 4 GPUs, blr 1e-3, min_lr
  # 1e-6, warmup 5, layer_decay 0.65, adamW2 0.999, input 64, drop_path 0.1, Bal_BCE tau 1,
  # smoothing 0.1, mixup 0.8 / cutmix 1.0 / prob 1 / switch 0.5, reprob 0.25, rand-m9-mstd0.5,
  # vit_base_patch16 from the ImageNet-LT 224 px pre-training.
  for name in ('cifar10_lt', 'cifar100_lt'):
    c = load(name, 'recipe=official,imb=10')
    b = c.bft
    assert c.dataset.imbalance == 10 and c.stages == 'bft,evaluate'
    assert (c.model.variant, c.model.patch_size, c.mgp.image_size) == ('B', 16, 224)
    assert (b.epochs, b.batch_size, b.base_lr, b.min_lr, b.warmup_epochs, b.layer_decay, b.b2,
            b.image_size, b.drop_path) == (20, 64 * 8 * 4, 1e-3, 1e-6, 5, 0.65, 0.999, 64, 0.1)
    assert (b.loss, b.tau, b.label_smoothing) == ('bal_bce', 1.0, 0.1)
    assert (b.mixup_alpha, b.cutmix_alpha, b.mix_prob, b.mix_switch_prob) == (0.8, 1.0, 1.0, 0.5)
    assert (b.random_erase_prob, b.randaug_magnitude, b.randaug_magnitude_std) == (0.25, 9, 0.5)
    # Without the pre-trained encoder the recipe does not start.
    with pytest.raises(validate.ConfigError, match=r'config.bft.init_from=None: this recipe '
                       r'fine-tunes an ImageNet-LT MGP checkpoint'):
      validate.validate(c, 8, check_data=False)
    c.bft.init_from = 'scratch'  # asked for explicitly: allowed
    validate.validate(c, 8, check_data=False)
    assert load(name).stages == 'mgp,bft,evaluate'  # the default recipe is unchanged


# ------------------------------------------------------------------ the real command line

def _run(args):
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8',
             JAX_PLATFORMS='cpu', LIVT_MALLOC_TUNING='0')
  return subprocess.run([sys.executable, '-m', 'livt_jax.main', *args, '--dry_run'], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=300)


def _errors(stderr):
  return [l for l in stderr.splitlines() if l.strip() and not re.match(r'[IWEF]\d{4} ', l)]


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  pth = tmp_path_factory.mktemp('mgp') / 'imagenet_lt_mgp.pth'
  pth.write_bytes(b'')  # the dry run checks that the file is there, not what it holds
  commands = {
      'imagenet_lt 384': ['--config=configs/imagenet_lt.py:res=384'],
      'inat18 384': ['--config=configs/inat18.py:res=384'],
      'cifar official': ['--config=configs/cifar100_lt.py:recipe=official',
                         f'--config.bft.init_from={pth}'],
      'cifar official, no init_from': ['--config=configs/cifar100_lt.py:recipe=official'],
      'unknown key': ['--config=configs/imagenet_lt.py:resolution=384'],
      'no argument taken': ['--config=configs/places_lt.py:res=384'],
  }
  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    futures = {name: pool.submit(_run, args) for name, args in commands.items()}
    return {name: f.result() for name, f in futures.items()}


@pytest.mark.parametrize('name, bft_line, grid', [
    ('imagenet_lt 384', 'bft: 384px, 100 epochs = 11300 steps (113/epoch, warmup 1130), global '
                        'batch 1024 (128/device), lr 0.0005 x 1024/256 = 0.002', (14, 24)),
    ('inat18 384', 'bft: 384px, 100 epochs = 42700 steps (427/epoch, warmup 4270), global '
                   'batch 1024 (128/device), lr 0.001 x 1024/256 = 0.004', (8, 24)),
    # CIFAR-100-LT (imbalance 100) keeps 10,847 images less 20 per class for val: 10,827 // 2048.
    ('cifar official', 'bft: 64px, 20 epochs = 100 steps (5/epoch, warmup 25), global batch 2048 '
                       '(256/device), lr 0.001 x 2048/256 = 0.008', (14, 4)),
])
def test_variant_dry_runs(runs, name, bft_line, grid):
  r = runs[name]
  assert r.returncode == 0, r.stderr[-2000:]
  assert bft_line in r.stdout, r.stdout
  assert f"position table: MGP's {grid[0]}x{grid[0]} grid" in r.stdout
  assert f'resized to {grid[1]}x{grid[1]} for BFT (torch bicubic' in r.stdout
  assert ('mgp:' in r.stdout) == (name != 'cifar official')
  assert 'layer decay 0.65' in r.stdout or name == 'inat18 384'


@pytest.mark.parametrize('name, line', [
    ('cifar official, no init_from', 'livt_jax: error: config.bft.init_from=None: this recipe '
     'fine-tunes an ImageNet-LT MGP checkpoint of ViT-B/16 at 224 px: set '
     "--config.bft.init_from to it (an MGP run's WORKDIR/mgp/checkpoints or a PyTorch "
     '.pth/.safetensors)'),
    ('unknown key', "livt_jax: error: --config=configs/imagenet_lt.py:resolution=384: unknown key "
     "'resolution'; configs/imagenet_lt.py takes key=value[,key=value] with res=224|384"),
    ('no argument taken', 'livt_jax: error: --config=configs/places_lt.py:res=384: '
     "configs/places_lt.py takes no argument; drop the ':res=384'"),
])
def test_bad_argument_is_one_line_and_exit_2(runs, name, line):
  r = runs[name]
  assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
  assert _errors(r.stderr) == [line] and r.stdout == ''
