"""The PyTorch side: the same model, loss and AdamW step, timed in a child process.

`TorchChild` starts `python -m benchmarks.step ... --torch_child` with the allocator settings
it is given; `serve_torch_child` is that child's side. torch itself is imported only there.
The precision each JAX precision is paired with is in `pairing`.
"""
import dataclasses
import functools
import gc
import json
import math
import os
import subprocess
import sys

import numpy as np

from livt_jax.runtime import host_malloc
from livt_jax.losses import balanced
from benchmarks import measure
from benchmarks import pairing
from benchmarks import report
from benchmarks import torch_models
from benchmarks import workload
from livt_jax.models import vit

LAYER_DECAY_GROUPS = ('cls_token', 'pos_embed', 'patch_embed')


def _mix(x, targets, generator_np, mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5):
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


def _param_groups(model, depth, weight_decay, layer_decay):
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


def build_torch_runner(stage_name: str, args, flops: float | None, precision: str,
                       compiled: bool = False) -> measure.Runner:
  """The same model, loss and AdamW in PyTorch, warmed up.

  precision: 'float32', 'autocast' (float32 model under torch.autocast bf16) or 'bfloat16'
  (model and batch cast to bf16: parameters and AdamW moments in bf16 too, unlike JAX's float32
  master parameters). compiled: the model through torch.compile (inductor; forward and backward
  compiled on the first step, whose time less one median step is reported as compile_s); the
  optimizer step stays eager, as in a plain `torch.compile(model)` script.
  """
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(measure.usable_cpus())
  # XLA's CPU runtime flushes denormals to zero; without the same, tiny Adam moments can make
  # torch's elementwise kernels many times slower, which would not be a fair comparison.
  torch.set_flush_denormal(True)
  torch.manual_seed(0)
  dev = 'cuda' if torch.cuda.is_available() else 'cpu'
  gc.collect()
  rss_before = measure.current_rss_bytes()
  measure.reset_peak_rss()
  if dev == 'cuda':
    torch.cuda.reset_peak_memory_stats()
  Block, VisionTransformer, impl = torch_models.timm_classes()  # pylint: disable=invalid-name
  v = vit.get_variant(args.variant)
  act = (functools.partial(nn.GELU, approximate='tanh') if args.gelu == 'tanh' else nn.GELU)
  config = workload.make_config(args)
  if stage_name == 'bft':
    model = VisionTransformer(
        img_size=args.image_size, patch_size=args.patch, in_chans=args.channels,
        num_classes=args.num_classes, embed_dim=v['width'], depth=v['depth'],
        num_heads=v['heads'], mlp_ratio=v['mlp_ratio'], qkv_bias=True, global_pool='avg',
        fc_norm=True, drop_path_rate=args.drop_path, act_layer=act)
    sc = config.bft
    groups = _param_groups(model, v['depth'], sc.weight_decay, sc.layer_decay)
  else:
    model = torch_models.mae_class(Block)(
        args.image_size, args.patch, args.channels, v['width'], v['depth'], v['heads'],
        v['mlp_ratio'], args.decoder_width, args.decoder_depth, args.decoder_heads,
        args.mask_ratio, act)
    sc = config.mgp
    groups = _param_groups(model, v['depth'], sc.weight_decay, None)
  dtype = torch.bfloat16 if precision == 'bfloat16' else torch.float32
  model = model.to(dev, dtype=dtype).train()
  lr = sc.base_lr * args.batch / 256
  for g in groups:
    g['lr'] = lr * g.pop('lr_scale')
  opt = torch.optim.AdamW(groups, lr=lr, betas=(sc.b1, sc.b2), eps=1e-8)

  host = workload.synthetic_batch(args)
  images = torch.from_numpy(host['image'].transpose(0, 3, 1, 2).copy()).to(dev, dtype=dtype)
  labels = torch.from_numpy(host['label'].astype(np.int64)).to(dev)
  counts = workload.long_tail_counts(args.num_classes)
  bias = torch.from_numpy(balanced.bal_bce_bias(
      counts, config.bft.tau, config.bft.bias_form).astype(np.float32)).to(dev)
  smooth = config.bft.label_smoothing
  targets = F.one_hot(labels, args.num_classes).float() * (1 - smooth) + smooth / args.num_classes
  rng_np = np.random.RandomState(0)
  params = [p for p in model.parameters()]
  autocast = functools.partial(torch.autocast, device_type=dev, dtype=torch.bfloat16,
                               enabled=precision == 'autocast')
  forward = torch.compile(model) if compiled else model
  last = {}

  def run_one():
    if stage_name == 'bft':
      x, t = _mix(images, targets, rng_np)
      with autocast():
        logits = forward(x)
      # Summed over classes, mean over the batch, as livt_jax.losses.balanced.sigmoid_bce.
      loss = F.binary_cross_entropy_with_logits(logits.float() + bias, t,
                                                reduction='sum') / x.shape[0]
    else:
      with autocast():
        loss = forward(images)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    # The JAX step reports the gradient norm too (MAE's loss scaler computes it every step).
    torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
    opt.step()
    last['loss'] = loss.item()  # syncs, like block_until_ready
    if dev == 'cuda':
      torch.cuda.synchronize()

  def run(n):
    return measure.timed_steps(run_one, n)

  # The first step alone: with torch.compile it compiles (timed apart, see docstring).
  first = run(1)[0][0]
  run(max(args.warmup - 1, 0))
  runner = measure.Runner(
      stage_name, 'torch.compile' if compiled else 'torch', run, rss_before=rss_before,
      flops=flops, loss=lambda: last['loss'], first_step_s=first,
      impl=f'torch {torch.__version__} {impl}, {torch.get_num_threads()} threads, '
           f'{pairing.DESCRIBE[precision]}' + (', torch.compile (inductor)' if compiled else ''))
  runner.peak_rss = measure.peak_rss_bytes()
  if dev == 'cuda':
    runner.device_peak = int(torch.cuda.max_memory_allocated())
  return runner


MALLOC_LABELS = {'same': 'same as JAX', 'default': 'glibc default'}


def child_environ(malloc: str, environ) -> dict:
  """The PyTorch child's environment: 'same' allocator settings as this (JAX) process, or the
  'default' ones from before `host_malloc` re-executed it."""
  if malloc == 'same':
    env = dict(environ)
    env[host_malloc.OPT_OUT] = '0'  # already as this process: no re-exec in the child
  else:
    env = host_malloc.untuned_environ(environ)
  # torch.compile's compile time from a cold start, as XLA's is measured (inductor's on-disk
  # caches would make the second run's compile nearly free); a user's setting wins.
  env.setdefault('TORCHINDUCTOR_FORCE_DISABLE_CACHES', '1')
  return env


class TorchChild:
  """The PyTorch runners, in a child process with the given allocator settings.

  The child takes one command per line on stdin ('round KEY N', 'finish FLOPS') and answers on
  stdout, so timed rounds still alternate between the frameworks (which is what keeps the
  comparison fair on a machine whose speed drifts by 10-20% from minute to minute).
  """

  def __init__(self, argv: list[str], malloc: str = 'same'):
    self.malloc = malloc
    cmd = [sys.executable, '-m', 'benchmarks.step', *argv, '--torch_child']
    self.env = child_environ(malloc, os.environ)
    self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                 env=self.env)
    self.keys = json.loads(self._reply())  # built and warmed up: its runners' keys

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

  def timed_round(self, key: str, n: int):
    self._ask(f'round {key} {n}')

  def runners(self) -> list['ChildRunner']:
    return [ChildRunner(self, key, key.split('/')[0]) for key in self.keys]

  def finish(self, flops: dict, peak_tflops: float | None) -> list[dict]:
    """The child's results, with the FLOPs per step XLA counted for the same model."""
    results = json.loads(self._ask('finish ' + json.dumps({'flops': flops, 'peak': peak_tflops})))
    self.proc.wait()
    for r in results:
      r['malloc'] = MALLOC_LABELS[self.malloc]
      r['glibc_tunables'] = self.env.get('GLIBC_TUNABLES', '')
    return results


_CHILD_REPLY = '@@livt_benchmark '


@dataclasses.dataclass
class ChildRunner:
  """Stands for one of the child's runners in the parent's round-robin."""
  child: TorchChild
  key: str
  stage: str

  def timed_round(self, n: int):
    self.child.timed_round(self.key, n)


def serve_torch_child(args, stages: list[str]) -> None:
  """The child's side of `TorchChild`: eager runners, and compiled ones with --torch_compile."""
  precision, _ = pairing.torch_precision_for(args.precision, args.torch_precision)
  runners = {}
  for stage in stages:
    runners[f'{stage}/eager'] = build_torch_runner(stage, args, None, precision)
    if args.torch_compile:
      runners[f'{stage}/compiled'] = build_torch_runner(stage, args, None, precision, True)
  print(_CHILD_REPLY + json.dumps(list(runners)), flush=True)
  for line in sys.stdin:
    command, rest = line.strip().split(' ', 1)
    if command == 'round':
      key, n = rest.split()
      runners[key].timed_round(int(n))
      print(_CHILD_REPLY + 'done', flush=True)
    elif command == 'finish':
      told = json.loads(rest)
      for key, r in runners.items():
        r.flops = told['flops'].get(key.split('/')[0])
      results = [report.summarise(r, args, told['peak']) for r in runners.values()]
      for r in results:
        r['torch_precision'] = precision
      print(_CHILD_REPLY + json.dumps(results), flush=True)
      return
