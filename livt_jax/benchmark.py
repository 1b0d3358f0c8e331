"""Train-step benchmark of the two LiVT stages (MGP and BFT), optionally against PyTorch.

Runs the project's real train step (the one `train.train` runs: `train.build_stage` +
`steps.*_loss_fn` + `train.compile_step`, state donated, batch sharded over every device) on a
fixed synthetic batch and reports, after warm-up, the median step time as images/s, the
compile time, the peak memory and the FLOPs XLA counts for one step (and, on an accelerator,
the model FLOP utilisation against the chip's peak bf16 rate). The input pipeline is left out
on purpose: this measures the step alone.

    python -m livt_jax.benchmark --variant Ti --image_size 32 --patch 4 --batch 128
    python -m livt_jax.benchmark --stages bft --vs_torch --repeats 3 --json /tmp/bench.json

`--vs_torch` times the same model in PyTorch in a child process (timm's `VisionTransformer`
and timm `Block`s for the MAE; needs the separate benchmark venv, see requirements-benchmark.txt):

    python3 -m venv .venv-bench && .venv-bench/bin/pip install -r requirements.txt -r requirements-benchmark.txt

Where timm cannot be imported (e.g. a CPU-only torch next to PyPI's CUDA torchvision wheel,
which timm imports), an in-file replica of timm's ViT block (same modules, same op sequence,
`F.scaled_dot_product_attention`) is used instead and the table says so.

XLA flags go through the environment as usual, e.g.
`XLA_FLAGS=--xla_dump_to=/tmp/dump python -m livt_jax.benchmark ...`; `--profile_dir` writes a
`jax.profiler` trace of the first timed steps (open it with TensorBoard or Perfetto).

On a CPU-only host the script restarts itself with the glibc malloc tunables the engine uses
(`livt_jax/host_malloc.py`), so the JAX figures are what `livt_jax.main` gets; the PyTorch side
runs in a child process with the environment the script was started with. The machine's speed
drifts (10-20% over minutes on a shared VM): compare frameworks with `--repeats 3` or more.
"""
import argparse
import dataclasses
import functools
import gc
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from livt_jax import config_defaults
from livt_jax import host_malloc
from livt_jax import losses
from livt_jax import sharding
from livt_jax import steps
from livt_jax import train
from livt_jax.data import longtail
from livt_jax.models import posemb
from livt_jax.models import vit

# Peak dense bf16 FLOP/s per chip (vendor data sheets), matched as lower-case substrings of
# `device.device_kind`, first match wins (so 'v5 lite' is tried before 'v5').
PEAK_BF16_TFLOPS = (
    ('v6 lite', 918.0), ('v6e', 918.0),   # TPU v6e (Trillium)
    ('v5 lite', 197.0), ('v5e', 197.0),   # TPU v5e
    ('v5p', 459.0), ('v5', 459.0),        # TPU v5p
    ('v4', 275.0),                        # TPU v4
    ('h200', 989.0),
    ('h100 pcie', 756.0), ('h100', 989.0),  # SXM unless PCIe
    ('a100', 312.0),
)

LAYER_DECAY_GROUPS = ('cls_token', 'pos_embed', 'patch_embed')


def peak_tflops_for(device_kind: str) -> float | None:
  kind = device_kind.lower()
  for key, tflops in PEAK_BF16_TFLOPS:
    if key in kind:
      return tflops
  return None


# ----------------------------------------------------------------------------------------------
# Memory: the process's peak RSS per phase. Linux lets a process reset its own high-water mark
# (VmHWM) by writing 5 to /proc/self/clear_refs; elsewhere fall back to ru_maxrss (a peak since
# the process started, so later phases then include earlier ones).


def _status_kb(field: str) -> int | None:
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith(field + ':'):
          return int(line.split()[1])
  except OSError:
    pass
  return None


def reset_peak_rss() -> bool:
  try:
    with open('/proc/self/clear_refs', 'w') as f:
      f.write('5')
    return True
  except OSError:
    return False


def current_rss_bytes() -> int | None:
  kb = _status_kb('VmRSS')
  return None if kb is None else kb * 1024


def peak_rss_bytes() -> int:
  kb = _status_kb('VmHWM')
  if kb is None:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux
  return kb * 1024


# ----------------------------------------------------------------------------------------------
# Shared setup.


def long_tail_counts(num_classes: int) -> list[int]:
  """CIFAR-LT style class counts (500 images at the head, imbalance 100); only the Bal-BCE bias
  uses them."""
  return longtail.lt_class_sizes(500, num_classes, 100.0)


def make_config(args):
  """The base config with the benchmark's model, sizes and precision set."""
  c = config_defaults.get_base_config()
  c.model.variant = args.variant
  c.model.patch_size = args.patch
  c.model.decoder_depth = args.decoder_depth
  c.model.decoder_width = args.decoder_width
  c.model.decoder_heads = args.decoder_heads
  for stage in ('mgp', 'bft'):
    c[stage].image_size = args.image_size
    c[stage].batch_size = args.batch
  c.mgp.mask_ratio = args.mask_ratio
  c.bft.drop_path = args.drop_path
  c.precision = args.precision
  c.remat = args.remat
  c.grad_accum_steps = 1
  return c


def synthetic_batch(args, seed: int = 0) -> dict:
  """One fixed host batch: normalised-looking images [B, S, S, C] and labels [B]."""
  rs = np.random.RandomState(seed)
  s = args.image_size
  return {
      'image': rs.standard_normal((args.batch, s, s, args.channels)).astype(np.float32),
      'label': rs.randint(0, args.num_classes, size=(args.batch,)).astype(np.int32),
  }


def _flops_of(compiled) -> float | None:
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if isinstance(cost, (list, tuple)):  # older jax: one dict per computation
    cost = cost[0] if cost else None
  if not cost or 'flops' not in cost:
    return None
  return float(cost['flops'])


def _xla_temp_bytes(compiled) -> int | None:
  try:
    m = compiled.memory_analysis()
    return int(m.temp_size_in_bytes)
  except Exception:  # pylint: disable=broad-except
    return None


def usable_cpus() -> int:
  """CPUs this process may run on (respects taskset / cgroup affinity, unlike os.cpu_count)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def _timed_steps(run_one: Callable[[], Any], n: int) -> list[tuple[float, float]]:
  """(wall seconds, process CPU seconds) of n steps, one pair per step."""
  times = []
  for _ in range(n):
    t0, c0 = time.perf_counter(), time.process_time()
    run_one()
    times.append((time.perf_counter() - t0, time.process_time() - c0))
  return times


def _cpu_sample() -> tuple[float, float, float] | None:
  """(busy seconds of all CPUs, CPU seconds of this process, wall time), or None off Linux."""
  try:
    with open('/proc/stat') as f:
      fields = [int(x) for x in f.readline().split()[1:]]
    with open('/proc/self/stat') as f:
      mine = f.read().rsplit(')', 1)[1].split()
  except OSError:
    return None
  tick = os.sysconf('SC_CLK_TCK')
  idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
  busy = (sum(fields[:8]) - idle) / tick
  return busy, (int(mine[11]) + int(mine[12])) / tick, time.perf_counter()


def others_load(before, after) -> float | None:
  """Share of all CPUs that *other* processes kept busy between two `_cpu_sample`s."""
  if before is None or after is None or after[2] <= before[2]:
    return None
  other = (after[0] - before[0]) - (after[1] - before[1])
  return max(0.0, other / ((after[2] - before[2]) * (os.cpu_count() or 1)))


@dataclasses.dataclass
class Runner:
  """One (stage, framework) pair, ready to time: `run(n)` returns n step times in seconds."""
  stage: str
  framework: str
  run: Callable[[int], list[float]]
  compile_s: float | None = None
  peak_rss: int | None = None
  rss_before: int | None = None
  device_peak: int | None = None
  xla_temp: int | None = None
  flops: float | None = None
  loss: Callable[[], float] | None = None
  impl: str = ''
  times: list = dataclasses.field(default_factory=list)      # wall seconds per step
  cpu_times: list = dataclasses.field(default_factory=list)  # process CPU seconds per step
  others: list = dataclasses.field(default_factory=list)  # other processes' CPU share per round

  def timed_round(self, n: int):
    before = _cpu_sample()
    for wall, cpu in self.run(n):
      self.times.append(wall)
      self.cpu_times.append(cpu)
    load = others_load(before, _cpu_sample())
    if load is not None:
      self.others.append(load)


# ----------------------------------------------------------------------------------------------
# JAX: the project's own step.


def build_jax_runner(stage_name: str, args, mesh) -> Runner:
  """Builds, compiles and warms up the engine's train step for one stage."""
  config = make_config(args)
  counts = long_tail_counts(args.num_classes)
  num_train = max(sum(counts), args.batch)
  gc.collect()
  rss_before = current_rss_bytes()
  reset_peak_rss()
  stage = train.build_stage(config, stage_name, mesh, num_train=num_train,
                            image_channels=args.channels, num_classes=args.num_classes)
  if args.gelu == 'tanh':
    # Same parameters, only the activation's formula differs: a speed experiment, not a default.
    stage.model = stage.model.clone(gelu_approximate=True)
  if stage_name == 'mgp':
    loss_fn = steps.mgp_loss_fn(stage.model)
  else:
    loss_fn = steps.bft_loss_fn(stage.model, config, counts)
  state = stage.init_state(jax.random.key(0), None)
  step = train.compile_step(stage, loss_fn, mesh, config)
  batch = sharding.global_batch(synthetic_batch(args), mesh)

  # Compile explicitly (the same executable the engine's first call would build) so the
  # compile time is measured apart from the first step, and the FLOP count can be read.
  t0 = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0

  holder = {'state': state, 'metrics': None}

  def run_one():
    holder['state'], holder['metrics'] = compiled(holder['state'], batch)
    holder['metrics']['loss'].block_until_ready()

  def run(n):
    return _timed_steps(run_one, n)

  run(args.warmup)
  runner = Runner(stage_name, 'jax', run, compile_s=compile_s, rss_before=rss_before,
                  xla_temp=_xla_temp_bytes(compiled), flops=_flops_of(compiled),
                  loss=lambda: float(holder['metrics']['loss']),
                  impl=f'livt_jax ({config.precision}, gelu {args.gelu})')
  # The warm-up steps ran the same executable: the peak is reached already.
  runner.peak_rss = peak_rss_bytes()
  if args.profile_dir:
    with jax.profiler.trace(os.path.join(args.profile_dir, stage_name)):
      run(min(args.steps, 5))
  stats = getattr(jax.local_devices()[0], 'memory_stats', lambda: None)()
  if stats and 'peak_bytes_in_use' in stats:
    runner.device_peak = int(stats['peak_bytes_in_use'])
  return runner


# ----------------------------------------------------------------------------------------------
# PyTorch reference (imported only with --vs_torch).


def _torch_blocks():
  """timm's Block, or a replica with the same modules and ops where timm cannot be imported."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top

  try:
    from timm.models.vision_transformer import Block  # pylint: disable=g-import-not-at-top
    from timm.models.vision_transformer import VisionTransformer  # pylint: disable=g-import-not-at-top
    return Block, VisionTransformer, 'timm'
  except Exception as e:  # pylint: disable=broad-except
    reason = f'{type(e).__name__}: {str(e).splitlines()[0][:80]}'

  class Attention(nn.Module):
    """timm's Attention on its fused path: qkv Linear -> SDPA -> proj."""

    def __init__(self, dim, num_heads):
      super().__init__()
      self.num_heads = num_heads
      self.qkv = nn.Linear(dim, 3 * dim)
      self.proj = nn.Linear(dim, dim)

    def forward(self, x):
      b, t, d = x.shape
      qkv = self.qkv(x).reshape(b, t, 3, self.num_heads, d // self.num_heads)
      q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
      x = F.scaled_dot_product_attention(q, k, v)
      return self.proj(x.transpose(1, 2).reshape(b, t, d))

  class DropPath(nn.Module):

    def __init__(self, rate):
      super().__init__()
      self.rate = rate

    def forward(self, x):
      if not self.training or self.rate == 0.0:
        return x
      keep = 1.0 - self.rate
      mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep).div_(keep)
      return x * mask

  class Block(nn.Module):  # pylint: disable=redefined-outer-name
    """timm's pre-norm Block (no layer scale): the signature subset used here."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=True, drop_path=0.0,
                 act_layer=nn.GELU, norm_layer=None):
      super().__init__()
      del qkv_bias  # always on, as in ViT/MAE
      norm_layer = norm_layer or functools.partial(nn.LayerNorm, eps=1e-6)
      hidden = int(dim * mlp_ratio)
      self.norm1 = norm_layer(dim)
      self.attn = Attention(dim, num_heads)
      self.drop_path1 = DropPath(drop_path)
      self.norm2 = norm_layer(dim)
      self.mlp = nn.Sequential(nn.Linear(dim, hidden), act_layer(), nn.Linear(hidden, dim))
      self.drop_path2 = DropPath(drop_path)

    def forward(self, x):
      x = x + self.drop_path1(self.attn(self.norm1(x)))
      return x + self.drop_path2(self.mlp(self.norm2(x)))

  class VisionTransformer(nn.Module):  # pylint: disable=redefined-outer-name
    """timm's VisionTransformer with class token, learned pos_embed, global_pool='avg', fc_norm."""

    def __init__(self, img_size, patch_size, in_chans, num_classes, embed_dim, depth, num_heads,
                 mlp_ratio, qkv_bias=True, global_pool='avg', fc_norm=True, drop_path_rate=0.0,
                 act_layer=nn.GELU):
      super().__init__()
      assert global_pool == 'avg' and fc_norm and qkv_bias
      n = (img_size // patch_size) ** 2
      self.patch_embed = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size)
      self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
      self.pos_embed = nn.Parameter(torch.randn(1, n + 1, embed_dim) * 0.02)
      rates = [float(r) for r in torch.linspace(0, drop_path_rate, depth)]
      self.blocks = nn.Sequential(*[
          Block(embed_dim, num_heads, mlp_ratio, drop_path=r, act_layer=act_layer)
          for r in rates])
      self.fc_norm = nn.LayerNorm(embed_dim, eps=1e-6)
      self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, x):
      x = self.patch_embed(x).flatten(2).transpose(1, 2)
      x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
      x = self.blocks(x)
      return self.head(self.fc_norm(x[:, 1:].mean(dim=1)))

  return Block, VisionTransformer, f'timm-replica (timm not importable: {reason})'


def _torch_mae_class(Block):  # pylint: disable=invalid-name
  """An MAE (He et al.) on `Block`: the same computation as livt_jax.models.mae.MAE."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top

  class MAE(nn.Module):
    """Patch embed + fixed sin-cos posemb, random masking, encoder, light decoder, norm-pix MSE."""

    def __init__(self, img_size, patch_size, in_chans, width, depth, num_heads, mlp_ratio,
                 decoder_width, decoder_depth, decoder_heads, mask_ratio, act_layer):
      super().__init__()
      g = img_size // patch_size
      self.p, self.mask_ratio = patch_size, mask_ratio
      self.patch_embed = nn.Conv2d(in_chans, width, patch_size, patch_size)
      self.cls_token = nn.Parameter(torch.randn(1, 1, width) * 0.02)
      self.register_buffer('pos', torch.from_numpy(posemb.sincos_2d(width, g, g))[None])
      norm = functools.partial(nn.LayerNorm, eps=1e-6)
      self.blocks = nn.Sequential(*[
          Block(width, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm, act_layer=act_layer)
          for _ in range(depth)])
      self.norm = norm(width)
      self.decoder_embed = nn.Linear(width, decoder_width)
      self.mask_token = nn.Parameter(torch.randn(1, 1, decoder_width) * 0.02)
      self.register_buffer('dec_pos',
                           torch.from_numpy(posemb.sincos_2d(decoder_width, g, g))[None])
      self.decoder_blocks = nn.Sequential(*[
          Block(decoder_width, decoder_heads, mlp_ratio, qkv_bias=True, norm_layer=norm,
                act_layer=act_layer) for _ in range(decoder_depth)])
      self.decoder_norm = norm(decoder_width)
      self.decoder_pred = nn.Linear(decoder_width, patch_size * patch_size * in_chans)

    def patchify(self, imgs):
      b, c, h, w = imgs.shape
      p = self.p
      x = imgs.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
      return x.reshape(b, (h // p) * (w // p), p * p * c)

    def forward(self, imgs):
      x = self.patch_embed(imgs).flatten(2).transpose(1, 2) + self.pos[:, 1:]
      b, n, d = x.shape
      keep = int(n * (1 - self.mask_ratio))
      ids_shuffle = torch.argsort(torch.rand(b, n, device=x.device), dim=1)
      ids_restore = torch.argsort(ids_shuffle, dim=1)
      x = torch.gather(x, 1, ids_shuffle[:, :keep, None].expand(-1, -1, d))
      mask = (ids_restore >= keep).float()
      x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1)
      x = self.decoder_embed(self.norm(self.blocks(x)))
      dw = x.shape[-1]
      y = torch.cat([x[:, 1:], self.mask_token.expand(b, n - keep, -1)], dim=1)
      y = torch.gather(y, 1, ids_restore[..., None].expand(-1, -1, dw))
      x = torch.cat([x[:, :1], y], dim=1) + self.dec_pos
      pred = self.decoder_pred(self.decoder_norm(self.decoder_blocks(x)))[:, 1:].float()
      target = self.patchify(imgs).float()
      mean = target.mean(dim=-1, keepdim=True)
      var = target.var(dim=-1, keepdim=True)  # unbiased, as MAE
      target = (target - mean) / (var + 1e-6).sqrt()
      per_patch = ((pred - target) ** 2).mean(dim=-1)
      return (per_patch * mask).sum() / mask.sum()

  return MAE


def _torch_mix(x, targets, generator_np, mixup_alpha=0.8, cutmix_alpha=1.0,
               switch_prob=0.5):
  """timm-style batch mixup/cutmix (one lambda per batch, partner = reversed batch)."""
  if generator_np.rand() < switch_prob:
    lam = generator_np.beta(cutmix_alpha, cutmix_alpha)
    h, w = x.shape[-2:]
    r = math.sqrt(1.0 - lam)
    ch, cw = int(h * r), int(w * r)
    cy, cx = generator_np.randint(0, h), generator_np.randint(0, w)
    y0, y1 = np.clip([cy - ch // 2, cy + ch // 2], 0, h)
    x0, x1 = np.clip([cx - cw // 2, cx + cw // 2], 0, w)
    x = x.clone()
    x[:, :, y0:y1, x0:x1] = x.flip(0)[:, :, y0:y1, x0:x1]
    lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
  else:
    lam = generator_np.beta(mixup_alpha, mixup_alpha)
    x = x * lam + x.flip(0) * (1.0 - lam)
  return x, targets * lam + targets.flip(0) * (1.0 - lam)


def _torch_param_groups(model, depth, weight_decay, layer_decay):
  """MAE/BEiT parameter groups: no decay on 1-D params and tokens; layer-wise lr scale."""
  groups = {}
  for name, p in model.named_parameters():
    no_decay = p.ndim <= 1 or name in ('cls_token', 'pos_embed', 'mask_token')
    if layer_decay is None:
      layer = depth + 1
    elif name.split('.')[0] in LAYER_DECAY_GROUPS:
      layer = 0
    elif name.startswith('blocks.'):
      layer = int(name.split('.')[1]) + 1
    else:
      layer = depth + 1
    scale = 1.0 if layer_decay is None else layer_decay ** (depth + 1 - layer)
    key = (layer, no_decay)
    groups.setdefault(key, {'params': [], 'weight_decay': 0.0 if no_decay else weight_decay,
                            'lr_scale': scale})['params'].append(p)
  return list(groups.values())


def build_torch_runner(stage_name: str, args, flops: float | None) -> Runner:
  """The same model, loss and AdamW in PyTorch, warmed up."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(usable_cpus())
  # XLA's CPU runtime flushes denormals to zero; without the same, tiny Adam moments can make
  # torch's elementwise kernels many times slower, which would not be a fair comparison.
  torch.set_flush_denormal(True)
  torch.manual_seed(0)
  dev = 'cuda' if torch.cuda.is_available() else 'cpu'
  gc.collect()
  rss_before = current_rss_bytes()
  reset_peak_rss()
  if dev == 'cuda':
    torch.cuda.reset_peak_memory_stats()
  Block, VisionTransformer, impl = _torch_blocks()  # pylint: disable=invalid-name
  v = vit.get_variant(args.variant)
  act = (functools.partial(nn.GELU, approximate='tanh') if args.gelu == 'tanh' else nn.GELU)
  config = make_config(args)
  if stage_name == 'bft':
    model = VisionTransformer(
        img_size=args.image_size, patch_size=args.patch, in_chans=args.channels,
        num_classes=args.num_classes, embed_dim=v['width'], depth=v['depth'],
        num_heads=v['heads'], mlp_ratio=v['mlp_ratio'], qkv_bias=True, global_pool='avg',
        fc_norm=True, drop_path_rate=args.drop_path, act_layer=act)
    sc = config.bft
    groups = _torch_param_groups(model, v['depth'], sc.weight_decay, sc.layer_decay)
  else:
    model = _torch_mae_class(Block)(
        args.image_size, args.patch, args.channels, v['width'], v['depth'], v['heads'],
        v['mlp_ratio'], args.decoder_width, args.decoder_depth, args.decoder_heads,
        args.mask_ratio, act)
    sc = config.mgp
    groups = _torch_param_groups(model, v['depth'], sc.weight_decay, None)
  model = model.to(dev).train()
  lr = sc.base_lr * args.batch / 256
  for g in groups:
    g['lr'] = lr * g.pop('lr_scale')
  opt = torch.optim.AdamW(groups, lr=lr, betas=(sc.b1, sc.b2), eps=1e-8)

  host = synthetic_batch(args)
  images = torch.from_numpy(host['image'].transpose(0, 3, 1, 2).copy()).to(dev)
  labels = torch.from_numpy(host['label'].astype(np.int64)).to(dev)
  counts = long_tail_counts(args.num_classes)
  bias = torch.from_numpy(losses.bal_bce_bias(
      counts, config.bft.tau, config.bft.bias_form).astype(np.float32)).to(dev)
  smooth = config.bft.label_smoothing
  targets = F.one_hot(labels, args.num_classes).float() * (1 - smooth) + smooth / args.num_classes
  rng_np = np.random.RandomState(0)
  params = [p for p in model.parameters()]
  autocast = functools.partial(torch.autocast, device_type=dev, dtype=torch.bfloat16,
                               enabled=args.precision == 'bfloat16')
  last = {}

  def run_one():
    if stage_name == 'bft':
      x, t = _torch_mix(images, targets, rng_np)
      with autocast():
        logits = model(x)
      # Summed over classes, mean over the batch, as livt_jax.losses.sigmoid_bce.
      loss = F.binary_cross_entropy_with_logits(logits.float() + bias, t,
                                                reduction='sum') / x.shape[0]
    else:
      with autocast():
        loss = model(images)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    # The JAX step reports the gradient norm too (MAE's loss scaler computes it every step).
    torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
    opt.step()
    last['loss'] = loss.item()  # syncs, like block_until_ready
    if dev == 'cuda':
      torch.cuda.synchronize()

  def run(n):
    return _timed_steps(run_one, n)

  run(args.warmup)
  runner = Runner(stage_name, 'torch', run, rss_before=rss_before, flops=flops,
                  loss=lambda: last['loss'],
                  impl=f'torch {torch.__version__} {impl}, {torch.get_num_threads()} threads')
  runner.peak_rss = peak_rss_bytes()
  if dev == 'cuda':
    runner.device_peak = int(torch.cuda.max_memory_allocated())
  return runner


# ----------------------------------------------------------------------------------------------
# Report.


def summarise(r: Runner, args, peak_tflops: float | None) -> dict:
  med = statistics.median(r.times)
  out = {
      'stage': r.stage, 'framework': r.framework, 'impl': r.impl,
      'images_per_s': args.batch / med, 'step_ms_median': 1e3 * med,
      'step_ms_min': 1e3 * min(r.times), 'step_ms_max': 1e3 * max(r.times),
      'cpu_s_per_step_median': statistics.median(r.cpu_times),
      'num_steps_timed': len(r.times), 'compile_s': r.compile_s,
      'peak_rss_bytes': r.peak_rss, 'rss_before_bytes': r.rss_before,
      'device_peak_bytes': r.device_peak, 'xla_temp_bytes': r.xla_temp,
      'flops_per_step_per_device': r.flops, 'final_loss': r.loss() if r.loss else None,
      'others_cpu_share_max': max(r.others) if r.others else None,
  }
  if r.flops:
    out['tflops_per_s_per_device'] = r.flops / med / 1e12
    if peak_tflops:
      out['mfu'] = out['tflops_per_s_per_device'] / peak_tflops
  return out


def _gb(x):
  return '-' if x is None else f'{x / 2**30:.2f}'


def format_table(results: list[dict], meta: dict) -> str:
  lines = [
      f"LiVT train step: ViT-{meta['variant']}, {meta['image_size']}px, patch {meta['patch']}, "
      f"batch {meta['batch']}, {meta['precision']}, gelu {meta['gelu']}, decoder "
      f"{meta['decoder']}, on {meta['num_devices']} x {meta['device_kind']} "
      f"(jax {meta['jax']}, {meta['cpu_count']} CPUs)",
      f"load average before {meta['load_before']}, after {meta['load_after']}; median of "
      f"{meta['steps']} x {meta['repeats']} steps after {meta['warmup']} warm-up; 'others': the "
      "largest share of all CPUs that other processes used during a timed round; 'CPU s': "
      "this process's CPU seconds per step (above the step time = parallel, or spinning)",
  ]
  head = (f"{'stage':5} {'framework':9} {'img/s':>8} {'step ms':>8} {'min-max ms':>15} "
          f"{'CPU s':>6} {'compile s':>9} {'peak RSS GB':>11} {'(start)':>7} {'XLA tmp GB':>10} "
          f"{'GFLOP/step':>10} {'TFLOP/s':>8} {'MFU':>6} {'others':>6}")
  lines += [head, '-' * len(head)]
  by_stage = {}
  for r in results:
    by_stage.setdefault(r['stage'], {})[r['framework']] = r
    mfu = f"{100 * r['mfu']:.1f}%" if r.get('mfu') is not None else '-'
    load = r['others_cpu_share_max']
    others = '-' if load is None else f'{100 * load:.0f}%'
    flops = r['flops_per_step_per_device']
    lines.append(
        f"{r['stage']:5} {r['framework']:9} {r['images_per_s']:8.1f} {r['step_ms_median']:8.1f} "
        f"{r['step_ms_min']:7.1f}-{r['step_ms_max']:<7.1f} "
        f"{r['cpu_s_per_step_median']:6.2f} "
        f"{'-' if r['compile_s'] is None else format(r['compile_s'], '.1f'):>9} "
        f"{_gb(r['peak_rss_bytes']):>11} {_gb(r['rss_before_bytes']):>7} "
        f"{_gb(r['xla_temp_bytes']):>10} {'-' if not flops else format(flops / 1e9, '.1f'):>10} "
        f"{'-' if not r.get('tflops_per_s_per_device') else format(r['tflops_per_s_per_device'], '.3f'):>8} "
        f'{mfu:>6} {others:>6}')
  for stage, fw in by_stage.items():
    if 'jax' in fw and 'torch' in fw:
      ratio = fw['jax']['images_per_s'] / fw['torch']['images_per_s']
      lines.append(f'{stage:5} jax/torch {ratio:8.2f}x')
  for r in results:
    lines.append(f"  {r['stage']} {r['framework']}: {r['impl']}; final loss {r['final_loss']:.4f}")
  return '\n'.join(lines)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  p.add_argument('--stages', default='mgp,bft', help='comma-separated: mgp, bft')
  p.add_argument('--variant', default='Ti', choices=sorted(vit.VARIANTS))
  p.add_argument('--image_size', type=int, default=32)
  p.add_argument('--patch', type=int, default=4)
  p.add_argument('--batch', type=int, default=128, help='global batch')
  p.add_argument('--channels', type=int, default=3)
  p.add_argument('--num_classes', type=int, default=100)
  p.add_argument('--steps', type=int, default=20, help='timed steps per repeat')
  p.add_argument('--warmup', type=int, default=3, help='untimed steps after compiling')
  p.add_argument('--repeats', type=int, default=1,
                 help='timed rounds of --steps steps, interleaved across the runners (fairer on a busy machine)')
  p.add_argument('--precision', default='float32', choices=('float32', 'bfloat16'))
  p.add_argument('--decoder_depth', type=int, default=8)
  p.add_argument('--decoder_width', type=int, default=512)
  p.add_argument('--decoder_heads', type=int, default=16)
  p.add_argument('--mask_ratio', type=float, default=0.75)
  p.add_argument('--drop_path', type=float, default=0.1)
  p.add_argument('--gelu', default='erf', choices=('erf', 'tanh'),
                 help='tanh: approximate GELU in both frameworks (changes numerics)')
  p.add_argument('--remat', action='store_true')
  p.add_argument('--vs_torch', action='store_true', help='also time the PyTorch (timm) model')
  p.add_argument('--peak_tflops', type=float, default=None,
                 help='peak FLOP/s per device in TFLOP/s for MFU (default: looked up)')
  p.add_argument('--profile_dir', default=None, help='write a jax.profiler trace here')
  p.add_argument('--json', default=None, help='also save the results here')
  # Internal: the PyTorch side runs in a child process (see `TorchChild`).
  p.add_argument('--torch_child', action='store_true', help=argparse.SUPPRESS)
  return p.parse_args(argv)


class TorchChild:
  """The PyTorch runners, in a child process started with the user's own malloc settings.

  The JAX side runs with the glibc tunables `host_malloc` sets for CPU runs (as the engine
  does); PyTorch is timed as its users run it, in a process with the environment from before
  that re-exec. The child takes one command per line on stdin ('round STAGE N', 'finish FLOPS')
  and answers on stdout, so timed rounds still alternate between the frameworks (which is what
keeps the comparison fair on a machine whose speed drifts by 10-20% from minute to minute).
  """

  def __init__(self, argv: list[str]):
    cmd = [sys.executable, '-m', 'livt_jax.benchmark', *argv, '--torch_child']
    self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                 env=host_malloc.untuned_environ(os.environ))
    self._reply()  # built and warmed up

  def _reply(self) -> str:
    for line in self.proc.stdout:
      if line.startswith(_CHILD_REPLY):
        return line[len(_CHILD_REPLY):].strip()
      print(line, end='')  # the child's own output (warnings), passed through
    raise RuntimeError(f'the PyTorch benchmark child exited with code {self.proc.wait()}')

  def _ask(self, command: str) -> str:
    self.proc.stdin.write(command + '\n')
    self.proc.stdin.flush()
    return self._reply()

  def timed_round(self, stage: str, n: int):
    self._ask(f'round {stage} {n}')

  def finish(self, flops: dict, peak_tflops: float | None) -> list[dict]:
    """The child's results, with the FLOPs per step XLA counted for the same model."""
    results = json.loads(self._ask('finish ' + json.dumps({'flops': flops, 'peak': peak_tflops})))
    self.proc.wait()
    return results


_CHILD_REPLY = '@@livt_benchmark '


@dataclasses.dataclass
class _ChildRunner:
  """Stands for one of the child's runners in the parent's round-robin."""
  child: TorchChild
  stage: str

  def timed_round(self, n: int):
    self.child.timed_round(self.stage, n)


def serve_torch_child(args, stages: list[str]) -> None:
  """The child's side of `TorchChild`."""
  runners = {s: build_torch_runner(s, args, None) for s in stages}
  print(_CHILD_REPLY + 'ready', flush=True)
  for line in sys.stdin:
    command, rest = line.strip().split(' ', 1)
    if command == 'round':
      stage, n = rest.split()
      runners[stage].timed_round(int(n))
      print(_CHILD_REPLY + 'done', flush=True)
    elif command == 'finish':
      told = json.loads(rest)
      for stage, r in runners.items():
        r.flops = told['flops'].get(stage)
      results = [summarise(r, args, told['peak']) for r in runners.values()]
      print(_CHILD_REPLY + json.dumps(results), flush=True)
      return


def main(argv=None):
  args = parse_args(argv)
  stages = [s.strip() for s in args.stages.split(',') if s.strip()]
  bad = [s for s in stages if s not in ('mgp', 'bft')]
  if bad or not stages:
    sys.exit(f'--stages={args.stages!r}: use a comma-separated subset of mgp,bft')
  if args.torch_child:  # before touching JAX's devices (on a GPU, JAX would claim its memory)
    serve_torch_child(args, stages)
    return []
  load_before = ' '.join(f'{x:.2f}' for x in os.getloadavg())
  config = make_config(args)
  mesh = sharding.make_mesh(config)
  device = jax.devices()[0]
  peak = args.peak_tflops
  if peak is None and device.platform != 'cpu':
    peak = peak_tflops_for(device.device_kind)

  jax_runners = [build_jax_runner(stage, args, mesh) for stage in stages]
  runners = list(jax_runners)
  child = None
  if args.vs_torch:
    child = TorchChild(list(sys.argv[1:] if argv is None else argv))
    runners += [_ChildRunner(child, stage) for stage in stages]
  # Timed rounds alternate between the runners, so a change of load hits all alike.
  for _ in range(args.repeats):
    for r in runners:
      r.timed_round(args.steps)

  results = [summarise(r, args, peak) for r in jax_runners]
  if child:
    torch_results = child.finish({r.stage: r.flops for r in jax_runners}, peak)
    results = [x for stage in stages for x in results + torch_results if x['stage'] == stage]
  meta = {
      'variant': args.variant, 'image_size': args.image_size, 'patch': args.patch,
      'batch': args.batch, 'precision': args.precision, 'gelu': args.gelu,
      'decoder': f'{args.decoder_depth}x{args.decoder_width}x{args.decoder_heads}',
      'num_devices': mesh.size, 'device_kind': device.device_kind, 'platform': device.platform,
      'jax': jax.__version__, 'cpu_count': usable_cpus(), 'python': platform.python_version(),
      'steps': args.steps, 'warmup': args.warmup, 'repeats': args.repeats,
      'peak_tflops': peak, 'xla_flags': os.environ.get('XLA_FLAGS', ''),
      'load_before': load_before,
      'load_after': ' '.join(f'{x:.2f}' for x in os.getloadavg()),
  }
  print(format_table(results, meta))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump({'meta': meta, 'results': results}, f, indent=2)
  return results


if __name__ == '__main__':
  host_malloc.reexec_if_useful()
  main()
