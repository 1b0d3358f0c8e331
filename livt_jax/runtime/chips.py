"""Accelerator chips: peak bf16 FLOP/s and memory per chip, and FLOP accounting (MFU).

Used by the AOT plan (`livt_jax/aot/`: does a config fit a TPU slice or GPU node, how long)
and by every run (`engine/train.py`, `benchmarks/step.py`: TFLOP/s and MFU per device).

Where the figures come from:
  * peak_tflops: dense bf16 peak per chip from the vendors' data sheets: Google Cloud TPU
    "system architecture" pages (v4 275, v5e 197, v5p 459, v6e 918 TFLOP/s per chip);
    NVIDIA data sheets, dense (no 2:4 sparsity), SXM boards: A100 312, H100 989 (PCIe 756),
    H200 989 TFLOP/s; B200 2,250 (the HGX B200 data sheet's FP16/BF16 Tensor Core 4.5 PFLOPS
    per GPU is with sparsity: dense is half). XLA's target-config specs agree (openxla/xla
    xla/backends/gpu/target_config/specs/*.txtpb, bf16 matrix_unit_description rate: 4 units x
    ops_per_clock x cores x clock x 2 = 989 TFLOP/s on h100_sxm, 2,225 on b200).
  * hbm_gib: HBM per chip as published (v4 32 GiB, v5e 16 GB, v5p 95 GB, v6e 32 GB; A100 80 GB,
    H100 80 GB, H200 141 GB, B200 180 GB). The GPU AOT plan uses the spec's device_memory_size
    times the preallocated share instead (livt_jax/aot/topology.py: usable_bytes).
  * usable_hbm_gib (TPUs): what XLA lets one program use, read from libtpu 0.0.42.1's own
    RESOURCE_EXHAUSTED message ("... exceeds available HBM (15.75G)") when compiling a program
    too large for each chip on this machine. The AOT plan checks fit against this figure.
"""
import dataclasses

GIB = 1 << 30


@dataclasses.dataclass(frozen=True)
class Chip:
  name: str                  # 'v5e', 'h100', ...
  peak_tflops: float         # dense bf16 TFLOP/s per chip (per JAX device: one device per chip)
  hbm_gib: float             # HBM per chip as published
  usable_hbm_gib: float | None = None  # TPUs: what XLA's TPU compiler lets a program use
  kind_substrings: tuple = ()  # lower-case substrings of jax's `device.device_kind`
  # TPUs only: the `get_topology_desc` chip config (one JAX device per chip; v4 and v5p have
  # two TensorCores per chip, driven as one 'megacore' device as on a real TPU VM), and the
  # accelerator-type name of a slice of n chips (libtpu reads TPU_ACCELERATOR_TYPE).
  chip_config_name: str | None = None
  accelerator_type: str | None = None  # format string with {chips} / {cores}

  @property
  def hbm_bytes(self) -> int:
    """The memory a program may use on one chip (usable where known, else as published)."""
    return int((self.usable_hbm_gib or self.hbm_gib) * GIB)

  @property
  def peak_flops(self) -> float:
    return self.peak_tflops * 1e12


# First match of `kind_substrings` wins in `for_device_kind`, so 'v5 lite' comes before 'v5'.
CHIPS = {
    c.name: c for c in (
        Chip('v6e', 918.0, 32.0, 31.25, ('v6 lite', 'v6e'), 'default', 'v6e-{chips}'),
        Chip('v5e', 197.0, 16.0, 15.75, ('v5 lite', 'v5e'), 'default', 'v5litepod-{chips}'),
        Chip('v5p', 459.0, 95.0, 95.74, ('v5p', 'v5'), 'megacore', 'v5p-{cores}'),
        Chip('v4', 275.0, 32.0, 30.75, ('v4',), 'megacore', 'v4-{cores}'),
        Chip('b200', 2250.0, 180.0, None, ('b200',)),
        Chip('h200', 989.0, 141.0, None, ('h200',)),
        Chip('h100-pcie', 756.0, 80.0, None, ('h100 pcie',)),
        Chip('h100', 989.0, 80.0, None, ('h100',)),
        Chip('a100', 312.0, 80.0, None, ('a100',)),
    )
}
TPU_CHIPS = ('v4', 'v5e', 'v5p', 'v6e')


def for_device_kind(device_kind: str) -> Chip | None:
  """The chip of a jax `device.device_kind` ('TPU v5 lite', 'NVIDIA H100 80GB HBM3'), or None."""
  kind = device_kind.lower()
  for chip in CHIPS.values():
    if any(s in kind for s in chip.kind_substrings):
      return chip
  return None


def peak_flops_per_device(device, override_tflops: float | None = None) -> float | None:
  """Peak bf16 FLOP/s of one jax device: the override, else the table; None on CPU/unknown."""
  if override_tflops:
    return float(override_tflops) * 1e12
  if device.platform == 'cpu':
    return None
  chip = for_device_kind(device.device_kind)
  return chip.peak_flops if chip else None


def compiled_cost(compiled) -> dict | None:
  """XLA's cost analysis of a compiled executable ('flops', 'bytes accessed', ...); None if
  unknown."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if isinstance(cost, (list, tuple)):  # older jax: one dict per computation
    cost = cost[0] if cost else None
  return cost or None


def compiled_flops(compiled, loop_trips: int = 1) -> float | None:
  """FLOPs XLA counts for one call of a compiled executable, per device; None if unknown.

  XLA's cost analysis counts the body of a loop once, whatever its trip count: a train step
  with gradient accumulation (a scan over `grad_accum_steps` micro-batches) reports about
  1/grad_accum_steps of its FLOPs. `loop_trips` scales the count back; the work outside the
  loop (the optimizer update, ~tens of FLOPs per parameter) is then over-counted, which is
  <0.1% of a ViT-B step but ~5-15% of the tests' 2-block toy model.
  """
  cost = compiled_cost(compiled)
  if not cost or not cost.get('flops'):
    return None
  return float(cost['flops']) * loop_trips


@dataclasses.dataclass(frozen=True)
class Accounting:
  """Turns a measured step rate into FLOP/s per device and MFU.

  flops_per_step: per device, as XLA counts the compiled step (recomputation under remat
  included). peak_flops: per device, None where unknown (CPU): then there is no MFU.
  """
  flops_per_step: float | None
  peak_flops: float | None
  num_devices: int

  def scalars(self, steps_per_sec: float, global_batch: int) -> dict:
    out = {'images_per_sec_per_device': steps_per_sec * global_batch / self.num_devices}
    if self.flops_per_step:
      flops_per_sec = self.flops_per_step * steps_per_sec
      out['tflops_per_sec_per_device'] = flops_per_sec / 1e12
      if self.peak_flops:
        out['mfu'] = flops_per_sec / self.peak_flops
    return out


def accounting_for_step(step_fn, state, batch, devices, override_tflops=None,
                        grad_accum_steps: int = 1) -> Accounting:
  """Compiles a jitted step for these arguments (jit's cache keeps the executable, so the next
  call does not compile again) and reads its FLOPs (see `compiled_flops` for accumulation). A
  step that is not a jitted function (a test's wrapper) has no FLOP count: no TFLOP/s, no MFU."""
  lower = getattr(step_fn, 'lower', None)
  flops = (compiled_flops(lower(state, batch).compile(), grad_accum_steps)
           if lower is not None else None)
  return Accounting(flops, peak_flops_per_device(devices[0], override_tflops), len(devices))
