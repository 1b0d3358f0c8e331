"""Optimizer of both LiVT stages: AdamW, linear warmup + cosine schedule, layer-wise lr decay.

As MAE / BEiT (and the released LiVT code):
  * peak lr = base_lr * global_batch / 256, linear warmup from 0, cosine to min_lr;
  * fine-tuning: no weight decay on biases, norm scales, class / mask tokens, position
    embeddings; pre-training (MGP) decays every 2-D+ parameter, tokens included, as MAE;
  * layer decay (BFT): parameter group of layer l gets lr * decay ** (depth + 1 - l), with
    l = 0 for the patch embedding, class token and position embedding, l = i + 1 for block i
    and l = depth + 1 for everything after the blocks (final norms, head). The multiplier
    scales the whole step, Adam direction and decoupled weight decay alike, exactly like a
    per-group learning rate.
"""
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

Schedule = Callable[[Any], Any]


def lr_schedule(base_lr: float, global_batch: int, total_steps: int, warmup_steps: int,
                min_lr: float) -> optax.Schedule:
  """Linear warmup 0 -> base_lr * global_batch / 256 over warmup_steps, cosine to min_lr."""
  peak = base_lr * global_batch / 256
  if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
    raise ValueError(f'lr_schedule: need 0 <= warmup_steps ({warmup_steps}) <= total_steps '
                     f'({total_steps}) and total_steps >= 1')
  if warmup_steps == total_steps:  # nothing left to decay over: warmup only
    return optax.linear_schedule(0.0, peak, max(warmup_steps, 1))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak, warmup_steps=warmup_steps, decay_steps=total_steps,
      end_value=min_lr)


def _names(path) -> tuple[str, ...]:
  """Key path -> tuple of names (dict keys, attribute names or indices as strings)."""
  out = []
  for k in path:
    for attr in ('key', 'name', 'idx'):
      if hasattr(k, attr):
        out.append(str(getattr(k, attr)))
        break
    else:
      out.append(str(k))
  return tuple(out)


def _is_posemb(name: str) -> bool:
  return 'pos_emb' in name or name in ('pos_embed', 'posemb', 'position_embedding')


def decays_weight(path_keys: tuple[str, ...]) -> bool:
  """True for matrices/kernels; False for biases, norms, tokens and position embeddings."""
  return bool(path_keys) and path_keys[-1] == 'kernel' and not any(
      _is_posemb(k) for k in path_keys)


def weight_decay_mask(params) -> Any:
  """Pytree of bools like `params`: True where AdamW applies weight decay (fine-tuning)."""
  return jax.tree_util.tree_map_with_path(lambda p, _: decays_weight(_names(p)), params)


def pretraining_weight_decay_mask(params) -> Any:
  """MAE pre-training's rule (timm `add_weight_decay`, no skip list): every parameter with 2+
  dimensions decays, class and mask tokens included; biases and norm scales do not."""
  return jax.tree.map(lambda p: len(p.shape) >= 2, params)


def layer_id(path_keys: tuple[str, ...], depth: int) -> int:
  """Layer index of a parameter for layer decay: 0 embeddings, i + 1 block i, depth + 1 rest."""
  if len(path_keys) >= 2 and path_keys[0] == 'encoder':
    name = path_keys[1]
    if name in ('patch_embed', 'cls_token') or _is_posemb(name):
      return 0
    if name.startswith('block_'):
      return int(name[len('block_'):]) + 1
  return depth + 1


def layer_scale(path_keys: tuple[str, ...], depth: int, decay: float) -> float:
  """The lr multiplier decay ** (depth + 1 - layer_id) of one parameter."""
  return float(decay ** (depth + 1 - layer_id(path_keys, depth)))


def layer_decay_scales(params, depth: int, decay: float) -> Any:
  """Pytree of floats like `params`: each parameter's lr multiplier."""
  return jax.tree_util.tree_map_with_path(
      lambda p, _: layer_scale(_names(p), depth, decay), params)


def scale_by_layer_decay(depth: int, decay: float) -> optax.GradientTransformation:
  """Multiplies each leaf's update by its layer-decay multiplier (looked up by its path).

  Keyed by path rather than by a precomputed tree, so dict / FrozenDict containers and any
  optimizer wrapper around the params do not matter.
  """
  def scale(updates, params=None):
    del params
    return jax.tree_util.tree_map_with_path(
        lambda p, u: u * layer_scale(_names(p), depth, decay), updates)
  return optax.stateless(scale)


class ParamEmaState(NamedTuple):
  """The exponential moving average of the parameters (`track_param_ema`)."""
  ema_params: Any


def track_param_ema(decay: float) -> optax.GradientTransformation:
  """Passes the updates through and keeps ema <- decay * ema + (1 - decay) * (params + updates).

  The last link of the chain, so it sees the parameters the step produces. It lives in the
  optimizer state, so checkpoints, shardings (each average follows its parameter's path) and the
  NaN guard cover it with no code of their own. It starts at the initial parameters (as timm's
  ModelEma), so no bias correction is needed.
  """
  if not 0.0 <= decay < 1.0:
    raise ValueError(f'track_param_ema: decay={decay}: use a value in [0, 1)')

  def init_fn(params):
    # A copy: the step donates the state, and a leaf that aliased its parameter would be freed.
    return ParamEmaState(ema_params=jax.tree.map(lambda p: jnp.array(p, copy=True), params))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError('track_param_ema needs the params: call tx.update(grads, state, params)')
    new = optax.apply_updates(params, updates)
    ema = jax.tree.map(lambda e, p: (decay * e + (1.0 - decay) * p).astype(e.dtype),
                       state.ema_params, new)
    return updates, ParamEmaState(ema_params=ema)

  return optax.GradientTransformation(init_fn, update_fn)


def ema_params(opt_state, default=None):
  """The parameter average that `track_param_ema` keeps in `opt_state`, else `default`.

  Also finds it in an optimizer state read back without a target (orbax metadata or a raw
  restore, where named tuples come back as dicts and chains as lists)."""
  return optax.tree.get(opt_state, 'ema_params', default)


def make_optimizer(params, *, learning_rate: float | Schedule, b1: float, b2: float,
                   weight_decay: float, layer_decay: float | None = None,
                   depth: int | None = None, grad_clip_norm: float = 0.0,
                   eps: float = 1e-8, pretraining: bool = False,
                   ema_decay: float = 0.0) -> optax.GradientTransformation:
  """Clip (optional) -> AdamW with the weight-decay mask -> layer-decay multiplier (optional)
  -> parameter EMA (optional).

  Args:
    params: the (unboxed) parameter tree or its shapes; used to check the layer-decay setup.
    learning_rate: a float or an optax schedule (e.g. `lr_schedule(...)`).
    b1: Adam beta1.
    b2: Adam beta2.
    weight_decay: decoupled weight decay (multiplied by the lr, as torch AdamW).
    layer_decay: per-layer lr decay in (0, 1]; None or 1 disables it.
    depth: number of encoder blocks; required with layer_decay.
    grad_clip_norm: clip gradients to this global norm first; 0 disables.
    eps: Adam epsilon.
    pretraining: MGP: weight decay on every 2-D+ parameter, tokens included, as MAE
      (`pretraining_weight_decay_mask`); else as MAE fine-tuning (`weight_decay_mask`).
    ema_decay: > 0 also keeps an EMA of the parameters (`track_param_ema`); 0 keeps none.
  """
  parts = []
  if grad_clip_norm and grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(grad_clip_norm))
  # Linear in the lr after Adam: -lr * (adam_dir + wd * p), so scaling the result afterwards
  # by the layer multiplier is the same as running that group with lr * multiplier.
  mask = pretraining_weight_decay_mask if pretraining else weight_decay_mask
  parts.append(optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                           mask=mask))
  if layer_decay is not None and layer_decay != 1.0:
    if depth is None:
      raise ValueError('make_optimizer: layer_decay needs the encoder depth')
    if not 0.0 < layer_decay <= 1.0:
      raise ValueError(f'bft.layer_decay={layer_decay}: use a value in (0, 1]')
    names = [_names(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    if not any(layer_id(n, depth) == depth for n in names):
      raise ValueError(f'make_optimizer: depth={depth} but the params have no '
                       f'encoder/block_{depth - 1}; layer decay would be wrong')
    parts.append(scale_by_layer_decay(depth, layer_decay))
  if ema_decay:
    parts.append(track_param_ema(ema_decay))
  return optax.chain(*parts) if len(parts) > 1 else parts[0]


def current_lr(schedule: float | Schedule, step) -> Any:
  """The learning rate used by update number `step` (0-based), for logging."""
  return schedule(step) if callable(schedule) else schedule
