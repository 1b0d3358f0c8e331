"""Where the AOT plan compiles for: TPU slices (libtpu) and GPU nodes (the CUDA PJRT plugin),
as abstract devices on a CPU host.

  TPU  CHIP:TOPOLOGY     v5e:4x4, v5p:2x2x2, v4:2x2x4, v6e:2x4 (one device per chip)
  GPU  GPU:N or GPU:MxN  h100:8 (one node of 8), a100-80g:2x8 (2 nodes x 8 GPUs), b200:8

The GPU's description is an XLA `GpuTargetConfigProto` shipped with the project
(`livt_jax/aot/specs/*.txtpb`, trimmed from openxla/xla's own specs, see each file's header).
"""
import dataclasses
import importlib.util
import math
import os
import re
import sys

from livt_jax.runtime import chips

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPECS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'specs')
LIBTPU_ENV = 'LIVT_LIBTPU_DIR'
CUDA_ENV = 'LIVT_CUDA_AOT_DIR'
INSTALL_HINT = '.venv/bin/pip install --target .libtpu -r requirements-tpu-aot.txt'
CUDA_INSTALL_HINT = '.venv/bin/pip install --target .cuda-aot -r requirements-gpu-aot.txt'
CUDA_PLUGIN_SO = os.path.join('jax_plugins', 'xla_cuda12', 'xla_cuda_plugin.so')
# A GPU run preallocates this share of each GPU's memory (JAX's default) and XLA's allocator
# never grows past it; XLA_PYTHON_CLIENT_MEM_FRACTION changes it, for the run and the plan.
DEFAULT_GPU_MEM_FRACTION = 0.75

# --aot name -> (chips.CHIPS key, target-config spec file).
GPU_TARGETS = {
    'h100': ('h100', 'h100_sxm.txtpb'),
    'a100-80g': ('a100', 'a100_sxm_80.txtpb'),
    'b200': ('b200', 'b200.txtpb'),
}


class AotError(ValueError):
  """A clear, one-line error of the AOT plan."""


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


def find_cuda_plugin() -> str:
  """Where the CUDA PJRT plugin is (the dir holding `jax_plugins/xla_cuda12`); AotError with
  the install line if absent. $LIVT_CUDA_AOT_DIR, else an importable plugin (a GPU venv with
  jax[cuda12]), else `.cuda-aot` at the repository root."""
  wanted = os.environ.get(CUDA_ENV)
  if not wanted:
    for path in sys.path:
      if path and os.path.isfile(os.path.join(path, CUDA_PLUGIN_SO)):
        return path
    wanted = os.path.join(REPO, '.cuda-aot')
  wanted = os.path.abspath(wanted)
  if not os.path.isfile(os.path.join(wanted, CUDA_PLUGIN_SO)):
    raise AotError(f'--aot for a GPU needs the CUDA PJRT plugin, not found in {wanted}: install '
                   f'it once with `{CUDA_INSTALL_HINT}` (in {REPO}; or set {CUDA_ENV} to where '
                   'it is)')
  return wanted


def _put_first_on_path(where: str) -> str:
  if where not in sys.path:
    sys.path.insert(0, where)
  return where


def libtpu_location() -> str:
  """Makes libtpu importable (puts its dir first on sys.path) and returns where it is."""
  where = _put_first_on_path(find_libtpu())
  sys.modules.pop('libtpu', None)
  return where


def cuda_plugin_location() -> str:
  """Makes the CUDA plugin discoverable by jax (call before jax's backends start)."""
  return _put_first_on_path(find_cuda_plugin())


@dataclasses.dataclass(frozen=True)
class Topology:
  name: str          # as given, e.g. 'v5e:4x4', 'h100:2x8'
  chip: chips.Chip
  num_chips: int     # devices: TPU chips or GPUs
  platform: str = 'tpu'   # 'tpu' or 'gpu'
  nodes: int = 1     # GPUs: hosts of num_chips / nodes GPUs each
  spec_file: str | None = None  # GPUs: the target-config text proto

  @property
  def accelerator_type(self) -> str:
    return self.chip.accelerator_type.format(chips=self.num_chips, cores=2 * self.num_chips)

  @property
  def device_word(self) -> str:
    return 'chip' if self.platform == 'tpu' else 'GPU'


def _parse_gpu(name: str) -> Topology:
  m = re.fullmatch(r'([a-z0-9-]+):(?:(\d+)x)?(\d+)', name)
  if not m or m.group(1) not in GPU_TARGETS:
    raise AotError(f'--aot={name!r}: use GPU:N or GPU:NODESxN with GPU one of '
                   f'{", ".join(GPU_TARGETS)}, e.g. --aot=h100:8, --aot=a100-80g:2x8')
  nodes, per_node = int(m.group(2) or 1), int(m.group(3))
  if nodes < 1 or per_node < 1:
    raise AotError(f'--aot={name!r}: need at least one node of one GPU')
  key, spec = GPU_TARGETS[m.group(1)]
  return Topology(name, chips.CHIPS[key], nodes * per_node, 'gpu', nodes,
                  os.path.join(SPECS, spec))


def parse_topology(name: str) -> Topology:
  name = name.strip()
  if name.split(':')[0] in GPU_TARGETS:
    return _parse_gpu(name)
  m = re.fullmatch(r'(v4|v5e|v5p|v6e):(\d+(?:x\d+){1,2})', name)
  if not m:
    raise AotError(f'--aot={name!r}: use CHIP:TOPOLOGY with CHIP one of '
                   f'{", ".join(chips.TPU_CHIPS)}, e.g. --aot=v5e:4x4 (16 chips), '
                   '--aot=v5p:2x2x2 (8 chips), --aot=v4:2x2x4, --aot=v6e:2x4; or GPU:N with GPU '
                   f'one of {", ".join(GPU_TARGETS)}, e.g. --aot=h100:8, --aot=a100-80g:2x8')
  chip = chips.CHIPS[m.group(1)]
  dims = [int(d) for d in m.group(2).split('x')]
  want = 3 if chip.name in ('v4', 'v5p') else 2
  if len(dims) != want or min(dims) < 1:
    raise AotError(f'--aot={name!r}: {chip.name} topologies have {want} dimensions, e.g. '
                   + ('v5p:2x2x2' if want == 3 else 'v5e:4x4'))
  return Topology(name, chip, math.prod(dims))


def spec_memory_bytes(spec_text: str) -> int:
  """`device_memory_size` of a GPU target-config text proto."""
  m = re.search(r'device_memory_size:\s*(\d+)', spec_text)
  if not m:
    raise AotError('the GPU target config has no device_memory_size')
  return int(m.group(1))


def gpu_mem_fraction() -> float:
  raw = os.environ.get('XLA_PYTHON_CLIENT_MEM_FRACTION')
  if raw is None:
    return DEFAULT_GPU_MEM_FRACTION
  try:
    fraction = float(raw)
  except ValueError:
    fraction = -1.0
  if not 0 < fraction <= 1:
    raise AotError(f'XLA_PYTHON_CLIENT_MEM_FRACTION={raw!r}: use a number in (0, 1], e.g. 0.9')
  return fraction


def usable_bytes(topo: Topology) -> int:
  """Memory one program may use per device: the TPU compiler's figure (chips.py); on a GPU the
  spec's device memory times the preallocated fraction (`gpu_mem_fraction`)."""
  if topo.platform == 'tpu':
    return topo.chip.hbm_bytes
  with open(topo.spec_file) as f:
    return int(spec_memory_bytes(f.read()) * gpu_mem_fraction())


def topology_devices(topo: Topology):
  """The topology's abstract (compile-only) devices, one per chip or GPU."""
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  if topo.platform == 'gpu':
    with open(topo.spec_file) as f:
      spec = f.read()
    try:
      desc = topologies.get_topology_desc(
          topo.chip.name, 'cuda', target_config=spec,
          topology=f'1x{topo.nodes}x{topo.num_chips // topo.nodes}')
    except Exception as e:  # pylint: disable=broad-except
      raise AotError(f'--aot={topo.name}: the CUDA plugin rejects this topology: '
                     f'{str(e).splitlines()[0]}') from e
    return list(desc.devices)
  # libtpu reads these at start-up; without them it prints warnings (no TPU metadata server).
  os.environ.setdefault('TPU_ACCELERATOR_TYPE', topo.accelerator_type)
  os.environ.setdefault('TPU_WORKER_HOSTNAMES', 'localhost')
  # Compiling touches no TPU: let several plans (or a plan and the tests) load libtpu at once
  # instead of failing on libtpu's /tmp/libtpu_lockfile.
  os.environ.setdefault('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')
  try:
    desc = topologies.get_topology_desc(platform='tpu', topology_name=topo.name,
                                        chip_config_name=topo.chip.chip_config_name)
  except Exception as e:  # pylint: disable=broad-except
    raise AotError(f'--aot={topo.name}: libtpu rejects this topology: '
                   f'{str(e).splitlines()[0]}') from e
  return list(desc.devices)


def prepare(topo: Topology) -> str:
  """Makes the topology's compiler loadable (before jax's backends start); where it is."""
  return cuda_plugin_location() if topo.platform == 'gpu' else libtpu_location()
