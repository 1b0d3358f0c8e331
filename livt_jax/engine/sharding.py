"""Mesh, parameter shardings and global batches.

Two mesh axes: 'data' (pure data parallelism) and 'fsdp' (parameters and optimizer state are
split over it, batches too). Model code only names logical axes; the rules in
`livt_jax.models.vit.LOGICAL_AXIS_RULES_FSDP` map them onto this mesh.
"""
import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from livt_jax import validate
from livt_jax.models import vit

BATCH_AXES = ('data', 'fsdp')


def make_mesh(config, devices=None) -> Mesh:
  devices = jax.devices() if devices is None else devices
  data, fsdp = validate.mesh_shape(config, len(devices))
  # Auto axis types: the classic sharding-propagation style. (jax 0.10's jax.make_mesh defaults to
  # explicit axis types, under which this code's conv/reshape ops raise ShardingTypeError.)
  return Mesh(np.asarray(devices).reshape(data, fsdp), ('data', 'fsdp'),
              axis_types=(AxisType.Auto, AxisType.Auto))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def param_shardings(abstract_boxed_params, mesh: Mesh):
  """Maps logically annotated (boxed) abstract params to NamedShardings on `mesh`."""
  specs = nn.get_partition_spec(abstract_boxed_params)
  return nn.logical_to_mesh_sharding(specs, mesh, vit.LOGICAL_AXIS_RULES_FSDP)


def _path_names(path) -> tuple:
  names = []
  for k in path:
    for attr in ('key', 'name', 'idx'):
      if hasattr(k, attr):
        names.append(getattr(k, attr))
        break
  return tuple(names)


def state_shardings(abstract_state, params_sharding, mesh: Mesh):
  """Shardings for a whole train state: optimizer moments follow the parameter they track.

  Optimizer states (mu, nu, masked sub-trees ...) contain the parameter's path as a suffix of
  their own path; any leaf whose path ends with a parameter's path and has its shape gets that
  parameter's sharding, everything else (step counters) is replicated.
  """
  by_path = {}
  for path, s in jax.tree_util.tree_flatten_with_path(params_sharding)[0]:
    by_path[_path_names(path)] = s

  def pick(path, leaf):
    names = _path_names(path)
    for start in range(len(names)):
      s = by_path.get(names[start:])
      if s is not None and len(s.spec) <= len(getattr(leaf, 'shape', ())):
        return s
    return replicated(mesh)

  return jax.tree_util.tree_map_with_path(pick, abstract_state)


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
  """Turns this process's slice of the batch into global arrays sharded over the batch axes."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)
