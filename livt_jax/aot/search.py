"""Searching for a configuration that fits: a small grid (remat, grad_accum_steps, mesh.fsdp)
compiled in order of expected cost until one fits."""
import re

from livt_jax.aot import compiling
from livt_jax.aot import report
from livt_jax.aot.compiling import HEADROOM

MAX_SEARCH_COMPILES = 6


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


def _predicted_bytes(base: compiling.StageResult, config, overrides: dict) -> float | None:
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


def search(config, base: compiling.StageResult, devices, data, hbm_bytes,
           say) -> compiling.StageResult | None:
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
    result = compiling.compile_stage(config, base.stage, devices, data, hbm_bytes, overrides,
                                    base.platform)
    say(f'  try {report.override_line(overrides)}: {report.fit_phrase(result)} '
        f'(compiled in {result.compile_s:.0f} s)')
    if result.fits:
      return result
  return None
