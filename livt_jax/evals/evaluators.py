"""Evaluators that run inside BFT on their own schedules (big_vision style plug-ins).

`config.evals` maps a name to one evaluator's settings:

    config.evals.val = dict(type='classification', split='val', every_epochs=10,
                            select_best='top1')

'classification' computes top-1, Many/Medium/Few, ECE and MCE of the current parameters on
`split` (and the class-balanced top-1, shown where the split is class-imbalanced: see
dataset.val_max_per_class) every `every_epochs` epochs and at the last step, writes them to
TensorBoard (WORKDIR/tensorboard/<name>) and to the console. With `select_best`, the parameters
with the best value of that metric so far are kept in WORKDIR/bft/best (orbax, one step kept,
with its metrics), next to the last checkpoint; selection on the 'test' split is refused
(validate.py).
"""
import dataclasses
import time
from typing import Any, Callable

import jax
from jax.experimental import multihost_utils
import numpy as np
import orbax.checkpoint as ocp

from livt_jax.evals import evaluate
from livt_jax.evals import metrics as metrics_lib
from livt_jax.runtime import paths
from livt_jax.engine import train_state
from livt_jax.data import sources

TYPES = ('classification',)
SELECTABLE = metrics_lib.SELECTABLE
SCALARS = ('top1', 'balanced_top1', 'many', 'medium', 'few', 'ece', 'mce')
BEST_DIR = ('bft', 'best')


@dataclasses.dataclass
class ClassificationEvaluator:
  """Metrics of the BFT model on one split, every `every_epochs` epochs and at the end."""
  name: str
  split: str
  every_epochs: float
  select_best: str | None
  source: Any
  run_metrics: Callable[[Any], dict]  # params -> classification_metrics result

  def due(self, step: int, steps_per_epoch: int, last_step: int) -> bool:
    every = max(1, round(self.every_epochs * steps_per_epoch))
    return step == last_step or step % every == 0


def build(config, model, params_sharding, info, mesh, class_counts, say) -> list:
  """The evaluators of `config.evals` whose split exists for this dataset.

  An evaluator of a split the dataset lacks (a 'val' evaluator on iNat18, on CIFAR/Fashion-
  MNIST-LT without dataset.val_per_class, or on an image folder with neither a val/ folder nor
  dataset.val_per_class) is left out with one console line.
  """
  out = []
  predict = evaluate.config_predict_fn(config, model, mesh, params_sharding, info)
  for name, ev in sorted(config.get('evals', {}).items()):
    split = ev.split
    if split == 'val' and not sources.has_val_split(config.dataset):
      hint = (' (hold one out with --config.dataset.val_per_class=20)' if info.lt_n_max else
              ' (add a val/ folder next to train/, or hold one out of train/ with '
              '--config.dataset.val_per_class=N)' if info.name == 'image_folder' else '')
      say(f'evaluator {name}: {info.name} has no {split} split{hint}; left out, the final '
          'model is reported')
      continue
    source = sources.load_source(config.dataset, split)

    def run_metrics(params, source=source):
      logits, labels = evaluate.collect_logits(config, model, params, params_sharding, source,
                                               info, mesh, predict=predict, progress=False)
      return metrics_lib.classification_metrics(
          logits, labels, class_counts, many_threshold=config.dataset.many_threshold,
          few_threshold=config.dataset.few_threshold, num_bins=config.evaluate.num_bins)

    out.append(ClassificationEvaluator(name, split, float(ev.every_epochs),
                                       ev.get('select_best'), source, run_metrics))
  return out


def selection(config) -> tuple[str, str] | None:
  """(evaluator name, metric) of the evaluator that keeps the best checkpoint, if any."""
  for name, ev in sorted(config.get('evals', {}).items()):
    if ev.get('select_best'):
      return name, ev.select_best
  return None


def best_manager(directory, metric: str) -> ocp.CheckpointManager:
  """Keeps one checkpoint: the parameters with the best `metric` seen so far."""
  options = ocp.CheckpointManagerOptions(
      max_to_keep=1, create=True, best_fn=lambda m: m[metric], best_mode=SELECTABLE[metric],
      keep_checkpoints_without_metrics=False,
      # Its own barrier names: its async save can run beside the training checkpoint's, and
      # two managers with the same (default) names collide in multi-process runs.
      multiprocessing_options=ocp.options.MultiprocessingOptions(
          barrier_sync_key_prefix='livt_best'))
  return ocp.CheckpointManager(paths.native(paths.resolve(directory)), options=options,
                               item_names=('params',))


def best_so_far(mngr) -> tuple[int, dict] | None:
  step = mngr.best_step()
  return None if step is None else (step, mngr.metrics(step))


def restore_best(directory, metric: str, abstract_params):
  """(params, step, metrics) of the kept best checkpoint, or None if there is none.

  Every process takes process 0's view: a process that looked at the directory while the
  primary host was still finalising the save would otherwise skip the restore and the
  evaluation collectives the others enter, and the run would hang at its end.
  """
  mngr = None
  if bool(_from_process0(np.int32(paths.resolve(directory).exists()))):
    mngr = best_manager(directory, metric)
  best = best_so_far(mngr) if mngr is not None else None
  step = int(_from_process0(np.int64(-1 if best is None else best[0])))
  if step < 0:
    if mngr is not None:
      mngr.close()
    return None
  params = mngr.restore(step, args=ocp.args.Composite(
      params=ocp.args.StandardRestore(abstract_params)))['params']
  found = mngr.metrics(step) or {}
  values = _from_process0(np.array([found.get(k, np.nan) for k in SCALARS], np.float64))
  mngr.close()
  return params, step, {k: float(v) for k, v in zip(SCALARS, values) if not np.isnan(v)}


def _from_process0(values: np.ndarray) -> np.ndarray:
  """Process 0's `values` on every process (decisions that lead into collectives must agree)."""
  if jax.process_count() == 1:
    return np.asarray(values)
  return np.asarray(multihost_utils.broadcast_one_to_all(values))


class EvalHook:
  """Called by the train loop after every step: runs the evaluators that are due."""

  def __init__(self, evaluators, workdir, steps_per_epoch: int, last_step: int, say):
    self.evaluators = evaluators
    self.steps_per_epoch, self.last_step, self.say = steps_per_epoch, last_step, say
    # Imported here: clu's writers load TensorFlow (see run._import_in_background).
    from clu import metric_writers  # pylint: disable=g-import-not-at-top
    self.writers = {e.name: metric_writers.create_default_writer(
        paths.native(paths.resolve(workdir) / 'tensorboard' / e.name),
        just_logging=jax.process_index() > 0) for e in evaluators}
    selecting = [e for e in evaluators if e.select_best]
    self.selector = selecting[0] if selecting else None
    self.best = (best_manager(paths.resolve(workdir).joinpath(*BEST_DIR),
                              self.selector.select_best) if self.selector else None)
    # Kept in memory: orbax writes a step's metrics only when its async save finishes.
    self.last = {}  # evaluator name -> its metrics at the latest evaluation
    kept = best_so_far(self.best) if self.best else None
    # One value on every process, or their save decisions (collective in orbax) could differ.
    value = float(_from_process0(np.float64(
        kept[1][self.selector.select_best] if kept else np.nan)))
    self.best_value = None if np.isnan(value) else value

  def __call__(self, step: int, state) -> float:
    """Runs the evaluators due at `step` on the train state's model parameters (its EMA when it
    keeps one); returns the seconds spent once they were ready."""
    due = [ev for ev in self.evaluators if ev.due(step, self.steps_per_epoch, self.last_step)]
    if not due:
      return 0.0
    # Looked up only here: walking the optimizer state costs ~0.7 ms, every step otherwise.
    params = jax.block_until_ready(train_state.model_params(state))
    start = time.perf_counter()
    for ev in due:
      result = ev.run_metrics(params)
      scalars = {k: result[k] for k in SCALARS if result[k] is not None}
      self.last[ev.name] = {'step': step, **scalars}
      self.writers[ev.name].write_scalars(step, scalars)
      epoch = step / self.steps_per_epoch
      # balanced_top1 only where it differs: on a class-balanced split it is top1.
      shown = {k: v for k, v in scalars.items()
               if k != 'balanced_top1' or abs(v - scalars['top1']) > 1e-9}
      self.say(f'{ev.name} @ epoch {epoch:.2f}: ' + ' | '.join(
          f'{k} {100 * v:.1f}' for k, v in shown.items()))
      if ev is self.selector:
        self._keep_if_best(step, params, scalars)
    return time.perf_counter() - start

  def _keep_if_best(self, step, params, scalars):
    metric = self.selector.select_best
    value = scalars.get(metric)
    if value is None:
      return
    sign = 1 if SELECTABLE[metric] == 'max' else -1
    if self.best_value is not None and sign * value <= sign * self.best_value:
      return
    self.best_value = value
    self.best.save(step, args=ocp.args.Composite(params=ocp.args.StandardSave(params)),
                   metrics={k: float(v) for k, v in scalars.items()}, force=True)

  def close(self):
    for writer in self.writers.values():
      writer.flush()
    if self.best is not None:
      self.best.wait_until_finished()
      self.best.close()
