"""The train state: a plain pytree, so orbax, jit donation and shardings all see the same tree."""
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from livt_jax.engine import optim


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


def create(params, tx) -> TrainState:
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def model_params(state: TrainState):
  """The parameters to evaluate, keep as best and report: the optimizer's EMA of them when it
  keeps one (`bft.ema_decay` > 0), else the trained parameters themselves."""
  return optim.ema_params(state.opt_state, default=state.params)
