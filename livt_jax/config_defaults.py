"""Shared defaults for every LiVT config: one place, so a config file only says what differs.

Values follow the paper's Table 10 (ImageNet-LT column) and Table 9 (augmentations).
Durations are in epochs; learning rates are *base* rates, scaled by global_batch / 256.
"""
import ml_collections


def get_base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  # Comma-separated subset of: mgp, bft, evaluate. Run one alone with --config.stages=bft.
  c.stages = 'mgp,bft,evaluate'

  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = 'imagenet_lt'  # see livt_jax/data/registry.py for the known names
  c.dataset.data_dir = ml_collections.config_dict.placeholder(str)  # TFDS dir or image folder root
  c.dataset.split_dir = ml_collections.config_dict.placeholder(str)  # OLTR *_LT_*.txt split files
  c.dataset.imbalance = 100.0        # CIFAR/Fashion-LT imbalance factor gamma = n_max / n_min
  # CIFAR/Fashion-LT: subsample the TEST split with this imbalance factor (same class order and
  # exponential profile as training, the largest class kept whole); unset: the balanced test set.
  c.dataset.test_imbalance = ml_collections.config_dict.placeholder(float)
  c.dataset.class_order = 'natural'  # 'natural' or 'shuffled' (seeded by class_order_seed)
  c.dataset.class_order_seed = 0
  c.dataset.subset_seed = 0          # which images of a class are kept by LT subsampling
  # CIFAR/Fashion-LT: validation images per class held out of the training images the LT rule
  # left unused (a balanced 'val' split; a class with fewer left over keeps n - val_per_class).
  # An image folder without val/: held out of train/ (not trained on). 0: none.
  c.dataset.val_per_class = 0
  # More validation images where a class has them (up to this many per class, from its unused
  # images; the training subset does not change): a less noisy val estimate for choosing
  # recipes, class-imbalanced, so choose on evals.val's 'balanced_top1'. 0: val_per_class each.
  c.dataset.val_max_per_class = 0
  c.dataset.num_classes = ml_collections.config_dict.placeholder(int)  # checked against the data
  c.dataset.read_threads = 2
  c.dataset.prefetch_buffer = 2
  c.dataset.device_prefetch = 2  # global batches put on the devices ahead of the step (0: none)
  # Worker processes for decoding + augmentation (0: threads of the training process only).
  # Each costs a few seconds to start; on a large host use several per chip
  # (docs/architecture.md).
  c.dataset.workers = 0
  # Many/Medium/Few groups by training count: many > many_threshold, few < few_threshold.
  c.dataset.many_threshold = 100
  c.dataset.few_threshold = 20

  c.model = ml_collections.ConfigDict()
  c.model.variant = 'B'   # Ti, S, B, L (+ small CPU variants, see livt_jax/models/vit.py)
  # Size overrides of the variant's table (None: the variant's), e.g. for a PyTorch checkpoint
  # of a size no variant has: model.width / depth / heads / mlp_ratio.
  c.model.width = ml_collections.config_dict.placeholder(int)
  c.model.depth = ml_collections.config_dict.placeholder(int)
  c.model.heads = ml_collections.config_dict.placeholder(int)
  c.model.mlp_ratio = ml_collections.config_dict.placeholder(float)
  c.model.patch_size = 16
  c.model.pool = 'gap'     # 'gap' (mean of patch tokens + fc_norm, as MAE fine-tuning) or 'cls'
  # BFT's position table is MGP's sin-cos table, bicubically resized when BFT runs at another
  # resolution (iNat18: 128 -> 224 px); 'fixed' keeps it constant, 'learned' trains it from there.
  c.model.posemb = 'fixed'
  # Self-attention: 'ours' (float32 softmax, a hand-written backward: livt_jax/models/kernels.py),
  # 'xla' or 'cudnn' (jax.nn.dot_product_attention; cuDNN's fused kernel on NVIDIA GPUs only).
  c.model.attention = 'ours'
  c.model.decoder_depth = 8
  c.model.decoder_width = 512
  c.model.decoder_heads = 16

  c.mgp = ml_collections.ConfigDict()
  c.mgp.epochs = 800
  c.mgp.warmup_epochs = 40
  c.mgp.batch_size = 4096
  c.mgp.base_lr = 1.5e-4
  c.mgp.min_lr = 0.0
  c.mgp.weight_decay = 0.05
  c.mgp.b1 = 0.9
  c.mgp.b2 = 0.95
  c.mgp.mask_ratio = 0.75
  c.mgp.norm_pix_loss = True
  c.mgp.image_size = 224
  c.mgp.crop_scale_min = 0.2      # RandomResizedCrop scale (MAE uses 0.2)
  c.mgp.grad_clip_norm = 0.0      # 0 disables

  c.bft = ml_collections.ConfigDict()
  c.bft.epochs = 100
  c.bft.warmup_epochs = 10
  c.bft.batch_size = 1024
  c.bft.base_lr = 1e-3
  c.bft.min_lr = 1e-6
  c.bft.weight_decay = 0.05
  c.bft.b1 = 0.9
  c.bft.b2 = 0.99
  c.bft.layer_decay = 0.75
  c.bft.image_size = 224
  c.bft.drop_path = 0.1
  # ce, bal_ce, bce, bal_bce, or a Table 7 loss: cb_ce, cb_bce, focal, ldam_drw, lade, ib,
  # nt_bce, bal_nt_bce (formulas and references: docs/losses.md).
  c.bft.loss = 'bal_bce'
  c.bft.tau = 1.0
  c.bft.bias_form = 'paper'       # 'paper' (Eq. 10, with tau) or 'official' (released code)
  # The head's bias at the start of BFT: 'zero' (MAE) or 'prior' (bce / bal_bce: the bias at
  # which the training loss starts at the class shares, losses.prior_head_bias says why; the
  # other losses start from zeros either way).
  c.bft.head_bias_init = 'zero'
  # Test class prior of Thm. 3 for bal_ce, bal_bce, bal_nt_bce and lade: 'uniform' (Eq. 10),
  # 'train' (the training shares), or one weight per class, e.g. '10,5,1'.
  c.bft.test_prior = 'uniform'
  c.bft.cb_beta = 0.9999          # cb_ce / cb_bce: effective-number beta (Cui et al.)
  # cb_ce / cb_bce: 'livt' (LiVT util/loss.py: torch's weighted CE; BCE column c weighted w_c)
  # or 'cui' (Cui et al.'s code: each sample weighted by its class's w); docs/losses.md.
  c.bft.cb_form = 'livt'
  c.bft.focal_gamma = 2.0         # focal: (1 - p)^gamma
  c.bft.focal_form = 'sample'     # focal: 'sample' (LDAM-DRW's code) or 'class' (Lin et al.)
  c.bft.ldam_max_margin = 0.5     # ldam_drw: margin of the rarest class (Cao et al.)
  c.bft.ldam_scale = 30.0         # ldam_drw: logits scaled by s inside the loss
  # ldam_drw: the classifier head, 'linear' (LiVT's LDAM row) or 'normed' (Cao et al.'s cosine
  # head: normalised features times normalised weight columns, no bias).
  c.bft.ldam_head = 'linear'
  c.bft.drw = True                # ldam_drw: deferred re-weighting on (Cao et al.) or off (LiVT)
  # ldam_drw: class-balanced re-weighting (beta drw_beta) from this epoch; unset: 0.8 * epochs.
  c.bft.drw_epoch = ml_collections.config_dict.placeholder(float)
  c.bft.drw_beta = 0.9999
  c.bft.lade_alpha = 0.1          # lade: weight of the LADE regulariser
  c.bft.lade_remine_lambda = 0.1  # lade: ReMINE penalty on the log-partition estimate
  # lade: 'hyperconnect' (PC-softmax CE + lade_alpha * regulariser, Hong et al.'s code) or
  # 'livt' (the regulariser alone, LiVT util/loss.py LADE_loss; lade_alpha unused).
  c.bft.lade_form = 'hyperconnect'
  c.bft.ib_alpha = 1000.0         # ib: scale of the influence-balanced weights (Park et al.)
  # ib: class weights 1/n_c normalised to sum C ('code', IB-Loss's IBReweight) or 1 ('paper').
  c.bft.ib_weights = 'code'
  # ib: plain CE before this epoch, IB from it; unset: 0.5 * epochs (Park et al.: 100 of 200).
  c.bft.ib_epoch = ml_collections.config_dict.placeholder(float)
  c.bft.nt_lambda = 2.0           # nt_bce / bal_nt_bce: negative tolerance lambda (1: BCE)
  c.bft.label_smoothing = 0.1
  c.bft.mixup_alpha = 0.8
  c.bft.cutmix_alpha = 1.0
  c.bft.mix_switch_prob = 0.5
  c.bft.mix_prob = 1.0
  c.bft.randaug_num_ops = 2
  c.bft.randaug_magnitude = 9
  c.bft.randaug_magnitude_std = 0.5
  c.bft.randaug_on = 'auto'       # 'host' (PIL), 'device' (in the step), 'auto': device on GPU/TPU
  c.bft.random_erase_prob = 0.25
  c.bft.crop_scale_min = 0.08
  c.bft.grad_clip_norm = 0.0
  # Exponential moving average of the weights (timm's --model-ema), kept in the optimizer state:
  # when > 0 it is the model evaluated on val and test, kept as best and exported. 0 (the
  # paper's recipe) keeps none.
  c.bft.ema_decay = 0.0
  # Where the encoder comes from when bft runs without mgp in the same run (a checkpoint dir).
  c.bft.init_from = ml_collections.config_dict.placeholder(str)
  # Set by a recipe that only fine-tunes (e.g. configs/cifar100_lt.py:recipe=official): which
  # pretrained encoder bft.init_from must name; BFT without MGP then refuses to start without it.
  c.bft.init_from_needed = ml_collections.config_dict.placeholder(str)

  c.evaluate = ml_collections.ConfigDict()
  c.evaluate.batch_size = 1024
  c.evaluate.num_bins = 15
  # Test-time views whose raw logits are averaged (livt_jax/evals/views.py), for val evaluators
  # and the test alike: 'one' (the paper's), 'flip', 'flip_shift'.
  c.evaluate.views = 'one'
  c.evaluate.checkpoint = ml_collections.config_dict.placeholder(str)  # for stages=evaluate alone

  # Evaluators run during BFT (livt_jax/evals/evaluators.py): top-1, Many/Medium/Few, ECE/MCE on
  # `split` every `every_epochs` epochs and at the end, to TensorBoard and the console.
  # select_best keeps the best-on-val parameters (WORKDIR/bft/best) and the report gives their
  # test metrics next to the final model's. Datasets without a val split skip it (one line).
  c.evals = ml_collections.ConfigDict()
  c.evals.val = ml_collections.ConfigDict(dict(
      type='classification', split='val', every_epochs=10.0, select_best='top1'))

  # Mesh: data-parallel x FSDP. -1 means "all remaining devices".
  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1
  c.mesh.fsdp = 1

  # 'auto' (bfloat16 on GPU/TPU, float32 on CPU), 'float32', 'bfloat16' (bf16 compute with
  # float32 parameters and optimizer state), or 'bf16_matmul' (float32 compute; the transformer's
  # linear layers take bf16 operands with float32 accumulation, as TPUs do for float32 matmuls:
  # a 2-vCPU AVX512-BF16 host ran the ViT-Ti step 1.6-1.8x faster than float32 in two consecutive
  # runs, benchmarks/results/step/).
  c.precision = 'auto'
  c.remat = False
  # CPU-only hosts: split the CPU into this many JAX devices, so the step runs data parallel
  # (each device its share of the batch) instead of one step over all cores (the embedded
  # default's small ViT: 8-10% faster with 2 devices on 2 cores); 0 keeps JAX's one CPU device.
  # Ignored on GPU/TPU, and where XLA_FLAGS (--xla_force_host_platform_device_count) or
  # JAX_NUM_CPU_DEVICES set a count.
  c.cpu_devices = 0
  c.grad_accum_steps = 1
  c.log_every_steps = 50
  # The host waits for step s - N to finish before it dispatches step s + 1. Without a bound it
  # runs ahead until the next log step; ~100 queued steps over 2 CPU devices were seen to hang
  # in XLA's CPU all-reduce. A few steps ahead are enough to keep the devices fed.
  c.max_steps_in_flight = 4
  c.checkpoint_every_steps = 1000
  # Also save when this much time passed since the last save (0: off), so a slow pod step cannot
  # leave hours unsaved. SIGTERM/SIGINT always save the step they interrupt.
  c.checkpoint_every_minutes = 30.0
  c.keep_checkpoints = 2
  c.max_steps = ml_collections.config_dict.placeholder(int)  # stop each stage here (smoke runs); the schedule still spans the epochs
  c.profile = False
  # Peak FLOP/s per device in TFLOP/s for the MFU logged to TensorBoard; unset: looked up from
  # the device kind (livt_jax/runtime/chips.py; TPU v4/v5e/v5p/v6e, A100/H100/H200), no MFU on CPU.
  c.peak_tflops = ml_collections.config_dict.placeholder(float)
  # gs:// workdir / data: the first touch is a bounded probe (livt_jax/runtime/storage_probe.py); an
  # unreachable or forbidden bucket is one line after at most probe_timeout_s.
  c.storage = ml_collections.ConfigDict()
  c.storage.probe_timeout_s = 30.0  # seconds the whole probe may take (all attempts)
  c.storage.probe_retries = 3  # connection attempts to the storage endpoint
  return c

