"""LiVT on ImageNet-LT (1000 classes, 115.8K training images), ViT-B/16 at 224 px.

Run:
  python -m livt_jax.main --config=configs/imagenet_lt.py --workdir=runs/imagenet_lt \
    --config.dataset.data_dir=/path/to/tensorflow_datasets

Paper (Table 2, ViT-B/16, 224 px): top-1 60.9 (Many 73.6 / Medium 56.4 / Few 41.0).
BFT is evaluated on ImageNet-LT's 20k validation split every 10 epochs (config.evals.val); the
report gives the test metrics of the final model and of the best-on-val one, labelled. Nothing
is selected on the test set.
Hyper-parameters: Table 10, ImageNet-LT column (the shared defaults).
"""
from livt_jax import config_defaults


def get_config(arg=None):
  del arg
  c = config_defaults.get_base_config()
  c.dataset.name = 'imagenet_lt'
  return c
