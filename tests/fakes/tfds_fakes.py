"""Fake TFDS datasets in the real on-disk format (array_record), built offline.

`store_as_tfds_dataset` writes the same files `tfds build --file_format=array_record` does
(dataset_info.json, features.json, shards), under the real dataset name and version, so
`tfds.builder(name, data_dir=...)` opens them with the registered builder class.
"""
import numpy as np


def _quiet_tfds():
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()
  return tfds


def marked_image(index: int, shape=(32, 32, 3)) -> np.ndarray:
  """An image whose pixels encode `index` (so tests can tell records apart)."""
  image = np.zeros(shape, np.uint8)
  image[..., 0] = index % 256
  image[..., 1] = index // 256
  return image


def build_cifar(data_dir: str, name: str = 'cifar10', num_classes: int = 10,
                train_per_class: int = 40, test_per_class: int = 5) -> None:
  """A cifar10/cifar100-shaped dataset: labels cycle over classes, images mark the index."""
  tfds = _quiet_tfds()
  features = {
      'id': tfds.features.Text(),
      'image': tfds.features.Image(shape=(32, 32, 3)),
      'label': tfds.features.ClassLabel(num_classes=num_classes),
  }
  if name == 'cifar100':
    features['coarse_label'] = tfds.features.ClassLabel(num_classes=20)

  def examples(prefix, per_class):
    for i in range(per_class * num_classes):
      example = {'id': f'{prefix}_{i:05d}', 'image': marked_image(i),
                 'label': i % num_classes}
      if name == 'cifar100':
        example['coarse_label'] = 0
      yield f'{prefix}_{i:05d}', example

  tfds.dataset_builders.store_as_tfds_dataset(
      name=name, version='3.0.2', features=tfds.features.FeaturesDict(features),
      split_datasets={'train': list(examples('train', train_per_class)),
                      'test': list(examples('test', test_per_class))},
      data_dir=data_dir, file_format='array_record')


def build_imagenet2012(data_dir: str, train_names, train_labels, val_names,
                       val_labels) -> None:
  """An imagenet2012-shaped dataset with the given file names; image i marks index i."""
  tfds = _quiet_tfds()
  features = tfds.features.FeaturesDict({
      'file_name': tfds.features.Text(),
      'image': tfds.features.Image(shape=(None, None, 3), encoding_format='png'),
      'label': tfds.features.ClassLabel(num_classes=1000),
  })

  def examples(names, labels):
    for i, (name, label) in enumerate(zip(names, labels)):
      yield name, {'file_name': name, 'image': marked_image(i, (12 + i % 3, 10, 3)),
                   'label': int(label)}

  tfds.dataset_builders.store_as_tfds_dataset(
      name='imagenet2012', version='5.1.0', features=features,
      split_datasets={'train': list(examples(train_names, train_labels)),
                      'validation': list(examples(val_names, val_labels))},
      data_dir=data_dir, file_format='array_record')
