"""Jitted train steps: one generic step (grads, accumulation, NaN guard) and the two LiVT losses.

The RNG of a step is `fold_in(key(seed), step)`, so a resumed run draws the same masks, drop-path
and mixup as an uninterrupted one. Loss functions get the step too (a traced int32), for losses
with a schedule inside (LDAM's deferred re-weighting, IB's CE warm-up).
"""
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from livt_jax.losses import balanced
from livt_jax.losses import table7
from livt_jax.engine import train_state
from livt_jax.data import mixup

# loss_fn(params, batch, rng, step) -> (loss, aux); step defaults to 0 for one-off calls.
LossFn = Callable[[dict, dict, jax.Array, jax.Array], tuple[jax.Array, dict]]


def _micro_batches(batch: dict, k: int) -> dict:
  # Row j*k + i goes to micro-batch i: every device keeps its own rows (no communication),
  # given that the per-device batch is a multiple of k (checked by validate).
  return jax.tree.map(lambda x: x.reshape(x.shape[0] // k, k, *x.shape[1:]).swapaxes(0, 1), batch)


def _grads(loss_fn: LossFn, params, batch, rng, step, accum_steps: int):
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  if accum_steps == 1:
    (loss, aux), grads = grad_fn(params, batch, rng, step)
    return loss, aux, grads

  def body(carry, xs):
    i, micro = xs
    (loss, aux), grads = grad_fn(params, micro, jax.random.fold_in(rng, i), step)
    return jax.tree.map(jnp.add, carry, (loss, aux, grads)), None

  (loss, aux), grads = jax.eval_shape(lambda: grad_fn(params, jax.tree.map(
      lambda x: x[: x.shape[0] // accum_steps], batch), rng, step))
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (loss, aux, grads))
  total, _ = jax.lax.scan(body, zeros, (jnp.arange(accum_steps), _micro_batches(batch, accum_steps)))
  return jax.tree.map(lambda x: x / accum_steps, total)


def make_train_step(loss_fn: LossFn, tx: optax.GradientTransformation, *, seed: int,
                    accum_steps: int = 1, preprocess: Callable[[dict], dict] = lambda b: b):
  """Returns step(state, batch) -> (state, metrics); compile it with the engine's shardings.

  `preprocess` turns the host batch into the model's input on the device (normalisation and
  random erasing of uint8 images: `data.device_augment.preprocess`).
  """
  base_key = jax.random.key(seed)

  def step(state: train_state.TrainState, batch: dict):
    batch = preprocess(batch)
    rng = jax.random.fold_in(base_key, state.step)
    loss, aux, grads = _grads(loss_fn, state.params, batch, rng, state.step, accum_steps)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    # NaN guard: a non-finite step changes nothing, so the state (and any checkpoint) stays clean.
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    new_state = state.replace(step=state.step + 1, params=keep(params, state.params),
                              opt_state=keep(opt_state, state.opt_state))
    metrics = {'loss': loss, 'grad_norm': grad_norm, 'param_norm': optax.tree.norm(params),
               'finite': finite, **aux}
    return new_state, metrics

  return step


def mgp_loss_fn(model) -> LossFn:
  """MAE reconstruction loss (norm-pix MSE on the masked patches)."""
  def loss_fn(params, batch, rng, step=None):
    del step
    mask_rng, drop_rng = jax.random.split(rng)
    loss, _ = model.apply({'params': params}, batch['image'], train=True,
                          rngs={'mask': mask_rng, 'dropout': drop_rng})
    return loss, {}
  return loss_fn


def bft_loss_fn(model, config, class_counts) -> LossFn:
  """Balanced fine-tuning loss: mixup/cutmix soft targets, the configured (balanced) loss.

  Biases, margins and class weights are constants of the jitted function. Epoch-based
  schedules of the loss (bft.drw_epoch, bft.ib_epoch) become steps with the engine's steps per
  epoch; IB also gets the head's input features (`pre_logits`).
  """
  bft = config.bft
  num_classes = len(class_counts)
  criterion = balanced.make_loss_fn(
      bft.loss, class_counts=class_counts, tau=bft.tau, bias_form=bft.bias_form,
      test_prior=bft_test_prior(config, class_counts),
      **loss_options(config, class_counts))
  want_features = bft.loss in balanced.NEEDS_FEATURES
  use_mix = bft.mix_prob > 0 and (bft.mixup_alpha > 0 or bft.cutmix_alpha > 0)

  def loss_fn(params, batch, rng, step=0):
    drop_rng, mix_rng = jax.random.split(rng)
    images = batch['image']
    targets = balanced.one_hot(batch['label'], num_classes, bft.label_smoothing)
    if use_mix:
      images, targets = mixup.mixup_cutmix(
          mix_rng, images, targets, mixup_alpha=bft.mixup_alpha, cutmix_alpha=bft.cutmix_alpha,
          switch_prob=bft.mix_switch_prob, mix_prob=bft.mix_prob)
    features = None
    if want_features:
      logits, state = model.apply({'params': params}, images, train=True,
                                  rngs={'dropout': drop_rng}, mutable=['intermediates'])
      features = state['intermediates']['pre_logits'][0]
    else:
      logits = model.apply({'params': params}, images, train=True, rngs={'dropout': drop_rng})
    return criterion(logits.astype(jnp.float32), targets, step=step, features=features), {}

  return loss_fn


def bft_test_prior(config, class_counts):
  """`bft.test_prior` as the losses take it (None for uniform)."""
  return balanced.test_prior_from_config(config.bft.get('test_prior', 'uniform'), class_counts)


def smoothing_note(config, class_counts) -> str | None:
  """The console warning when bft.label_smoothing inverts the balanced loss's raw logits."""
  bft = config.bft
  return balanced.smoothing_inversion_note(bft.loss, class_counts, bft.label_smoothing, bft.tau,
                                         bft.bias_form, bft_test_prior(config, class_counts))


def initial_head_bias(config, class_counts):
  """The BFT head's starting bias (`bft.head_bias_init`), or None for the model's zeros.

  'prior' is defined for the sigmoid losses (`balanced.PRIOR_INIT_LOSSES`); any other loss starts
  from zeros, so a sweep over losses can keep one config.
  """
  bft = config.bft
  init = bft.get('head_bias_init', 'zero')
  if init not in ('zero', 'prior'):
    raise ValueError(f"bft.head_bias_init={init!r}: use 'zero' or 'prior'")
  if init == 'zero' or bft.loss not in balanced.PRIOR_INIT_LOSSES:
    return None
  return balanced.prior_head_bias(
      bft.loss, class_counts, bft.tau, bft.bias_form,
      bft_test_prior(config, class_counts))


def loss_options(config, class_counts) -> dict:
  """The Table 7 hyper-parameters of config.bft for `balanced.make_loss_fn`; epochs -> steps."""
  bft = config.bft
  # plan.stage_plan's rule (the remainder batch is dropped); never below 1 step.
  steps_per_epoch = max(1, int(sum(class_counts)) // bft.batch_size)
  opts = {k: bft[k] for k in table7.DEFAULTS if k in bft}
  for name, key, default_fraction in (('drw_epoch', 'drw_start_step', 0.8),
                                      ('ib_epoch', 'ib_start_step', 0.5)):
    epoch = bft.get(name)
    epoch = default_fraction * bft.epochs if epoch is None else epoch
    opts[key] = round(epoch * steps_per_epoch)
  return opts
