"""`python -m livt_jax.main --dry_run` for every config, an image folder and bad overrides.

Each run is the real command line in its own process (8 simulated CPU devices); all of them
start together in a module fixture, a few at a time, so the imports overlap. The printed plan
is checked against numbers worked out here: the published long-tailed training set sizes,
steps per epoch from the config's batch and epochs, and parameter counts from the ViT / MAE
layer shapes.
"""
import concurrent.futures
import os
import re
import subprocess
import sys

import pytest

from tests.fakes import image_folder_fakes

ROOT = os.path.join(os.path.dirname(__file__), '..')
DEVICES = 8
VARIANTS = {'B': (768, 12, 12), 'S': (384, 12, 6), 'mu': (128, 6, 4), 'nano': (32, 2, 2)}

# Published LT training set sizes (CIFAR-LT: Cao et al. 2019; ImageNet-LT / Places-LT: Liu et al.
# 2019; iNaturalist 2018) and the config values that set the schedules (Table 10 and the
# config files): (image size, epochs, warmup epochs, global batch, base lr) per stage.
PAPER_MGP = (224, 800, 40, 4096, 1.5e-4)
PAPER_BFT = (224, 100, 10, 1024, 1e-3)
CIFAR_MGP = (32, 800, 40, 1024, 1.5e-4)
CIFAR_BFT = (32, 100, 10, 256, 1e-3)
EXPECTED = {
    # name: (dataset, classes, num_train, imbalance, variant, patch, channels, mgp, bft);
    # num_train after the validation hold-out (100 per class Fashion-MNIST, 20 CIFAR).
    'fashion_mnist_lt': ('fashion_mnist_lt', 10, 14_786, 100, 'mu', 7, 1,
                         (28, 16, 1, 128, 2e-3), (28, 16, 1, 128, 2e-3)),
    'cifar10_lt': ('cifar10_lt', 10, 12_386, 100, 'B', 4, 3, CIFAR_MGP, CIFAR_BFT),
    'cifar10_lt:imb=10': ('cifar10_lt', 10, 20_411, 10, 'B', 4, 3, CIFAR_MGP, CIFAR_BFT),
    'cifar100_lt': ('cifar100_lt', 100, 10_827, 100, 'B', 4, 3, CIFAR_MGP, CIFAR_BFT),
    'cifar100_lt:imb=10': ('cifar100_lt', 100, 19_545, 10, 'B', 4, 3, CIFAR_MGP, CIFAR_BFT),
    'imagenet_lt': ('imagenet_lt', 1000, 115_846, None, 'B', 16, 3, PAPER_MGP, PAPER_BFT),
    'inat18': ('inat18', 8142, 437_513, None, 'B', 16, 3, (128,) + PAPER_MGP[1:], PAPER_BFT),
    'places_lt': ('places_lt', 365, 62_500, None, 'B', 16, 3, PAPER_MGP,
                  (224, 30, 5, 1024, 1e-3)),
}
CONFIG_FILES = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, 'configs'))
                      if f.endswith('.py') and not f.startswith('_'))


def _config_flag(name):
  base, _, arg = name.partition(':')
  return f'--config=configs/{base}.py' + (f':{arg}' if arg else '')


def _run(args, xla_flags=f'--xla_force_host_platform_device_count={DEVICES}'):
  env = dict(os.environ, XLA_FLAGS=xla_flags, JAX_PLATFORMS='cpu', LIVT_MALLOC_TUNING='0')
  env.pop('JAX_NUM_CPU_DEVICES', None)
  return subprocess.run([sys.executable, '-m', 'livt_jax.main', *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)


IMAGE_FOLDER_TRAIN = {'ant': 7, 'bee': 5, 'cat': 4}  # 16 images, 3 classes


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  folder = str(tmp_path_factory.mktemp('image_folder'))
  image_folder_fakes.write_image_folder(
      folder, {'train': IMAGE_FOLDER_TRAIN, 'test': {'ant': 1, 'bee': 1, 'cat': 1}})
  commands = {name: [_config_flag(name), '--dry_run'] for name in EXPECTED}
  commands.update({
      'inat18 overridden': ['--config=configs/inat18.py', '--dry_run', '--config.bft.tau=1.5',
                            '--config.model.variant=S'],
      'image_folder': ['--config=configs/cifar10_lt.py', '--dry_run',
                       '--config.dataset.name=image_folder', f'--config.dataset.data_dir={folder}',
                       # cifar10_lt's 20 per class would be held out of train/ (4-7 images)
                       '--config.dataset.val_per_class=0',
                       '--config.model.variant=nano', '--config.mgp.batch_size=8',
                       '--config.bft.batch_size=8'],
      'bad loss': ['--config=configs/cifar10_lt.py', '--dry_run', '--config.bft.loss=nope'],
      'bad mask ratio': ['--config=configs/places_lt.py', '--dry_run',
                         '--config.mgp.mask_ratio=1.2'],
      'bad config argument': ['--config=configs/cifar10_lt.py:gamma=10', '--dry_run'],
      'bad cpu devices': ['--config=configs/cifar10_lt.py', '--dry_run',
                          '--config.cpu_devices=-1'],
  })
  # No device count in XLA_FLAGS: config.cpu_devices decides.
  fashion = ['--config=configs/fashion_mnist_lt.py', '--dry_run']
  own_count = {'fashion_mnist_lt cpu_devices': fashion,
               'fashion_mnist_lt cpu_devices=0': fashion + ['--config.cpu_devices=0']}
  with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
    futures = {name: pool.submit(_run, args) for name, args in commands.items()}
    futures.update({name: pool.submit(_run, args, xla_flags='')
                    for name, args in own_count.items()})
    return {name: f.result() for name, f in futures.items()}


def vit_params(variant, patch, channels, classes):
  """Parameters of the ViT classifier ('gap' pooling, fixed sin-cos position embedding)."""
  d, depth, _ = VARIANTS[variant]
  block = 12 * d * d + 13 * d  # qkv 3d^2+3d, proj d^2+d, fc1 4d^2+4d, fc2 4d^2+d, 2 norms 4d
  encoder = patch * patch * channels * d + d + d + depth * block + 2 * d  # +cls, +norm
  return encoder + 2 * d + d * classes + classes  # fc_norm, head


def mae_params(variant, patch, channels, dec_width=512, dec_depth=8):
  d, depth, _ = VARIANTS[variant]
  encoder = patch * patch * channels * d + d + d + depth * (12 * d * d + 13 * d) + 2 * d
  w, out = dec_width, patch * patch * channels
  decoder = (d * w + w + w + dec_depth * (12 * w * w + 13 * w) + 2 * w  # embed, mask token
             + w * out + out)  # blocks, norm, pred
  return encoder + decoder


STAGE_LINE = re.compile(
    r'^(?P<stage>mgp|bft): (?P<px>\d+)px, (?P<epochs>[\d.]+) epochs = (?P<total>\d+) steps '
    r'\((?P<per_epoch>\d+)/epoch, warmup (?P<warmup>\d+)\), global batch (?P<batch>\d+) '
    r'\((?P<per_device>\d+)/device\), lr (?P<base_lr>[\d.e+-]+) x \d+/256 = (?P<lr>[\d.e+-]+) .*'
    r'(?:MAE|ViT) parameters (?P<params>[\d,]+)$', re.M)


def _stages(stdout):
  return {m['stage']: m for m in STAGE_LINE.finditer(stdout)}


def _check_stage(m, num_train, image_size, epochs, warmup_epochs, batch, base_lr):
  per_epoch = num_train // batch  # the remainder batch is dropped
  assert int(m['px']) == image_size
  assert float(m['epochs']) == epochs
  assert int(m['per_epoch']) == per_epoch
  assert int(m['total']) == round(epochs * per_epoch)
  assert int(m['warmup']) == round(warmup_epochs * per_epoch)
  assert int(m['batch']) == batch and int(m['per_device']) == batch // DEVICES
  assert float(m['base_lr']) == pytest.approx(base_lr)
  assert float(m['lr']) == pytest.approx(base_lr * batch / 256, rel=1e-3)


def test_every_config_file_is_covered():
  assert CONFIG_FILES == sorted(n for n in EXPECTED if ':' not in n)


@pytest.mark.parametrize('name', list(EXPECTED))
def test_dry_run_plan(runs, name):
  r = runs[name]
  assert r.returncode == 0, r.stderr[-2000:]
  (dataset, classes, num_train, imbalance, variant, patch, channels, mgp, bft) = EXPECTED[name]
  out = r.stdout
  assert out.startswith('stages: mgp, bft, evaluate\n')
  # The embedded default multiplies in bf16 on CPUs (its config); the others resolve 'auto'.
  precision = ('bf16_matmul (bf16_matmul)' if name == 'fashion_mnist_lt' else 'float32 (auto)')
  assert f'devices: {DEVICES} (mesh data={DEVICES} x fsdp=1), precision {precision}' in out
  line = f'dataset: {dataset}, {classes} classes, {num_train} training images'
  if imbalance:
    line += f' (imbalance {imbalance})'
  assert line in out, out
  width, depth, heads = VARIANTS[variant]
  assert (f'model: ViT-{variant} (width {width}, depth {depth}, heads {heads}), patch {patch}, '
          'pool gap') in out
  stages = _stages(out)
  assert set(stages) == {'mgp', 'bft'}, out
  _check_stage(stages['mgp'], num_train, *mgp)
  _check_stage(stages['bft'], num_train, *bft)
  dec = (96, 2) if variant == 'mu' else (512, 8)
  assert int(stages['mgp']['params'].replace(',', '')) == mae_params(variant, patch, channels,
                                                                     *dec)
  assert int(stages['bft']['params'].replace(',', '')) == vit_params(variant, patch, channels,
                                                                     classes)
  assert out.rstrip().endswith('dry run: the config is valid; nothing was trained.')


def test_imbalance_10_plans_a_bigger_training_set(runs):
  for base in ('cifar10_lt', 'cifar100_lt'):
    at100, at10 = _stages(runs[base].stdout), _stages(runs[f'{base}:imb=10'].stdout)
    assert int(at10['bft']['per_epoch']) > int(at100['bft']['per_epoch'])
    assert '(imbalance 10)' in runs[f'{base}:imb=10'].stdout
    assert '(imbalance 100)' in runs[base].stdout


def test_dry_run_with_overrides(runs):
  r = runs['inat18 overridden']
  assert r.returncode == 0, r.stderr[-2000:]
  assert 'model: ViT-S (width 384, depth 12, heads 6), patch 16' in r.stdout
  assert 'loss bal_bce (tau 1.5, bias paper)' in r.stdout and 'drop path 0.2' in r.stdout
  stages = _stages(r.stdout)
  assert int(stages['bft']['params'].replace(',', '')) == vit_params('S', 16, 3, 8142)
  _check_stage(stages['mgp'], 437_513, 128, 800, 40, 4096, 1.5e-4)
  assert 'not there yet' in r.stdout  # no iNat18 on this machine: the dry run still works


def test_dry_run_of_an_image_folder_reads_its_size(runs):
  r = runs['image_folder']
  assert r.returncode == 0, r.stderr[-2000:]
  num_train = sum(IMAGE_FOLDER_TRAIN.values())
  assert f'dataset: image_folder, 3 classes, {num_train} training images' in r.stdout
  assert 'data present' in r.stdout
  stages = _stages(r.stdout)
  _check_stage(stages['mgp'], num_train, 32, 800, 40, 8, 1.5e-4)  # 2 steps per epoch
  _check_stage(stages['bft'], num_train, 32, 100, 10, 8, 1e-3)
  assert int(stages['bft']['params'].replace(',', '')) == vit_params('nano', 4, 3, 3)


def _message_lines(stderr):
  """stderr without absl/XLA log lines (e.g. 'W0101 12:00:00.0 ...')."""
  return [l for l in stderr.splitlines() if l.strip() and not re.match(r'[IWEF]\d{4} ', l)]


def test_cpu_devices_splits_the_cpu_unless_xla_flags_set_a_count(runs):
  # The embedded default asks for 2 CPU devices; 0 keeps JAX's one; an explicit
  # --xla_force_host_platform_device_count (the other runs here: 8) wins over the config.
  assert 'devices: 2 (mesh data=2 x fsdp=1)' in runs['fashion_mnist_lt cpu_devices'].stdout
  assert 'devices: 1 (mesh data=1 x fsdp=1)' in runs['fashion_mnist_lt cpu_devices=0'].stdout
  assert f'devices: {DEVICES} (mesh' in runs['fashion_mnist_lt'].stdout


@pytest.mark.parametrize('name, message', [
    ('bad loss', "livt_jax: error: config.bft.loss='nope': use one of ce, bal_ce, bce, bal_bce, "
                 'cb_ce, cb_bce, focal, ldam_drw, lade, ib, nt_bce, bal_nt_bce'),
    ('bad cpu devices', "livt_jax: error: config.cpu_devices=-1: use 0 (JAX's default, one CPU "
                        'device) or the number of CPU devices to make, e.g. the number of cores'),
    ('bad mask ratio', 'livt_jax: error: config.mgp.mask_ratio=1.2: use a ratio strictly '
                       'between 0 and 1, e.g. 0.75'),
])
def test_bad_value_exits_2_with_one_clear_line(runs, name, message):
  r = runs[name]
  assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
  assert _message_lines(r.stderr) == [message]
  assert r.stdout == ''  # no plan


def test_bad_config_argument_is_refused(runs):
  r = runs['bad config argument']  # more cases: test_config_args.py
  assert r.returncode == 2 and r.stdout == ''
  assert _message_lines(r.stderr) == [
      "livt_jax: error: --config=configs/cifar10_lt.py:gamma=10: unknown key 'gamma'; "
      'configs/cifar10_lt.py takes key=value[,key=value] with imb=<float, default 100>, '
      'recipe=livt|official']
