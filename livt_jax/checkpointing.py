"""Orbax checkpoints of the train state together with the grain iterator position."""
import os

import grain
import jax
import orbax.checkpoint as ocp


def manager(directory: str, config) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options,
                               item_names=('state', 'data'))


def abstract_with_shardings(abstract_tree, shardings):
  return jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_tree, shardings)


def save(mngr: ocp.CheckpointManager, step: int, state, iterator=None):
  items = {'state': ocp.args.StandardSave(state)}
  if iterator is not None:
    items['data'] = grain.checkpoint.CheckpointSave(iterator)
  mngr.save(step, args=ocp.args.Composite(**items), force=True)


def restore(mngr: ocp.CheckpointManager, abstract_state, iterator=None, step=None):
  """Restores the state (already sharded as `abstract_state` says) and, if given, the iterator."""
  step = mngr.latest_step() if step is None else step
  items = {'state': ocp.args.StandardRestore(abstract_state)}
  if iterator is not None:
    items['data'] = grain.checkpoint.CheckpointRestore(iterator)
  restored = mngr.restore(step, args=ocp.args.Composite(**items))
  return restored['state']
