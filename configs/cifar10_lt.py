"""LiVT on CIFAR-10-LT (10 classes, 32 px), imbalance factor chosen by the argument.

Run (imbalance 100, the default, or 10):
  python -m livt_jax.main --config=configs/cifar10_lt.py --workdir=runs/cifar10_lt_100
  python -m livt_jax.main --config=configs/cifar10_lt.py:imb=10 --workdir=runs/cifar10_lt_10
  (add --config.dataset.data_dir=/path/to/tensorflow_datasets holding TFDS `cifar10`)

Paper (Table 7, ViT-B with MGP on ImageNet-1K, Bal-BCE): top-1 gamma 100: 86.3, gamma 10: 91.3.
Here MGP runs on the long-tailed CIFAR data itself (LiVT's from-scratch setting), so expect
lower numbers than Table 7. 32 px images use patch 4 (64 tokens); Table 10 otherwise.

`recipe=official` (e.g. --config=configs/cifar10_lt.py:recipe=official,imb=10): the author's CIFAR
setting (LiVT issue #3; livt_jax/recipes.py): no MGP here; BFT at 64 px for 20 epochs (Bal-BCE
tau 1, layer decay 0.65, batch 2048) from an ImageNet-LT MGP ViT-B/16, which
--config.bft.init_from must name (an MGP run's WORKDIR/mgp/checkpoints or a .pth).
"""
from livt_jax import config_args
from livt_jax import config_defaults
from livt_jax import recipes


def get_config(arg=None):
  args = config_args.parse(arg, __file__, imb=100.0, recipe=('livt', 'official'))
  c = config_defaults.get_base_config()
  c.dataset.name = 'cifar10_lt'
  c.dataset.imbalance = args['imb']
  # A balanced val split of 20 images per class from the training images the LT rule left
  # unused (classes with fewer than 20 left over, the head first, keep n - 20), for the val
  # evaluator and best-on-val.
  c.dataset.val_per_class = 20
  c.model.patch_size = 4
  c.mgp.image_size = 32
  c.bft.image_size = 32
  c.mgp.batch_size = 1024  # 12.4K / 10.8K images: 4096 would be ~3 steps per epoch
  c.bft.batch_size = 256
  if args['recipe'] == 'official':
    recipes.cifar_official(c)
  return c
