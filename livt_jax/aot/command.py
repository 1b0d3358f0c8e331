"""`python -m livt_jax.main --aot=TOPOLOGY`: compiles every stage, prints the report, searches
for overrides where a stage does not fit, writes the plan as JSON (`--aot_json`)."""
import os
import shlex
import sys

from livt_jax.aot import compiling
from livt_jax.aot import record
from livt_jax.aot import report
from livt_jax.aot import search
from livt_jax.aot import topology
from livt_jax.aot.compiling import DataFacts
from livt_jax.aot.compiling import HEADROOM
from livt_jax.aot.report import PLAN_MFU
from livt_jax.aot.topology import AotError

EXIT_ERROR, EXIT_DOES_NOT_FIT = 2, 3


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


def plan(config, topology_name: str, say=print, hbm_bytes: int | None = None) -> dict:
  """Compiles every training stage of `config.stages` for `topology_name`; returns the results.

  Returns {'stages': {name: StageResult}, 'fixes': {name: StageResult or None for stages that
  did not fit}, 'fits': bool, 'topology': Topology, 'usable_bytes': int, 'compiler_dir': str}.
  `hbm_bytes`: the memory per device to plan with (default: `topology.usable_bytes`).
  """
  topo = topology.parse_topology(topology_name)
  where = topology.prepare(topo)
  if not os.environ.get('JAX_PLATFORMS'):
    os.environ['JAX_PLATFORMS'] = 'cpu'  # the host computes shapes; only the plugin compiles
  if topo.platform == 'gpu':
    from livt_jax.runtime import gpu_flags  # pylint: disable=g-import-not-at-top
    gpu_flags.add()  # the flags a GPU run sets (livt_jax.main): the same executable
  import jax  # pylint: disable=g-import-not-at-top
  from livt_jax import validate  # pylint: disable=g-import-not-at-top
  from livt_jax.models import vit  # pylint: disable=g-import-not-at-top
  if not jax.config.jax_platforms:  # jax imported before the environment was set
    jax.config.update('jax_platforms', 'cpu')
  jax.config.update('jax_threefry_partitionable', True)  # as run.run: the same step
  hbm = hbm_bytes or topology.usable_bytes(topo)
  devices = topology.topology_devices(topo)
  stages = [s for s in validate.parse_stages(config) if s in ('mgp', 'bft')]
  if not stages:
    raise AotError(f'config.stages={config.stages!r}: nothing to compile (no mgp or bft)')
  target = compiling.for_target(config, platform=topo.platform)
  validate.validate(target, len(devices), check_data=False)
  data = data_facts(config)
  data_axis, fsdp_axis = validate.mesh_shape(target, len(devices))
  w = topo.device_word
  if topo.platform == 'gpu':
    say(f'AOT plan for {topo.name}: {len(devices)} x {devices[0].device_kind} '
        f'({topo.nodes} node(s) x {len(devices) // topo.nodes}; {topo.chip.peak_tflops:g} '
        f'TFLOP/s bf16, {report.gib(hbm)} usable per GPU = '
        f'{topology.gpu_mem_fraction():.0%} preallocated (XLA_PYTHON_CLIENT_MEM_FRACTION)), '
        f'CUDA plugin in {where}')
  else:
    say(f'AOT plan for {topo.name}: {len(devices)} x TPU {topo.chip.name} '
        f'({topo.chip.peak_tflops:g} TFLOP/s bf16, {report.gib(hbm)} usable HBM per chip), '
        f'libtpu in {where}')
  say(f'config: ViT-{config.model.variant}/{config.model.patch_size} on {data.name} '
      f'({data.num_train:,} training images, {data.num_classes} classes); mesh data={data_axis} '
      f'x fsdp={fsdp_axis}, precision {target.precision} ({config.precision}), remat '
      f'{target.remat}, grad_accum_steps {target.grad_accum_steps}'
      + (f', RandAugment on the {target.bft.randaug_on}' if 'randaug_on' in target.bft else ''))
  vit.config_size(config.model)
  results, fixes = {}, {}
  for name in stages:
    say(f'{name}: {config[name].image_size} px, compiling the train step for {topo.name} ...')
    r = compiling.compile_stage(config, name, devices, data, hbm, platform=topo.platform)
    results[name] = r
    for line in report.report_lines(r, topo.chip):
      say(line)
    if not r.fits:
      say(f'  {name} does not fit; searching grad_accum_steps, mesh.fsdp, remat ...')
      fix = search.search(config, r, devices, data, hbm, say)
      fixes[name] = fix
      if fix is not None:
        say(f'  {name} fits with: {report.override_line(fix.overrides)}')
        for line in report.report_lines(fix, topo.chip)[1:]:
          say(line)
      else:
        say(f'  {name}: nothing in the search grid fits; take a larger slice or a smaller batch')
  fits = all(r.fits for r in results.values())
  if fits:
    total = sum(report.estimates(r, topo.chip)['chip_days'] for r in results.values())
    memory = 'HBM' if topo.platform == 'tpu' else 'memory'
    say(f'fits: every stage needs at most {HEADROOM:.0%} of the usable {memory} of {topo.name}; '
        f'{" + ".join(stages)}: {report.device_time(total, w)} at {PLAN_MFU:.0%} MFU')
  return {'stages': results, 'fixes': fixes, 'fits': fits, 'topology': topo,
          'usable_bytes': hbm, 'compiler_dir': where}


def main(config, topology_name: str, traceback: bool = False, command: str | None = None,
         json_path: str | None = None, argv: list[str] | None = None) -> int:
  """`python -m livt_jax.main --config=... --aot=TOPOLOGY [--aot_json=PATH]`: prints the plan
  (and writes it as JSON to `json_path`); the exit code.

  `command`: the command line to repeat with the overrides found (default: this process's);
  `argv`: the arguments the JSON records (default: this process's).
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  try:
    topo = topology.parse_topology(topology_name)
    topology.prepare(topo)  # first: without the compiler, one line and nothing else
    from absl import logging  # pylint: disable=g-import-not-at-top
    logging.set_verbosity(logging.WARNING)
    out = plan(config, topology_name)
  except (AotError, ValueError, FileNotFoundError) as e:
    if traceback:
      raise
    print(f'livt_jax: error: {e}', file=sys.stderr, flush=True)
    return EXIT_ERROR
  if json_path:
    record.write(json_path, record.plan_record(out, argv, out['compiler_dir']))
    print(f'plan written to {json_path}', flush=True)
  if out['fits']:
    return 0
  found = [f for f in out['fixes'].values() if f is not None]
  if found and len(found) == len(out['fixes']):
    merged = {}
    for f in found:
      for k, v in f.overrides.items():
        merged[k] = max(merged.get(k, v), v) if k != 'mesh.data' else v
    if command is None:
      command = 'python -m livt_jax.main ' + shlex.join(argv)
    print(f'does not fit as configured; rerun with the overrides found: {command} '
          f'{report.override_line(merged)}', flush=True)
  else:
    print('does not fit, and the search found no override that fits', flush=True)
  return EXIT_DOES_NOT_FIT
