"""LiVT on Places-LT (365 classes, 62.5K training images), ViT-B/16 at 224 px.

Run:
  python -m livt_jax.main --config=configs/places_lt.py --workdir=runs/places_lt \
    --config.dataset.data_dir=/path/to/tensorflow_datasets \
    --config.dataset.split_dir=/path/to/Places_LT_txt_files

Paper (Table 4, ViT-B/16, 224 px): top-1 40.8 (Many 48.1 / Medium 40.6 / Few 27.5).
Table 10: tau 1.05, 30 BFT epochs with 5 warmup epochs (a small dataset: avoid over-fitting).
"""
from livt_jax import config_args
from livt_jax import config_defaults


def get_config(arg=None):
  config_args.parse(arg, __file__)  # takes none: refuses any
  c = config_defaults.get_base_config()
  c.dataset.name = 'places_lt'
  c.bft.tau = 1.05
  c.bft.epochs = 30
  c.bft.warmup_epochs = 5
  return c
