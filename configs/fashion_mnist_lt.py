"""LiVT on Fashion-MNIST-LT: the embedded default, sized for a 2-core CPU (fresh-clone runs on
this project's 2-core hosts, which differ by the day: 5:29 and 5:32 in a fast hour, 7:53 to 8:47
on slower ones before the test-time mirror view, which adds seconds; test top-1 84.3 for seed 0;
docs/embedded_default.md gives the runs).

Run:
  python -m livt_jax.main --config=configs/fashion_mnist_lt.py --workdir=runs/fmnist

Data: Debian's `dataset-fashion-mnist` (apt-get install -y dataset-fashion-mnist). Class i keeps
min(int(6000 * 100 ** (-i / 9)), 5900) training images (14,786 in all, 5900 ... 60;
100 per class are held out for validation); the test set is the balanced 10,000. Groups:
Many > 1000 (4 classes), Medium 200..1000 (3), Few < 200 (3).

A tiny ViT (width 128, depth 6, 4 heads, patch 7: 16 tokens) with a 2-block decoder; the LiVT
recipe (MGP 16 epochs -> Bal-BCE fine-tuning 16 epochs with layer decay), shortened to minutes,
data parallel over two JAX CPU devices (`cpu_devices`).

Everything below that differs from the paper was chosen on the validation split (val top-1 of the
final model; 1000 images, so ~1.3 points of noise per run), never on the test set; the runs and
their figures are in docs/embedded_default.md ("How the embedded default's recipe was chosen"):
head_bias_init='prior', tau 1.5, layer decay 0.9, drop path 0, crop scale 1.0 (flips only), no
RandAugment/mixup/erasing/label smoothing (single-seed runs), an EMA of the weights, decay 0.998
(two seeds: val 84.3 / 82.8 against 83.3 / 82.4 without). Precision 'bf16_matmul' (the linear layers
multiply bfloat16 operands, float32 elsewhere) was taken for time where val top-1 did not tell the
options apart (mean val over seeds 0 / 1: 83.6 against 84.3 in float32). The epochs (MGP / BFT 16 /
16) by a rule set before the runs: the shortest of 20 / 20, 16 / 20, 16 / 16 whose mean val is
within 0.5 points of the best. On a larger val estimate (class-balanced top-1 on 9,100 unused
training images: docs/embedded_default.md) over seeds 0-3 the means were 84.90 (16 / 16), 84.79 (16
/ 20) and 85.14 (20 / 20): the three are within the noise of the val this dataset allows, and the
shortest is the default. MGP batch 256 was faster but not better on val (84.0 vs 84.3); MGP crop
scale 0.5 instead of 0.8 neither (larger val, seeds 0-3: 84.63 vs 84.49, under the 0.5 points set
beforehand), nor BFT layer decay 1.0, MGP 24 epochs at batch 256, depth 8 with BFT 12 epochs, or
patch 4 in fewer epochs (docs/embedded_default.md). Label smoothing 0.1 inverts the raw logits'
order with this bias on 10 classes (val 74.0; the console says so when it is set). The evaluation
averages the raw logits of each image and its mirror (`evaluate.views='flip'`; larger val, seeds
0-3: 85.32 against 84.49 for one view).
"""
from livt_jax import config_args
from livt_jax import config_defaults


def get_config(arg=None):
  config_args.parse(arg, __file__)  # takes none: refuses any
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

  # Two JAX devices on the 2-core CPU: the step runs data parallel, half the batch each (ViT-mu
  # steps ~8-10% faster than one device over both cores; see config_defaults).
  c.cpu_devices = 2
  # float32 compute with the transformer's linear layers on bfloat16 operands (float32
  # accumulation): on a CPU with AVX512-BF16 the 20 / 20-epoch run took 8:53 instead of 9:47,
  # val top-1 within the noise (docs/embedded_default.md). A CPU without native bf16 gets a
  # console line saying to use --config.precision=float32.
  c.precision = 'bf16_matmul'

  c.model.variant = 'mu'
  c.model.patch_size = 7
  c.model.decoder_depth = 2
  c.model.decoder_width = 96
  c.model.decoder_heads = 4

  c.mgp.image_size = 28
  c.mgp.epochs = 16
  c.mgp.warmup_epochs = 1
  c.mgp.batch_size = 128
  c.mgp.base_lr = 2e-3
  # Fashion-MNIST items are centred at one scale: mild scale jitter for MGP (kept from an
  # earlier build; not re-chosen on the validation split).
  c.mgp.crop_scale_min = 0.8

  c.bft.image_size = 28
  c.bft.epochs = 16
  c.bft.warmup_epochs = 1
  c.bft.batch_size = 128
  c.bft.base_lr = 2e-3
  # Chosen on the validation split for this minutes-long schedule (module docstring): the
  # sigmoid head starts at the class shares, a stronger bias, less layer decay, no drop path,
  # and no scale/aspect jitter (crop scale 1.0: flips only).
  c.bft.head_bias_init = 'prior'
  c.bft.tau = 1.5
  c.bft.layer_decay = 0.9
  c.bft.drop_path = 0.0
  c.bft.crop_scale_min = 1.0
  # An average of the weights (horizon ~500 steps, ~4 epochs) is what is evaluated and kept.
  c.bft.ema_decay = 0.998
  # The paper's BFT regularisers are for 100 epochs; in 16 they are off (RandAugment 2 ops
  # cost 2.2 points of val top-1 at epoch 8 of 12). Turn them back on with e.g.
  # --config.bft.mix_prob=1 --config.bft.randaug_num_ops=2.
  c.bft.mix_prob = 0.0
  c.bft.randaug_num_ops = 0
  c.bft.random_erase_prob = 0.0
  # Not a regulariser here: with 10 classes and tau 1.5, 0.1 inverts the raw logits' order
  # (losses.smoothing_inversion_note; val 74.0 against 84.3).
  c.bft.label_smoothing = 0.0

  c.evaluate.batch_size = 1000
  # Test-time views: the raw logits of each image and its mirror averaged (BFT trains on
  # flips), for the val evaluator and the test. Chosen on the larger val by a rule written
  # before the runs (seeds 0-3: 85.32 against 84.49 with one view, above on all four; ten
  # mirrored / shifted views 85.04): docs/embedded_default.md, "Test-time views".
  c.evaluate.views = 'flip'
  c.log_every_steps = 50
  # Stages of ~3.5-5 minutes: a save every ~1.5-2.5 minutes (each costs ~1 s of a 2-core CPU).
  c.checkpoint_every_steps = 1000
  return c
