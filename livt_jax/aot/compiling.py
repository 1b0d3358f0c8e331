"""Compiling one training stage for abstract devices (TPU chips or GPUs), never running it:
the real `train.build_stage` + `train.compile_step`, lowered with the abstract state and batch,
and what XLA's executable says about memory, FLOPs and collectives (`StageResult`)."""
import copy
import dataclasses
import time

from livt_jax.runtime import chips
from livt_jax.aot import counting

HEADROOM = 0.9        # a stage fits when it needs at most this share of the usable memory


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
  platform: str = 'tpu'      # 'tpu' or 'gpu'
  # 'xla': XLA's cost analysis of the compiled step; 'analytic': the matmul count (the CUDA
  # compiler gives no cost analysis), without the recomputation of remat.
  flops_source: str = 'xla'

  @property
  def device_word(self) -> str:
    return 'chip' if self.platform == 'tpu' else 'GPU'

  @property
  def total_bytes(self) -> int:
    return self.argument_bytes + self.output_bytes + self.temp_bytes + self.code_bytes

  @property
  def fits(self) -> bool:
    return self.error is None and self.total_bytes <= HEADROOM * self.hbm_bytes

  @property
  def flops_per_image(self) -> float:
    return self.flops_per_step * self.num_chips / self.global_batch


def for_target(config, overrides=None, platform: str = 'tpu'):
  """A copy of the config as a run on `platform` ('tpu', 'gpu') resolves it: precision 'auto'
  -> bfloat16, bft.randaug_on 'auto' -> 'device'; overrides."""
  from livt_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from livt_jax.models import factory  # pylint: disable=g-import-not-at-top
  config = copy.deepcopy(config)
  config.precision = factory.resolved_precision(config, platform=platform)
  if 'randaug_on' in config.bft:
    on_device = pipeline.randaug_on_device(config.bft, platform=platform)
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
                  overrides=None, platform: str = 'tpu') -> StageResult:
  """Compiles the real train step of one stage for `devices` (of `platform`); never runs it.
  `hbm_bytes`: the memory one program may use per device."""
  from livt_jax.engine import sharding  # pylint: disable=g-import-not-at-top
  from livt_jax.engine import steps  # pylint: disable=g-import-not-at-top
  from livt_jax.engine import train  # pylint: disable=g-import-not-at-top
  from livt_jax import validate  # pylint: disable=g-import-not-at-top
  from livt_jax.data import longtail  # pylint: disable=g-import-not-at-top

  config = for_target(config, overrides, platform)
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
      platform=platform,
      analytic_flops_per_image=counting.analytic_flops_per_image(config, stage_name, data.channels,
                                                        data.num_classes))
  result.params_bytes = counting.tree_bytes_per_device(stage.abstract_state.params)
  result.opt_bytes = counting.tree_bytes_per_device(stage.abstract_state) - result.params_bytes
  result.batch_bytes = counting.tree_bytes_per_device(batch)
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
  flops = chips.compiled_flops(compiled, config.grad_accum_steps)
  if flops is None:  # no cost analysis (the CUDA compiler): the analytic count
    flops = result.analytic_flops_per_image * p.global_batch / n
    result.flops_source = 'analytic'
  result.flops_per_step = flops
  result.collectives = counting.collectives(compiled.as_text())
  return result


