"""Tiny image folders (train/<class>/*.png|jpg) written with PIL."""
import os

import numpy as np
from PIL import Image


def write_image_folder(root: str, counts: dict, size=(20, 16), seed: int = 0) -> dict:
  """Writes counts[split][class] random images per class; returns {split: [paths]}."""
  rng = np.random.default_rng(seed)
  written = {}
  for split, per_class in counts.items():
    for cls, n in per_class.items():
      os.makedirs(os.path.join(root, split, cls), exist_ok=True)
      for i in range(n):
        ext = 'png' if i % 2 else 'jpg'
        path = os.path.join(root, split, cls, f'img_{i:03d}.{ext}')
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
        written.setdefault(split, []).append(path)
  return written
