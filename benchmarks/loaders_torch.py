"""The torch side of `benchmarks.loaders`: a DataLoader with torchvision + timm transforms.

Needs torch, torchvision and timm (the benchmark venv, requirements-benchmark.txt): importing
this module without them raises ImportError, which the benchmark reports and skips.
The transforms follow MAE's (and LiVT's) pre-training and fine-tuning code: torchvision
RandomResizedCrop (bicubic) and RandomHorizontalFlip; for BFT timm's RandAugment
rand-m9-mstd0.5-inc1 with timm's hparams (translate 0.45 of the side, mean-colour fill,
bicubic) and, on float32 output, timm RandomErasing(0.25, mode='pixel').
"""
from typing import Callable, Iterator

from PIL import ImageOps
from timm.data import auto_augment
from timm.data import random_erasing
import torch
from torchvision import datasets
from torchvision import transforms

from livt_jax import config_defaults
from livt_jax.data import registry


def posterize(img, bits_to_keep, **_):
  """timm's posterize, also at 0 bits (all black, as timm with Pillow < 11): Pillow >= 11
  rejects bits=0, which rand-m9-mstd0.5 reaches when the drawn level rounds to 10."""
  if bits_to_keep >= 8:
    return img
  if bits_to_keep < 1:
    return img.point([0] * 256 * len(img.getbands()))
  return ImageOps.posterize(img, bits_to_keep)


def train_transform(stage: str, image_size: int, uint8: bool) -> Callable:
  """MGP or BFT training transform; uint8 CHW tensors, or float32 normalised (and erased)."""
  config = config_defaults.get_base_config()[stage]
  info = registry.get_info('image_folder')
  mean, std = tuple(info.mean), tuple(info.std)
  bicubic = transforms.InterpolationMode.BICUBIC
  steps = [transforms.RandomResizedCrop(image_size, scale=(config.crop_scale_min, 1.0),
                                        interpolation=bicubic),
           transforms.RandomHorizontalFlip()]
  if stage == 'bft':
    auto_augment.NAME_TO_OP['PosterizeIncreasing'] = posterize  # before the ops are built
    hparams = dict(translate_const=int(image_size * 0.45),
                   img_mean=tuple(min(255, round(255 * m)) for m in mean),
                   interpolation=transforms.functional.pil_modes_mapping[bicubic])
    steps.append(auto_augment.rand_augment_transform(
        f'rand-m{config.randaug_magnitude:g}-mstd{config.randaug_magnitude_std:g}-inc1',
        hparams))
  if uint8:
    steps.append(transforms.PILToTensor())
  else:
    steps += [transforms.ToTensor(), transforms.Normalize(mean, std)]
    if stage == 'bft' and config.random_erase_prob > 0:
      steps.append(random_erasing.RandomErasing(config.random_erase_prob, mode='pixel',
                                                device='cpu'))
  return transforms.Compose(steps)


def torch_batches(root: str, stage: str, image_size: int, batch_size: int, workers: int, *,
                  uint8: bool) -> tuple[Iterator, Callable[[], None]]:
  """Endless-enough (one epoch of root/train) batches of a DataLoader, and its stop function."""
  dataset = datasets.ImageFolder(f'{root}/train', train_transform(stage, image_size, uint8))
  loader = torch.utils.data.DataLoader(
      dataset, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
      prefetch_factor=2 if workers else None, generator=torch.Generator().manual_seed(0),
      # Spawned as grain's workers are; forking a process that has run JAX/grain threads is
      # unsafe.
      multiprocessing_context='spawn' if workers else None)
  it = iter(loader)
  shutdown = getattr(it, '_shutdown_workers', lambda: None)

  def stop():
    try:
      shutdown()
    except RuntimeError as e:
      # A spawned worker can abort in its C++ teardown at exit ("terminate called without an
      # active exception"), after it delivered every batch; the timing is already taken.
      if 'killed by signal' not in str(e):
        raise
      print(f'  (torch worker exit: {e})', flush=True)

  return (batch for batch, _ in it), stop
