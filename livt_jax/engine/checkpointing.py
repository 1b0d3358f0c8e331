"""Orbax checkpoints of the train state together with the grain iterator position.

When to save is orbax's decision (`mngr.should_save(step)`): every `checkpoint_every_steps`,
every `checkpoint_every_minutes` (decided on process 0 and broadcast, so all processes save
the same step), and at a preemption sync point.
"""
import dataclasses
import datetime
import sys

import grain
import jax
import orbax.checkpoint as ocp

from livt_jax.engine import optim
from livt_jax.runtime import paths

_policies = ocp.checkpoint_managers


@dataclasses.dataclass
class _StepTime:
  step: int
  time: datetime.datetime


@dataclasses.dataclass
class _EveryMinutes(_policies.ContinuousCheckpointingPolicy):
  """orbax's time-based policy, with the clock starting when the stage starts.

  orbax's own saves at once when nothing is saved yet; a fresh stage should first run
  `minimum_interval_secs`.
  """
  started: datetime.datetime = dataclasses.field(
      default_factory=lambda: datetime.datetime.now(tz=datetime.timezone.utc))

  def should_save(self, step, previous_steps, *, context):
    if not previous_steps:
      previous_steps = [_StepTime(-1, self.started)]
    return super().should_save(step, previous_steps, context=context)


def save_policy(config) -> _policies.SaveDecisionPolicy:
  policies = [_policies.PreemptionCheckpointingPolicy()]
  if config.checkpoint_every_steps:
    policies.append(_policies.FixedIntervalPolicy(int(config.checkpoint_every_steps)))
  if config.checkpoint_every_minutes:
    policies.append(_EveryMinutes(
        minimum_interval_secs=max(1, round(60 * config.checkpoint_every_minutes))))
  return _policies.AnySavePolicy(policies)


def manager(directory, config) -> ocp.CheckpointManager:
  """The checkpoint manager of a stage dir (local or gs://)."""
  options = ocp.CheckpointManagerOptions(
      max_to_keep=config.keep_checkpoints, create=True, save_decision_policy=save_policy(config))
  return ocp.CheckpointManager(paths.native(paths.resolve(directory)), options=options,
                               item_names=('state', 'data'))


def abstract_with_shardings(abstract_tree, shardings):
  return jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_tree, shardings)


class CheckpointSaveError(RuntimeError):
  """A checkpoint could not be written (disk full, permissions); earlier ones are intact."""


def _save_failed(mngr, step, error: Exception):
  # OSError from Python writers (ENOSPC, EACCES); TensorStore reports its I/O errors as
  # ValueError with the OS message inside.
  reason = getattr(error, 'strerror', None) or str(error).splitlines()[0]
  complete = [s for s in mngr.all_steps() if s != step]
  resume = f'it resumes from step {max(complete)}' if complete else 'it starts the stage over'
  return CheckpointSaveError(
      f'the checkpoint of step {step} could not be written to {mngr.directory} '
      f'({reason}); the complete checkpoints there are intact '
      f'(steps {complete}). Free space or fix access (or use another --workdir), then rerun '
      f'the same command: {resume}.')


def save(mngr: ocp.CheckpointManager, step: int, state, iterator=None):
  """Starts an asynchronous save of the state (and data position) at `step`."""
  items = {'state': ocp.args.StandardSave(state)}
  if iterator is not None:
    items['data'] = grain.checkpoint.CheckpointSave(iterator)
  try:
    mngr.save(step, args=ocp.args.Composite(**items), force=True)
  except (OSError, ValueError) as e:
    raise _save_failed(mngr, step, e) from e


def wait(mngr: ocp.CheckpointManager):
  """Waits for the asynchronous save in flight; its write errors surface here."""
  step = mngr.latest_step()
  try:
    mngr.wait_until_finished()
  except (OSError, ValueError) as e:
    raise _save_failed(mngr, step, e) from e


def restore(mngr: ocp.CheckpointManager, abstract_state, iterator=None, step=None):
  """Restores the state (already sharded as `abstract_state` says) and, if given, the iterator.

  Raises:
    CheckpointMismatchError: the checkpoint holds another model (variant, classes, patch
      size, MGP vs BFT); the message names both and the setting to change.
    CheckpointUnreadableError: the step cannot be read (corrupt or truncated files, not an
      orbax checkpoint); the message names the directory and what to do.
    FileNotFoundError: the directory holds no checkpoint step.
  """
  step = mngr.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(
        f'no checkpoint in {mngr.directory}; point the setting at WORKDIR/<stage>/checkpoints '
        'of a run that saved at least once')
  # On failure the filter stays: reads abandoned by a failed read finish later.
  previous_hook = sys.unraisablehook
  sys.unraisablehook = _drop_abandoned_read_callbacks(previous_hook)
  _check_same_model(mngr, step, abstract_state)
  items = {'state': ocp.args.StandardRestore(abstract_state)}
  if iterator is not None:
    items['data'] = grain.checkpoint.CheckpointRestore(iterator)
  try:
    restored = mngr.restore(step, args=ocp.args.Composite(**items))
  except Exception as e:  # pylint: disable=broad-except
    # orbax / tensorstore / grain raise many types (ValueError, KeyError, OSError, ...).
    reason = _first_line(e)
    if 'do not match' in reason or 'not compatible with the stored shape' in reason:
      raise CheckpointMismatchError(
          f'checkpoint {mngr.directory} step {step} does not fit the model of this config '
          f'({reason}); use the config it was written with, or a fresh --workdir') from e
    raise CheckpointUnreadableError(_unreadable_message(mngr, step, e)) from e
  sys.unraisablehook = previous_hook
  return restored['state']


class CheckpointMismatchError(ValueError):
  """A checkpoint of another model than the config builds (variant, classes, stage)."""


class CheckpointUnreadableError(ValueError):
  """A checkpoint step that cannot be read (corrupt, truncated, not an orbax checkpoint)."""


def _drop_abandoned_read_callbacks(previous):
  """An unraisable-exception hook without the noise of a failed restore.

  When one array of a checkpoint cannot be read, orbax closes its event loop while the reads
  of the other arrays are still in flight; each of them then fails to call back into the
  closed loop, and Python prints a traceback per array ('RuntimeError: Event loop is closed')
  after our one-line error. Only that exception is dropped; any other goes to `previous`.
  """
  if getattr(previous, 'livt_drops_abandoned_reads', False):
    return previous

  def hook(unraisable):
    error = unraisable.exc_value
    if isinstance(error, RuntimeError) and str(error) == 'Event loop is closed':
      return
    previous(unraisable)
  hook.livt_drops_abandoned_reads = True
  return hook


def _first_line(error: Exception) -> str:
  text = str(error).strip()
  line = text.splitlines()[0] if text else ''
  line = line.split(' [tensorstore_spec', 1)[0]  # tensorstore appends kilobytes of JSON
  return f'{type(error).__name__}: {line if len(line) <= 400 else line[:400] + "..."}'


def _step_dir(mngr, step):
  try:
    return ocp.step.find_step_path(mngr.directory, ocp.step.standard_name_format(), step=step)
  except ValueError:  # not there (any more): name the path the standard format gives
    return mngr.directory / str(step)


def _unreadable_message(mngr, step, error) -> str:
  earlier = [s for s in mngr.all_steps() if s < step]
  if earlier:
    fallback = (f'delete the broken step dir {_step_dir(mngr, step)} to resume from step '
                f'{max(earlier)}, or point the setting at another checkpoint dir')
  else:
    fallback = (f'delete {_step_dir(mngr, step)} (the only step; the stage then starts '
                'over) or point the setting at another checkpoint dir')
  return (f'cannot read checkpoint {mngr.directory} step {step} ({_first_line(error)}); it is '
          f'corrupt, truncated or not an orbax checkpoint of livt_jax: {fallback}')


def _shapes(tree, prefix='') -> dict:
  """{'a/b/c': shape} of a nested dict of arrays / ShapeDtypeStructs / orbax ArrayMetadata."""
  out = {}
  for key, value in tree.items():
    path = f'{prefix}{key}'
    if isinstance(value, dict):
      out.update(_shapes(value, path + '/'))
    else:
      out[path] = tuple(getattr(value, 'shape', ()))
  return out


def _model_of(shapes: dict) -> dict:
  """What a parameter tree is: MGP (MAE) or BFT (classifier), width, depth, classes, patch."""
  blocks = {k.split('/')[1] for k in shapes if k.startswith('encoder/block_')}
  norm = shapes.get('encoder/encoder_norm/scale')
  patch = shapes.get('encoder/patch_embed/kernel')
  head = shapes.get('head/kernel')
  return dict(kind='MGP' if any(k.startswith('decoder') for k in shapes)
              else 'BFT' if head else None,
              width=norm[0] if norm else None, depth=len(blocks), classes=head[-1] if head else None,
              patch=patch[:2] if patch else None, channels=patch[2] if patch else None)


def _vit_name(width, depth) -> str:
  from livt_jax.models import vit  # pylint: disable=g-import-not-at-top
  names = [n for n, v in vit.VARIANTS.items() if (v['width'], v['depth']) == (width, depth)]
  return f'ViT-{names[0]}' if names else 'ViT'


def _check_same_average(mngr, step, tree, abstract_state) -> None:
  """A checkpoint with a weight average (bft.ema_decay > 0) restores only into a config with one,
  and one without only into a config without: say so before orbax fails on the tree."""
  stored = optim.ema_params(tree.get('opt_state')) is not None
  wanted = optim.ema_params(abstract_state.opt_state) is not None
  if stored != wanted:
    raise CheckpointMismatchError(
        f'checkpoint {mngr.directory} step {step} was written '
        f'{"with" if stored else "without"} a weight average but this config has '
        f'{"none" if stored else "one"}; set --config.bft.ema_decay '
        f'{"> 0" if stored else "= 0"} as the run had it (its WORKDIR/config.json)')


def _check_same_model(mngr, step, abstract_state) -> None:
  """Compares the stored parameter shapes with the config's before reading any array."""
  try:
    # Read with the handler the state was saved with (a fresh manager does not know it).
    stored = ocp.StandardCheckpointHandler().metadata(_step_dir(mngr, step) / 'state')
    tree = getattr(stored, 'tree', stored)
    stored_params = tree.get('params') if isinstance(tree, dict) else None
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointUnreadableError(_unreadable_message(mngr, step, e)) from e
  if not isinstance(stored_params, dict):
    raise CheckpointUnreadableError(_unreadable_message(
        mngr, step, ValueError('no parameters in its metadata')))
  have, want = _shapes(stored_params), _shapes(abstract_state.params)
  if have == want:
    _check_same_average(mngr, step, tree, abstract_state)
    return
  a, b = _model_of(have), _model_of(want)
  where = f'checkpoint {mngr.directory} step {step}'
  if a['kind'] != b['kind'] and None not in (a['kind'], b['kind']):
    kinds = {'MGP': 'an MGP (MAE) checkpoint', 'BFT': 'a BFT (classifier) checkpoint'}
    raise CheckpointMismatchError(
        f'{where} is {kinds[a["kind"]]} but {kinds[b["kind"]]} is needed here; bft.init_from '
        'takes WORKDIR/mgp/checkpoints, evaluate.checkpoint WORKDIR/bft/checkpoints')
  if (a['width'], a['depth']) != (b['width'], b['depth']):
    have_name, want_name = _vit_name(a['width'], a['depth']), _vit_name(b['width'], b['depth'])
    fix = (f'set --config.model.variant={have_name[4:]}' if have_name != 'ViT'
           else 'set model.variant to the variant it was trained with')
    raise CheckpointMismatchError(
        f'{where} holds a {have_name} (width {a["width"]}, depth {a["depth"]}) but the config '
        f'asks for {want_name} (width {b["width"]}, depth {b["depth"]}); {fix} to use it, or '
        'point at a checkpoint of the configured variant (for a resumed run: a fresh --workdir)')
  if a['patch'] != b['patch'] or a['channels'] != b['channels']:
    raise CheckpointMismatchError(
        f'{where} has patch {a["patch"]} with {a["channels"]} input channels but the config '
        f'builds patch {b["patch"]} with {b["channels"]}; set --config.model.patch_size='
        f'{a["patch"][0] if a["patch"] else "?"} (and the dataset it was trained on) to use it')
  if a['classes'] != b['classes']:
    raise CheckpointMismatchError(
        f'{where} has a {a["classes"]}-class head but the data has {b["classes"]} classes; '
        'evaluate it on the dataset it was trained on, or fine-tune a new head from the MGP '
        'encoder (bft.init_from)')
  diff = sorted(set(have) ^ set(want)) or sorted(k for k in have if have[k] != want[k])
  details = ', '.join(f'{k}: stored {have.get(k, "absent")}, config {want.get(k, "absent")}'
                      for k in diff[:3])
  raise CheckpointMismatchError(
      f'{where} was written by another model config ({details}); use the config it was '
      'written with (model.*, dataset), or a fresh --workdir')
