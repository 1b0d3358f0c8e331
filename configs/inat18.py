"""LiVT on iNaturalist 2018 (8142 classes, 437.5K training images), ViT-B/16.

Run:
  python -m livt_jax.main --config=configs/inat18.py --workdir=runs/inat18 \
    --config.dataset.data_dir=/path/to/tensorflow_datasets

Paper (Table 3, ViT-B/16, 224 px): top-1 76.1 (Many 78.9 / Medium 76.5 / Few 74.8).
Table 10: MGP at 128 px, BFT at 224 px, drop path 0.2. BFT's position table is MGP's 8x8
sin-cos table resized bicubically to 14x14 (as MAE/LiVT fine-tuning); `--config.model.posemb=
learned` also trains it, as their timm ViT does.

`res=384` (--config=configs/inat18.py:res=384): BFT at 384 px from the same 128 px MGP (paper:
81.0 top-1), the table resized 8x8 -> 24x24; nothing else changes against 224 px in LiVT's
exp/finetune/iNat18/vit_base_384/args.txt; evaluated on the image resized to 384 and
centre-cropped (no margin, as LiVT above 224 px). livt_jax/recipes.py.
"""
from livt_jax import config_args
from livt_jax import config_defaults
from livt_jax import recipes


def get_config(arg=None):
  args = config_args.parse(arg, __file__, res=(224, 384))
  c = config_defaults.get_base_config()
  c.dataset.name = 'inat18'
  c.mgp.image_size = 128
  c.bft.drop_path = 0.2
  if args['res'] == 384:
    recipes.fine_tune_at_384(c)
  return c
