"""Runs a classifier over a whole evaluation split, sharded, and computes the LiVT metrics."""
import functools
import time

import jax
import numpy as np

from livt_jax.evals import views as eval_views
from livt_jax.evals import metrics as metrics_lib
from livt_jax.engine import sharding
from livt_jax.data import device_augment
from livt_jax.data import pipeline


def predict_fn(model, mesh, params_sharding, preprocess=lambda b: b, views='one'):
  """Jitted (params, batch) -> (logits, labels, mask), replicated on every process.

  `preprocess` normalises uint8 images on the device (`train.device_preprocess`); `views`
  (`views.VIEWS`) averages the raw logits over mirrored / shifted copies of each image,
  made from the images before preprocessing.
  """
  def predict(params, batch):
    def classify(images):
      images = preprocess({**batch, 'image': images})['image']
      return model.apply({'params': params}, images, train=False).astype(np.float32)
    logits = eval_views.mean_logits(classify, batch['image'], views)
    return logits, batch['label'], batch['mask']
  return jax.jit(predict, in_shardings=(params_sharding, sharding.batch_sharding(mesh)),
                 out_shardings=sharding.replicated(mesh))


def config_predict_fn(config, model, mesh, params_sharding, info):
  """`predict_fn` with the dataset's normalisation and the config's `evaluate.views`."""
  return predict_fn(model, mesh, params_sharding, functools.partial(
      device_augment.preprocess, mean=info.mean, std=info.std), views=config.evaluate.views)


def collect_logits(config, model, params, params_sharding, source, info, mesh, predict=None,
                   progress=True):
  """Logits and labels of every example of `source` exactly once (padding removed).

  `predict` (from `config_predict_fn`) is reused by callers that
  evaluate often, so the step compiles once; `progress` prints a line per quarter.
  """
  predict = predict or config_predict_fn(config, model, mesh, params_sharding, info)
  image_size, batch_size = config.bft.image_size, config.evaluate.batch_size
  all_logits, all_labels = [], []
  batches = pipeline.eval_batches(
      source, dataset_info=info, image_size=image_size, global_batch_size=batch_size,
      process_index=jax.process_index(), process_count=jax.process_count(),
      read_threads=config.dataset.read_threads, prefetch_buffer=config.dataset.prefetch_buffer)
  quarters = {len(batches) * q // 4 for q in (1, 2, 3)} - {0}
  t0 = time.perf_counter()
  for i, batch in enumerate(batches, 1):
    if progress and i - 1 in quarters and jax.process_index() == 0:
      rate = (i - 1) * batch_size / max(time.perf_counter() - t0, 1e-9)
      print(f'livt_jax: evaluate {i - 1}/{len(batches)} batches | {rate:.0f} img/s', flush=True)
    logits, labels, mask = jax.device_get(predict(params, sharding.global_batch(batch, mesh)))
    keep = np.asarray(mask).astype(bool)
    all_logits.append(np.asarray(logits)[keep])
    all_labels.append(np.asarray(labels)[keep])
  return np.concatenate(all_logits), np.concatenate(all_labels)


def evaluate(config, model, params, params_sharding, source, info, mesh, class_counts) -> dict:
  logits, labels = collect_logits(config, model, params, params_sharding, source, info, mesh)
  if len(labels) != len(source):
    raise RuntimeError(f'evaluated {len(labels)} examples but the split has {len(source)}')
  return metrics_lib.classification_metrics(
      logits, labels, class_counts, many_threshold=config.dataset.many_threshold,
      few_threshold=config.dataset.few_threshold, num_bins=config.evaluate.num_bins)
