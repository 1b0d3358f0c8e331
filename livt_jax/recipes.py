"""Recipe variants that config files select by their argument (livt_jax/config_args.py).

Each one is transcribed from the official LiVT code (github.com/XuZhengzhuo/LiVT); the values
not named here stay those of the config file (the paper's Table 10).
"""
# LiVT's eval transform (util/datasets.py, build_transform) resizes the shorter side to
# input_size / crop_pct and centre-crops input_size, crop_pct = 224/256 up to 224 px and 1.0
# above: at 384 px the whole resized image is kept. livt_jax.data.augment.eval_transform does
# the same from bft.image_size, so the 384 variants only set that.
RES_384 = 384


def fine_tune_at_384(c, base_lr=None, layer_decay=None):
  """BFT at 384 px from the MGP encoder of the config's resolution (its sin-cos position table
  resized to the 24x24 grid with torch's bicubic, as LiVT's interpolate_pos_embed).

  LiVT's exp/finetune/{ImageNet-LT,iNat18}/vit_base_384/args.txt against vit_base_224: the
  same effective batch 1024 (32 x 16 accumulation x 2 GPUs); ImageNet-LT lowers blr 1e-3 ->
  5e-4 and layer decay 0.75 -> 0.65 (pass them); iNat18 changes nothing else (its drop path
  0.2 is the config's already).
  """
  c.bft.image_size = RES_384
  if base_lr is not None:
    c.bft.base_lr = base_lr
  if layer_decay is not None:
    c.bft.layer_decay = layer_decay
  return c


# The author's CIFAR setting (XuZhengzhuo/LiVT issue #3, "cifar10 configuration", for
# CIFAR-10-LT imbalance 10): fine-tune the ImageNet-LT MGP ViT-B/16 (224 px) at 64 px.
CIFAR_OFFICIAL = dict(
    epochs=20, warmup_epochs=5,
    batch_size=2048,        # 64 per GPU x accum_iter 8 x 4 GPUs ('0,1,2,3')
    base_lr=1e-3, min_lr=1e-6, weight_decay=0.05, b2=0.999, layer_decay=0.65,
    image_size=64, drop_path=0.1,
    loss='bal_bce', tau=1.0, label_smoothing=0.1,
    mixup_alpha=0.8, cutmix_alpha=1.0, mix_prob=1.0, mix_switch_prob=0.5,
    randaug_num_ops=2, randaug_magnitude=9, randaug_magnitude_std=0.5,  # rand-m9-mstd0.5-inc1
    random_erase_prob=0.25)


def cifar_official(c):
  """BFT only, from an ImageNet-LT MGP checkpoint (bft.init_from is required), as CIFAR_OFFICIAL.

  The encoder is ViT-B/16 pre-trained at 224 px: its 14x14 table is resized to the 4x4 grid of
  64 px. One difference stays: LiVT's eval transform resizes a 32 px CIFAR image to 73 px and
  centre-crops 64 (crop_pct 224/256 at <= 224 px); eval_transform resizes small images
  straight to 64.
  """
  c.stages = 'bft,evaluate'
  c.model.variant = 'B'
  c.model.patch_size = 16
  c.mgp.image_size = 224  # the checkpoint's pre-training resolution: its position grid
  for field, value in CIFAR_OFFICIAL.items():
    c.bft[field] = value
  c.bft.init_from_needed = 'an ImageNet-LT MGP checkpoint of ViT-B/16 at 224 px'
  return c
