r"""Plan a TPU run from any host: compile the real train steps for a TPU topology, ahead of time.

    python -m livt_jax.main --config=configs/inat18.py --aot=v5p:2x2x2
    python -m livt_jax.main --config=configs/cifar10_lt.py --aot=v5e:2x2 --config.mesh.fsdp=2

Needs libtpu, once (213 MB wheel, ~700 MB unpacked), installed next to the venv rather than in
it (installed in the venv, libtpu makes every jax start try the TPU backend first):

    .venv/bin/pip install --target .libtpu -r requirements-tpu-aot.txt

This module puts `.libtpu` (or `$LIVT_LIBTPU_DIR`) on sys.path itself; a libtpu already
importable (a TPU VM's venv) is used as it is.

For each stage of `config.stages` (mgp, bft) it builds the stage exactly as training does
(`train.build_stage` + `train.compile_step`, the config's mesh, precision, remat and
grad_accum_steps; precision 'auto' resolves to bfloat16 as on a TPU) over a Mesh of the
topology's abstract devices (`jax.experimental.topologies`), lowers it with the abstract train
state and batch (with their shardings) and compiles it with libtpu's XLA TPU compiler on this
CPU. From the executable it prints, per chip: memory (parameters + optimizer state, batch,
temporaries, outputs) against the chip's HBM, the FLOPs XLA counts per image (and an analytic
count of the model's matmuls as a check), images/s and wall time per epoch and per stage at the
chip's peak bf16 rate and at 50% MFU, and the collectives in the compiled HLO.

Times are FLOPs / (MFU x peak), with the FLOPs XLA will execute (under remat, recomputation
included) and the input pipeline assumed to keep up: a plan, not a measurement. When a stage
does not fit in 90% of the chip's usable HBM, a small grid (grad_accum_steps, mesh.fsdp, remat)
is compiled in order of expected cost until one fits, and its override line is printed.

Exit codes: 0 every stage fits; 3 some stage does not fit (the line to rerun with is printed
when the search found one); 2 an error (no libtpu, an unknown topology, a bad config).
"""
import copy
import dataclasses
import importlib.util
import itertools
import math
import os
import re
import shlex
import sys
import time

from livt_jax import chips

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBTPU_ENV = 'LIVT_LIBTPU_DIR'
INSTALL_HINT = '.venv/bin/pip install --target .libtpu -r requirements-tpu-aot.txt'
HEADROOM = 0.9        # a stage fits when it needs at most this share of the chip's usable HBM
PLAN_MFU = 0.5        # the utilisation the time estimates assume
MAX_SEARCH_COMPILES = 6
COLLECTIVES = ('all-reduce', 'all-gather', 'reduce-scatter', 'collective-permute', 'all-to-all')
EXIT_ERROR, EXIT_DOES_NOT_FIT = 2, 3


class AotError(ValueError):
  """A clear, one-line error of the AOT plan."""


# ----------------------------------------------------------------------------------------------
# libtpu and the topology.


def find_libtpu() -> str:
  """Where libtpu is (the dir holding the `libtpu` package); AotError with the install line if
  absent. Changes nothing: `libtpu_location` makes it importable.

  $LIVT_LIBTPU_DIR, when set, is the only place looked at; otherwise an importable `libtpu`
  (a TPU VM's venv), else `.libtpu` at the repository root.
  """
  wanted = os.environ.get(LIBTPU_ENV)
  if not wanted:
    spec = importlib.util.find_spec('libtpu')
    if spec is not None and spec.origin:
      return os.path.dirname(os.path.dirname(spec.origin))
    wanted = os.path.join(REPO, '.libtpu')
  wanted = os.path.abspath(wanted)
  if not os.path.isfile(os.path.join(wanted, 'libtpu', 'libtpu.so')):
    raise AotError(f'--aot needs libtpu, not found in {wanted}: install it once with '
                   f'`{INSTALL_HINT}` (in {REPO}; or set {LIBTPU_ENV} to where it is)')
  return wanted


def libtpu_location() -> str:
  """Makes libtpu importable (puts its dir first on sys.path) and returns where it is."""
  wanted = find_libtpu()
  if wanted not in sys.path:
    sys.path.insert(0, wanted)
  sys.modules.pop('libtpu', None)
  return wanted


@dataclasses.dataclass(frozen=True)
class Topology:
  name: str          # as given, e.g. 'v5e:4x4'
  chip: chips.Chip
  num_chips: int

  @property
  def accelerator_type(self) -> str:
    return self.chip.accelerator_type.format(chips=self.num_chips, cores=2 * self.num_chips)


def parse_topology(name: str) -> Topology:
  m = re.fullmatch(r'(v4|v5e|v5p|v6e):(\d+(?:x\d+){1,2})', name.strip())
  if not m:
    raise AotError(f'--aot={name!r}: use CHIP:TOPOLOGY with CHIP one of '
                   f'{", ".join(chips.TPU_CHIPS)}, e.g. --aot=v5e:4x4 (16 chips), '
                   '--aot=v5p:2x2x2 (8 chips), --aot=v4:2x2x4, --aot=v6e:2x4')
  chip = chips.CHIPS[m.group(1)]
  dims = [int(d) for d in m.group(2).split('x')]
  want = 3 if chip.name in ('v4', 'v5p') else 2
  if len(dims) != want or min(dims) < 1:
    raise AotError(f'--aot={name!r}: {chip.name} topologies have {want} dimensions, e.g. '
                   + ('v5p:2x2x2' if want == 3 else 'v5e:4x4'))
  return Topology(name.strip(), chip, math.prod(dims))


def topology_devices(topo: Topology):
  """The topology's abstract (compile-only) devices, one per chip."""
  # libtpu reads these at start-up; without them it prints warnings (no TPU metadata server).
  os.environ.setdefault('TPU_ACCELERATOR_TYPE', topo.accelerator_type)
  os.environ.setdefault('TPU_WORKER_HOSTNAMES', 'localhost')
  # Compiling touches no TPU: let several plans (or a plan and the tests) load libtpu at once
  # instead of failing on libtpu's /tmp/libtpu_lockfile.
  os.environ.setdefault('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  try:
    desc = topologies.get_topology_desc(platform='tpu', topology_name=topo.name,
                                        chip_config_name=topo.chip.chip_config_name)
  except Exception as e:  # pylint: disable=broad-except
    raise AotError(f'--aot={topo.name}: libtpu rejects this topology: '
                   f'{str(e).splitlines()[0]}') from e
  return list(desc.devices)


# ----------------------------------------------------------------------------------------------
# Counting.


def _block_fwd_flops(tokens: int, width: int, hidden: int) -> int:
  """Forward matmul FLOPs of one transformer block on one sample (2 per multiply-add)."""
  return 2 * tokens * width * (4 * width + 2 * hidden) + 4 * tokens * tokens * width


def analytic_flops_per_image(config, stage: str, channels: int, num_classes: int) -> float:
  """Matmul FLOPs of one training image: forward + backward (2x forward), less the patch
  embedding's input gradient; no recomputation. Elementwise ops, norms, softmax not counted."""
  from livt_jax.models import vit  # pylint: disable=g-import-not-at-top
  v = vit.config_size(config.model)
  width, depth = v['width'], v['depth']
  ratio = v.get('mlp_ratio', 4.0)
  p = config.model.patch_size
  n = (config[stage].image_size // p) ** 2
  patch_dim = p * p * channels
  patch_embed = 2 * n * patch_dim * width
  if stage == 'bft':
    fwd = patch_embed + depth * _block_fwd_flops(1 + n, width, int(width * ratio))
    fwd += 2 * width * num_classes
  else:
    kept = int(n * (1 - config.mgp.mask_ratio))
    dw = config.model.decoder_width
    fwd = (patch_embed + depth * _block_fwd_flops(1 + kept, width, int(width * ratio))
           + 2 * (1 + kept) * width * dw
           + config.model.decoder_depth * _block_fwd_flops(1 + n, dw, int(dw * ratio))
           + 2 * (1 + n) * dw * patch_dim)
  return float(3 * fwd - patch_embed)


_DTYPE_BYTES = {'pred': 1, 's8': 1, 'u8': 1, 's16': 2, 'u16': 2, 'f16': 2, 'bf16': 2, 's32': 4,
                'u32': 4, 'f32': 4, 's64': 8, 'u64': 8, 'f64': 8, 'c64': 8, 'c128': 16}
_SHAPE = re.compile(r'\b(' + '|'.join(_DTYPE_BYTES) + r'|f8\w*|s4|u4)\[([\d,]*)\]')
_OP = re.compile(r'=\s*(.*?)\s(' + '|'.join(COLLECTIVES) + r')(-start|-done)?\(')


def _shape_bytes(text: str) -> int:
  total = 0
  for dtype, dims in _SHAPE.findall(text):
    size = _DTYPE_BYTES.get(dtype, 1)
    total += size * math.prod(int(d) for d in dims.split(',') if d)
  return total


def collectives(hlo_text: str) -> dict:
  """{kind: (count, bytes)} of the collectives in compiled HLO text, per device.

  Counted where they appear in the program (an op inside a loop body, e.g. the micro-batch loop
  of gradient accumulation, counts once); bytes are each op's result shapes; an async pair
  (-start/-done) counts once, by its -done.
  """
  out = {}
  for line in hlo_text.splitlines():
    m = _OP.search(line)
    if not m or m.group(3) == '-start':
      continue
    count, size = out.get(m.group(2), (0, 0))
    out[m.group(2)] = (count + 1, size + _shape_bytes(m.group(1)))
  return out


def _tree_bytes_per_device(tree) -> int:
  import jax  # pylint: disable=g-import-not-at-top
  total = 0
  for leaf in jax.tree.leaves(tree):
    shape = leaf.sharding.shard_shape(leaf.shape) if leaf.sharding is not None else leaf.shape
    total += math.prod(shape) * leaf.dtype.itemsize
  return total


# ----------------------------------------------------------------------------------------------
# Compiling one stage.


@dataclasses.dataclass
class DataFacts:
  name: str
  num_train: int
  num_classes: int
  channels: int


@dataclasses.dataclass
class StageResult:
  stage: str
  overrides: dict            # config fields set for this compile (the search's candidates)
  num_chips: int
  global_batch: int
  micro_batch_per_chip: int
  steps_per_epoch: int
  total_steps: int
  epochs: float
  compile_s: float
  hbm_bytes: int
  error: str | None = None   # e.g. XLA's RESOURCE_EXHAUSTED line
  params_bytes: int = 0      # per chip (parameters, float32)
  opt_bytes: int = 0         # per chip (optimizer state and step counter)
  batch_bytes: int = 0
  argument_bytes: int = 0
  output_bytes: int = 0      # outputs not aliased to (donated) inputs
  temp_bytes: int = 0
  code_bytes: int = 0
  flops_per_step: float = 0.0  # per chip, as XLA counts the compiled step
  analytic_flops_per_image: float = 0.0
  collectives: dict = dataclasses.field(default_factory=dict)

  @property
  def total_bytes(self) -> int:
    return self.argument_bytes + self.output_bytes + self.temp_bytes + self.code_bytes

  @property
  def fits(self) -> bool:
    return self.error is None and self.total_bytes <= HEADROOM * self.hbm_bytes

  @property
  def flops_per_image(self) -> float:
    return self.flops_per_step * self.num_chips / self.global_batch


def for_target(config, overrides=None):
  """A copy of the config as a TPU run resolves it: precision 'auto' -> bfloat16, bft.randaug_on
  'auto' -> 'device'; overrides."""
  from livt_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from livt_jax.models import factory  # pylint: disable=g-import-not-at-top
  config = copy.deepcopy(config)
  config.precision = factory.resolved_precision(config, platform='tpu')
  if 'randaug_on' in config.bft:
    on_device = pipeline.randaug_on_device(config.bft, platform='tpu')
    config.bft.randaug_on = 'device' if on_device else 'host'
  for key, value in (overrides or {}).items():
    node = config
    *parents, leaf = key.split('.')
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def abstract_batch(config, stage_name: str, data: DataFacts, global_batch: int, sharding):
  """The global batch the training input pipeline feeds the step, as ShapeDtypeStructs with
  the batch sharding (`pipeline.abstract_train_batch` of a blank record: there is no data)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from livt_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from livt_jax.data import registry  # pylint: disable=g-import-not-at-top
  info = registry.get_info(config.dataset.name)
  size = config[stage_name].image_size
  record = {'image': np.zeros(info.image_shape or (size, size, data.channels), np.uint8),
            'label': 0}
  return pipeline.abstract_train_batch(
      [record], stage=stage_name, stage_config=config[stage_name], dataset_info=info,
      global_batch_size=global_batch, seed=config.seed, sharding=sharding)


def compile_stage(config, stage_name: str, devices, data: DataFacts, hbm_bytes: int,
                  overrides=None) -> StageResult:
  """Compiles the real train step of one stage for `devices`; never runs it."""
  from livt_jax import sharding  # pylint: disable=g-import-not-at-top
  from livt_jax import steps  # pylint: disable=g-import-not-at-top
  from livt_jax import train  # pylint: disable=g-import-not-at-top
  from livt_jax import validate  # pylint: disable=g-import-not-at-top
  from livt_jax.data import longtail  # pylint: disable=g-import-not-at-top

  config = for_target(config, overrides)
  validate.mesh_shape(config, len(devices))
  mesh = sharding.make_mesh(config, devices)
  stage = train.build_stage(config, stage_name, mesh, data.num_train, data.channels,
                            data.num_classes)
  if stage_name == 'mgp':
    loss_fn = steps.mgp_loss_fn(stage.model)
  else:  # class counts are constants of the loss: any long tail of the right length compiles alike
    counts = longtail.lt_class_sizes(max(data.num_train // data.num_classes, 1) * 10,
                                     data.num_classes, 10.0)
    loss_fn = steps.bft_loss_fn(stage.model, config, counts)
  step_fn = train.compile_step(stage, loss_fn, mesh, config)
  p = stage.plan
  batch = abstract_batch(config, stage_name, data, p.global_batch,
                         sharding.batch_sharding(mesh))
  n = len(devices)
  result = StageResult(
      stage=stage_name, overrides=dict(overrides or {}), num_chips=n,
      global_batch=p.global_batch,
      micro_batch_per_chip=p.global_batch // n // config.grad_accum_steps,
      steps_per_epoch=p.steps_per_epoch, total_steps=p.total_steps,
      epochs=float(config[stage_name].epochs), compile_s=0.0, hbm_bytes=hbm_bytes,
      analytic_flops_per_image=analytic_flops_per_image(config, stage_name, data.channels,
                                                        data.num_classes))
  result.params_bytes = _tree_bytes_per_device(stage.abstract_state.params)
  result.opt_bytes = _tree_bytes_per_device(stage.abstract_state) - result.params_bytes
  result.batch_bytes = _tree_bytes_per_device(batch)
  t0 = time.perf_counter()
  try:
    compiled = step_fn.lower(stage.abstract_state, batch).compile()
  except Exception as e:  # pylint: disable=broad-except
    message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if 'RESOURCE_EXHAUSTED' not in message:
      raise
    result.compile_s = time.perf_counter() - t0
    result.error = message
    return result
  result.compile_s = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  result.argument_bytes = int(mem.argument_size_in_bytes)
  result.output_bytes = int(mem.output_size_in_bytes - mem.alias_size_in_bytes)
  result.temp_bytes = int(mem.temp_size_in_bytes)
  result.code_bytes = int(mem.generated_code_size_in_bytes)
  result.flops_per_step = chips.compiled_flops(compiled, config.grad_accum_steps) or 0.0
  result.collectives = collectives(compiled.as_text())
  return result


# ----------------------------------------------------------------------------------------------
# Searching for a configuration that fits.


def _required_temp_bytes(error: str | None) -> float | None:
  """XLA's 'memory required for HLO temporaries (90.50G)' from a RESOURCE_EXHAUSTED line."""
  m = re.search(r'temporaries \(([\d.]+)([KMGT])\)', error or '')
  if not m:
    return None
  return float(m.group(1)) * 1024 ** ('KMGT'.index(m.group(2)) + 1)


def candidates(config, stage_name: str, num_chips: int, state_bound: bool = False) -> list[dict]:
  """Overrides to try, cheapest first: no remat before remat (it recomputes the forward pass);
  then, when activations dominate, fewer FSDP steps before more accumulation steps (which
  shrink the activations), and the other way round when the state (parameters and optimizer
  state, which FSDP splits) dominates."""
  fsdp0 = int(config.mesh.fsdp) if int(config.mesh.fsdp) > 0 else num_chips
  accum0, remat0 = int(config.grad_accum_steps), bool(config.remat)
  batch = config[stage_name].batch_size
  fsdps = [f for f in (fsdp0 * 2 ** k for k in range(12)) if f <= num_chips and not num_chips % f]
  accums = [a for a in (accum0 * 2 ** k for k in range(12))
            if not batch % (num_chips * a)]
  remats = [remat0] if remat0 else [False, True]
  grid = ([(r, a, f) for r in remats for a in accums for f in fsdps] if state_bound
          else [(r, a, f) for r in remats for f in fsdps for a in accums])
  out = []
  for remat, accum, fsdp in grid:
    if (remat, accum, fsdp) == (remat0, accum0, fsdp0):
      continue
    o = {}
    if fsdp != fsdp0:
      o['mesh.fsdp'] = fsdp
      if int(config.mesh.data) != -1:
        o['mesh.data'] = -1
    if accum != accum0:
      o['grad_accum_steps'] = accum
    if remat != remat0:
      o['remat'] = True
    out.append(o)
  return out


def _predicted_bytes(base: StageResult, config, overrides: dict) -> float | None:
  """An optimistic size of a candidate from the base compile: state / fsdp, temporaries /
  accum (they shrink less than that: fixed buffers, all-gathered parameters under FSDP), so a
  candidate predicted not to fit would not. None (no prediction) for remat candidates and when
  the base size is unknown."""
  if overrides.get('remat') and not config.remat:
    return None
  temp = base.temp_bytes if base.error is None else _required_temp_bytes(base.error)
  if temp is None:
    return None
  fsdp0 = int(config.mesh.fsdp)
  state = (base.params_bytes + base.opt_bytes) * fsdp0 / overrides.get('mesh.fsdp', fsdp0)
  accum0 = int(config.grad_accum_steps)
  return (state + base.batch_bytes + base.code_bytes
          + temp * accum0 / overrides.get('grad_accum_steps', accum0))


def search(config, base: StageResult, devices, data, hbm_bytes, say) -> StageResult | None:
  """Compiles candidates (cheapest first, skipping those predicted not to fit) until one fits."""
  tried = 0
  state = base.params_bytes + base.opt_bytes
  needed = base.total_bytes if base.error is None else _required_temp_bytes(base.error)
  state_bound = needed is not None and state >= 0.5 * needed
  for overrides in candidates(config, base.stage, len(devices), state_bound):
    guess = _predicted_bytes(base, config, overrides)
    if guess is not None and guess > HEADROOM * hbm_bytes:
      continue
    if tried == MAX_SEARCH_COMPILES:
      say(f'  search: stopped after {tried} compiles')
      return None
    tried += 1
    result = compile_stage(config, base.stage, devices, data, hbm_bytes, overrides)
    say(f'  try {override_line(overrides)}: {_fit_phrase(result)} '
        f'(compiled in {result.compile_s:.0f} s)')
    if result.fits:
      return result
  return None


def override_line(overrides: dict) -> str:
  return ' '.join(f'--config.{k}={v}' for k, v in overrides.items())


# ----------------------------------------------------------------------------------------------
# Reporting.


def _gib(n: float) -> str:
  """Bytes in GiB, or MiB / KiB where GiB would round to nothing."""
  if n >= 0.1 * chips.GIB or n == 0:
    return f'{n / chips.GIB:.2f} GiB'
  if n >= 2 ** 20:
    return f'{n / 2 ** 20:.1f} MiB'
  return f'{n / 2 ** 10:.1f} KiB'


def _flop(n: float) -> str:
  if n >= 1e12:
    return f'{n / 1e12:.2f} TFLOP'
  return f'{n / 1e9:.1f} GFLOP' if n >= 1e9 else f'{n / 1e6:.2f} MFLOP'


def _duration(seconds: float) -> str:
  if seconds < 1e-3:
    return f'{seconds * 1e6:.1f} us'
  if seconds < 1:
    return f'{seconds * 1e3:.1f} ms'
  if seconds < 120:
    return f'{seconds:.1f} s'
  if seconds < 7200:
    return f'{seconds / 60:.1f} min'
  if seconds < 2 * 86400:
    return f'{seconds / 3600:.1f} h'
  return f'{seconds / 86400:.1f} days'


def _chip_time(days: float) -> str:
  return f'{days * 24:.3g} chip-hours ({days:.2g} chip-days)'


def _fit_phrase(r: StageResult) -> str:
  if r.error is not None:
    return f'does not fit: XLA says "{r.error}"'
  share = r.total_bytes / r.hbm_bytes
  verdict = 'fits' if r.fits else f'does not fit (limit {HEADROOM:.0%})'
  return f'{_gib(r.total_bytes)} of {_gib(r.hbm_bytes)} per chip ({share:.0%}): {verdict}'


def estimates(r: StageResult, chip: chips.Chip) -> dict:
  """Throughput and time at the chip's peak and at PLAN_MFU, from XLA's FLOPs."""
  step_s_peak = r.flops_per_step / chip.peak_flops
  step_s = step_s_peak / PLAN_MFU
  stage_s = r.total_steps * step_s
  return {
      'images_per_sec_per_chip_peak': r.global_batch / r.num_chips / step_s_peak,
      'images_per_sec_per_chip': r.global_batch / r.num_chips / step_s,
      'step_s': step_s, 'epoch_s': r.steps_per_epoch * step_s, 'stage_s': stage_s,
      'chip_days': stage_s * r.num_chips / 86400,
  }


def report_lines(r: StageResult, chip: chips.Chip) -> list[str]:
  lines = [f'  compiled in {r.compile_s:.1f} s; global batch {r.global_batch} '
           f'({r.global_batch // r.num_chips}/chip, micro-batch {r.micro_batch_per_chip}/chip), '
           f'{r.steps_per_epoch} steps/epoch x {r.epochs:g} epochs = {r.total_steps} steps']
  if r.error is not None:
    lines.append(f'  memory per chip: parameters {_gib(r.params_bytes)} + optimizer state '
                 f'{_gib(r.opt_bytes)} + batch {_gib(r.batch_bytes)}; ' + _fit_phrase(r))
    return lines
  e = estimates(r, chip)
  lines += [
      f'  memory per chip: parameters {_gib(r.params_bytes)} + optimizer state '
      f'{_gib(r.opt_bytes)} + batch {_gib(r.batch_bytes)} (arguments {_gib(r.argument_bytes)}) '
      f'+ temporaries {_gib(r.temp_bytes)} + outputs {_gib(r.output_bytes)} + code '
      f'{_gib(r.code_bytes)} = {_fit_phrase(r)}',
      f'  FLOPs per image: {_flop(r.flops_per_image)} (XLA; {_flop(r.flops_per_step)} per chip '
      f'per step), analytic matmul count {_flop(r.analytic_flops_per_image)} '
      f'(XLA / analytic = {r.flops_per_image / r.analytic_flops_per_image:.2f})',
      f'  images/s per chip: {e["images_per_sec_per_chip_peak"]:,.0f} at peak bf16 '
      f'({chip.peak_tflops:g} TFLOP/s), {e["images_per_sec_per_chip"]:,.0f} at '
      f'{PLAN_MFU:.0%} MFU',
      f'  at {PLAN_MFU:.0%} MFU: {_duration(e["step_s"])}/step, {_duration(e["epoch_s"])}/epoch, '
      f'{_duration(e["stage_s"])} for the stage = {_chip_time(e["chip_days"])}',
      '  collectives per step (per chip, as written in the HLO): ' + (', '.join(
          f'{kind} x{count} ({_gib(size)})'
          for kind, (count, size) in sorted(r.collectives.items())) or 'none'),
  ]
  return lines


# ----------------------------------------------------------------------------------------------
# The command.


def data_facts(config) -> DataFacts:
  from livt_jax.data import registry  # pylint: disable=g-import-not-at-top
  info = registry.get_info(config.dataset.name)
  num_train = registry.lt_train_size(info, config.dataset.imbalance,
                                     config.dataset.get('val_per_class', 0))
  num_classes = info.num_classes
  if num_train is None:  # a user's image folder: its size is known only by reading it
    from livt_jax.data import sources  # pylint: disable=g-import-not-at-top
    source = sources.load_source(config.dataset, 'train')
    num_train, num_classes = len(source), source.num_classes
  return DataFacts(info.name, num_train, num_classes, info.num_channels)


def plan(config, topology: str, say=print, hbm_bytes: int | None = None) -> dict:
  """Compiles every training stage of `config.stages` for `topology`; returns the results.

  Returns {'stages': {name: StageResult}, 'fixes': {name: StageResult or None for stages that
  did not fit}, 'fits': bool}.
  """
  topo = parse_topology(topology)
  where = libtpu_location()
  if not os.environ.get('JAX_PLATFORMS'):
    os.environ['JAX_PLATFORMS'] = 'cpu'  # the host computes shapes; only libtpu compiles
  import jax  # pylint: disable=g-import-not-at-top
  from livt_jax import validate  # pylint: disable=g-import-not-at-top
  from livt_jax.models import vit  # pylint: disable=g-import-not-at-top
  jax.config.update('jax_threefry_partitionable', True)  # as run.run: the same step
  devices = topology_devices(topo)
  hbm = hbm_bytes or topo.chip.hbm_bytes
  stages = [s for s in validate.parse_stages(config) if s in ('mgp', 'bft')]
  if not stages:
    raise AotError(f'config.stages={config.stages!r}: nothing to compile (no mgp or bft)')
  target = for_target(config)
  validate.validate(target, len(devices), check_data=False)
  data = data_facts(config)
  data_axis, fsdp_axis = validate.mesh_shape(target, len(devices))
  say(f'AOT plan for {topo.name}: {len(devices)} x TPU {topo.chip.name} '
      f'({topo.chip.peak_tflops:g} TFLOP/s bf16, {_gib(hbm)} usable HBM per chip), libtpu in '
      f'{where}')
  say(f'config: ViT-{config.model.variant}/{config.model.patch_size} on {data.name} '
      f'({data.num_train:,} training images, {data.num_classes} classes); mesh data={data_axis} '
      f'x fsdp={fsdp_axis}, precision {target.precision} ({config.precision}), remat '
      f'{target.remat}, grad_accum_steps {target.grad_accum_steps}')
  vit.get_variant(config.model.variant)
  results, fixes = {}, {}
  for name in stages:
    say(f'{name}: {config[name].image_size} px, compiling the train step for {topo.name} ...')
    r = compile_stage(config, name, devices, data, hbm)
    results[name] = r
    for line in report_lines(r, topo.chip):
      say(line)
    if not r.fits:
      say(f'  {name} does not fit; searching grad_accum_steps, mesh.fsdp, remat ...')
      fix = search(config, r, devices, data, hbm, say)
      fixes[name] = fix
      if fix is not None:
        say(f'  {name} fits with: {override_line(fix.overrides)}')
        for line in report_lines(fix, topo.chip)[1:]:
          say(line)
      else:
        say(f'  {name}: nothing in the search grid fits; take a larger slice or a smaller batch')
  fits = all(r.fits for r in results.values())
  if fits:
    total = sum(estimates(r, topo.chip)['chip_days'] for r in results.values())
    say(f'fits: every stage needs at most {HEADROOM:.0%} of the usable HBM of {topo.name}; '
        f'{" + ".join(stages)}: {_chip_time(total)} at {PLAN_MFU:.0%} MFU')
  return {'stages': results, 'fixes': fixes, 'fits': fits, 'topology': topo}


def main(config, topology: str, traceback: bool = False, command: str | None = None) -> int:
  """`python -m livt_jax.main --config=... --aot=TOPOLOGY`: prints the plan; the exit code.

  `command`: the command line to repeat with the overrides found (default: this process's).
  """
  try:
    libtpu_location()  # first: without libtpu, one line and nothing else
    from absl import logging  # pylint: disable=g-import-not-at-top
    logging.set_verbosity(logging.WARNING)
    out = plan(config, topology)
  except (AotError, ValueError, FileNotFoundError) as e:
    if traceback:
      raise
    print(f'livt_jax: error: {e}', file=sys.stderr, flush=True)
    return EXIT_ERROR
  if out['fits']:
    return 0
  found = [f for f in out['fixes'].values() if f is not None]
  if found and len(found) == len(out['fixes']):
    merged = {}
    for f in found:
      for k, v in f.overrides.items():
        merged[k] = max(merged.get(k, v), v) if k != 'mesh.data' else v
    if command is None:
      command = 'python -m livt_jax.main ' + shlex.join(sys.argv[1:])
    print(f'does not fit as configured; rerun with the overrides found: {command} '
          f'{override_line(merged)}', flush=True)
  else:
    print('does not fit, and the search found no override that fits', flush=True)
  return EXIT_DOES_NOT_FIT
