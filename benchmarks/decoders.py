"""JPEG decoders for the random-resized crop, measured on the same files and crop boxes.

  python -m benchmarks.decoders [--long_side=500 --image_size=224 --images=60 --repeats=3]

Each variant turns the bytes of a JPEG and a torchvision RandomResizedCrop box into the
S x S uint8 crop (decode, then PIL bicubic crop+resize, as `augment.train_transform` does):
  pil_full     PIL decodes the whole image (what the pipeline did before `decode.py`)
  pil_draft    PIL at the scale the crop allows (1/2, 1/4, 1/8: `decode.EncodedImage`, ours)
  simplejpeg   simplejpeg.decode_jpeg with min_width/min_height (libjpeg-turbo's n/8 scales)
  turbojpeg    PyTurboJPEG decode at the smallest libjpeg-turbo scale that keeps the crop >= S
  tf_crop      TensorFlow's decode_and_crop_jpeg: libjpeg-turbo decodes only the crop's
               rows and columns (full scale), then the same resize
simplejpeg and turbojpeg run only where installed (`pip install simplejpeg "PyTurboJPEG<2"`;
PyTurboJPEG also needs the libturbojpeg shared library, Debian's `libturbojpeg0`, which is
libjpeg-turbo 2.1 on Debian 12: PyTurboJPEG 2.x refuses anything below 3.0). Single thread,
img/s.
"""
import argparse
import io
import math
import tempfile
import time

import numpy as np
from PIL import Image

from benchmarks import jpegs
from livt_jax.data import augment
from livt_jax.data import decode


_RESAMPLE = Image.Resampling.BICUBIC


def _resize(img: Image.Image, box, size: int) -> np.ndarray:
  return np.asarray(img.resize((size, size), _RESAMPLE, box=tuple(box)))


def pil_full(data: bytes, box, size: int) -> np.ndarray:
  return _resize(Image.open(io.BytesIO(data)).convert('RGB'), box, size)


def pil_draft(data: bytes, box, size: int) -> np.ndarray:
  return _resize(*decode.EncodedImage(data).decode_for_crop(box, size), size)


def _scaled_box(box, full_width: int, decoded_width: int):
  return [v * decoded_width / full_width for v in box]


def make_simplejpeg():
  import simplejpeg  # pylint: disable=g-import-not-at-top

  def run(data: bytes, box, size: int) -> np.ndarray:
    height, width, _, _ = simplejpeg.decode_jpeg_header(data)
    # The smallest n/8 scale with the image >= full size * size / crop side: crop stays >= S.
    scale = max(1.0, min(box[2] - box[0], box[3] - box[1]) / size)
    pixels = simplejpeg.decode_jpeg(data, 'RGB', min_width=math.ceil(width / scale),
                                    min_height=math.ceil(height / scale))
    return _resize(Image.fromarray(pixels), _scaled_box(box, width, pixels.shape[1]), size)
  return run


def make_turbojpeg():
  import turbojpeg  # pylint: disable=g-import-not-at-top
  jpeg = turbojpeg.TurboJPEG()
  factors = sorted(jpeg.scaling_factors, key=lambda f: f[0] / f[1])  # smallest first

  def run(data: bytes, box, size: int) -> np.ndarray:
    width, _, _, _ = jpeg.decode_header(data)
    side = min(box[2] - box[0], box[3] - box[1])
    factor = next(f for f in factors if side * f[0] / f[1] >= size or f == (1, 1))
    pixels = jpeg.decode(data, pixel_format=turbojpeg.TJPF_RGB, scaling_factor=factor)
    return _resize(Image.fromarray(pixels), _scaled_box(box, width, pixels.shape[1]), size)
  return run


def make_tf_crop():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:  # One thread, as the other variants: the rate is per core.
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
  except RuntimeError:  # TensorFlow already started in this process: its pools stay
    pass

  def run(data: bytes, box, size: int) -> np.ndarray:
    left, top, right, bottom = box
    pixels = tf.io.decode_and_crop_jpeg(data, [top, left, bottom - top, right - left],
                                        channels=3).numpy()
    return np.asarray(Image.fromarray(pixels).resize((size, size), _RESAMPLE))
  return run


def variants() -> dict:
  """name -> fn(bytes, box, size), or name -> the reason it is missing."""
  out = {'pil_full': pil_full, 'pil_draft': pil_draft}
  for name, make in (('simplejpeg', make_simplejpeg), ('turbojpeg', make_turbojpeg),
                     ('tf_crop', make_tf_crop)):
    try:
      out[name] = make()
    except (ImportError, OSError, RuntimeError) as e:
      out[name] = f'not available ({type(e).__name__}: {str(e).splitlines()[0][:80]})'
  return out


def crop_boxes(files: list[bytes], seed: int = 0) -> list:
  """The crop box of each file, drawn as the training pipeline draws it."""
  rng = np.random.default_rng(seed)
  return [augment.random_resized_crop_box(*decode.EncodedImage(d).size, rng, (0.08, 1.0),
                                          (3 / 4, 4 / 3)) for d in files]


def rate(fn, files, boxes, size: int, repeats: int) -> float:
  best = 0.0
  for _ in range(repeats):
    start = time.perf_counter()
    for data, box in zip(files, boxes):
      fn(data, box, size)
    best = max(best, len(files) / (time.perf_counter() - start))
  return best


def main():
  # argparse, not absl flags: importing this module (tests) must not define global flags that
  # collide with the other benchmarks'.
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--long_side', type=int, default=500, help='long side of the JPEGs')
  parser.add_argument('--image_size', type=int, default=224, help='crop output side S')
  parser.add_argument('--images', type=int, default=60, help='generated JPEGs')
  parser.add_argument('--repeats', type=int, default=3, help='passes (the best is kept)')
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as root:
    paths = jpegs.write_jpeg_folder(root, args.images, long_side=args.long_side)
    files = [open(p, 'rb').read() for p in paths]  # pylint: disable=consider-using-with
  boxes = crop_boxes(files)
  size = args.image_size
  reference = [pil_full(d, b, size) for d, b in zip(files, boxes)]
  reduced = sum(decode.reduction(b, size) > 1 for b in boxes)
  kilobytes = np.mean([len(f) for f in files]) / 1e3
  print(f'{len(files)} JPEGs, long side {args.long_side}, mean {kilobytes:.0f} KB; '
        f'crop -> {size} px; {reduced} of {len(boxes)} crops allow a reduced PIL decode')
  for name, fn in variants().items():
    if isinstance(fn, str):
      print(f'  {name:11s} {fn}')
      continue
    diff = np.mean([np.abs(fn(d, b, size).astype(np.int16) - r).mean()
                    for d, b, r in zip(files, boxes, reference)])
    print(f'  {name:11s} {rate(fn, files, boxes, size, args.repeats):7.0f} img/s  '
          f'mean |diff| vs pil_full {diff:.2f} / 255')


if __name__ == '__main__':
  main()
