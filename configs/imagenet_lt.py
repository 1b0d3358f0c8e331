"""LiVT on ImageNet-LT (1000 classes, 115.8K training images), ViT-B/16 at 224 px.

Run:
  python -m livt_jax.main --config=configs/imagenet_lt.py --workdir=runs/imagenet_lt \
    --config.dataset.data_dir=/path/to/tensorflow_datasets

Paper (Table 2, ViT-B/16, 224 px): top-1 60.9 (Many 73.6 / Medium 56.4 / Few 41.0).
BFT is evaluated on ImageNet-LT's 20k validation split every 10 epochs (config.evals.val); the
report gives the test metrics of the final model and of the best-on-val one, labelled. Nothing
is selected on the test set.
Hyper-parameters: Table 10, ImageNet-LT column (the shared defaults).

`res=384` (--config=configs/imagenet_lt.py:res=384): BFT at 384 px from the 224 px MGP (paper:
63.8 top-1), its position table resized 14x14 -> 24x24; base lr 5e-4 and layer decay 0.65 as
LiVT's exp/finetune/ImageNet-LT/vit_base_384/args.txt; evaluated on the image resized to 384
and centre-cropped (no margin, as LiVT above 224 px). livt_jax/recipes.py.
"""
from livt_jax import config_args
from livt_jax import config_defaults
from livt_jax import recipes


def get_config(arg=None):
  args = config_args.parse(arg, __file__, res=(224, 384))
  c = config_defaults.get_base_config()
  c.dataset.name = 'imagenet_lt'
  if args['res'] == 384:
    recipes.fine_tune_at_384(c, base_lr=5e-4, layer_decay=0.65)
  return c
