"""LiVT on Fashion-MNIST-LT: the embedded default, sized for a 2-core CPU (~15 minutes).

Run:
  python -m livt_jax.main --config=configs/fashion_mnist_lt.py --workdir=runs/fmnist

Data: Debian's `dataset-fashion-mnist` (apt-get install -y dataset-fashion-mnist). Class i keeps
min(int(6000 * 100 ** (-i / 9)), 5900) training images (14,786 in all, 5900 ... 60;
100 per class are held out for validation); the test set is the balanced 10,000. Groups: Many > 1000 (4 classes), Medium 200..1000 (3), Few < 200 (3).

A tiny ViT (width 128, depth 6, 4 heads, patch 7: 16 tokens) with a 2-block decoder; the LiVT
recipe otherwise (MGP -> Bal-BCE fine-tuning with layer decay), shortened to minutes.
Reference points, measured on a 2-core CPU with a throwaway script (not this engine) on the same
data and model (batch 128, float32, AdamW lr 1e-3, no mixup): MAE 5 min, then Bal-BCE (tau 1,
layer decay 0.75) 5 min: 80.2% top-1 (Many 89.9, Medium 61.5, Few 85.9, ECE 7.1); Bal-BCE from
scratch, 7 min: 75.7%; CE from scratch, 7 min: 74.7%.
"""
from livt_jax import config_defaults


def get_config(arg=None):
  del arg
  c = config_defaults.get_base_config()
  c.dataset.name = 'fashion_mnist_lt'
  c.dataset.imbalance = 100.0
  c.dataset.many_threshold = 1000
  c.dataset.few_threshold = 200
  # A balanced validation set of 100 images per class from the training images the LT rule
  # left unused (the head class keeps 5900 of its 6000); BFT is evaluated on it every 2 epochs
  # and the best-on-val model is reported next to the final one.
  c.dataset.val_per_class = 100
  c.evals.val.every_epochs = 2.0

  c.model.variant = 'mu'
  c.model.patch_size = 7
  c.model.decoder_depth = 2
  c.model.decoder_width = 96
  c.model.decoder_heads = 4

  c.mgp.image_size = 28
  c.mgp.epochs = 20
  c.mgp.warmup_epochs = 1
  c.mgp.batch_size = 128
  c.mgp.base_lr = 2e-3
  # Fashion-MNIST items are centred at one scale and tested uncropped: strong scale jitter hurt
  # (BFT crop scale 0.35 -> 0.8: 70.6% -> 76.5% top-1, measured here).
  c.mgp.crop_scale_min = 0.8

  c.bft.image_size = 28
  c.bft.epochs = 16
  c.bft.warmup_epochs = 1
  c.bft.batch_size = 128
  c.bft.base_lr = 2e-3
  c.bft.crop_scale_min = 0.8
  # The paper's BFT regularisers (RandAugment, random erasing, mixup/cutmix, label smoothing)
  # are for 100 epochs; in this minutes-long schedule they cost accuracy (58.1% with them vs
  # 70.6% without, same MGP encoder, measured here), so they are off. Turn them back on with
  # e.g. --config.bft.mix_prob=1 --config.bft.randaug_num_ops=2.
  c.bft.mix_prob = 0.0
  c.bft.randaug_num_ops = 0
  c.bft.random_erase_prob = 0.0
  c.bft.label_smoothing = 0.0

  c.evaluate.batch_size = 1000
  c.log_every_steps = 50
  c.checkpoint_every_steps = 500
  return c
