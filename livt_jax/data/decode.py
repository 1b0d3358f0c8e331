"""Decoding encoded images (JPEG, PNG, ...) with PIL, and only as much of them as a crop needs.

A random-resized crop of a large JPEG throws most of the decoded pixels away. JPEG can be
decoded at 1/2, 1/4 or 1/8 scale for a fraction of the cost (libjpeg's DCT scaling, PIL's
`Image.draft`): `EncodedImage.decode_for_crop` picks the smallest scale at which the crop box
still holds at least the output size on both sides, and maps the box onto the reduced image.
The box is drawn from the header's (full) size first, so the random draws of a record do not
depend on how it is decoded. Other formats (PNG, ...) and crops too small to reduce decode in
full, giving exactly what the full decode gives.
"""
import io
from typing import Sequence

import numpy as np
from PIL import Image

# Scales libjpeg decodes to directly (1/1, 1/2, 1/4, 1/8), largest first.
JPEG_SCALES = (8, 4, 2, 1)


def decode_error(dataset: str, name: str, error: Exception) -> ValueError:
  """The one-line error for a file that does not decode (it names the file and the fix)."""
  text = str(error).splitlines()[0] if str(error) else ''
  return ValueError(
      f'{dataset}: cannot decode image {name} ({type(error).__name__}: {text}); the file is '
      'corrupt or truncated: re-download or re-copy it, or delete it (class counts are '
      're-read at the next start)')


_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def reduction(box: Sequence[float], out_size: int) -> int:
  """The largest JPEG scale s (8, 4, 2 or 1) with both sides of `box` >= s * out_size."""
  left, top, right, bottom = box
  side = min(right - left, bottom - top)
  for s in JPEG_SCALES:
    if side >= s * out_size:
      return s
  return 1


class EncodedImage:
  """The bytes of one image file with its header read: size known, pixels not yet decoded.

  Attributes:
    size: (width, height) of the full image, from the header.
  """

  def __init__(self, data: bytes, *, name: str = '<bytes>', dataset: str = 'image'):
    self._data = data
    self._name = name
    self._dataset = dataset
    self._img = self._open()
    self.size = self._img.size

  def _open(self) -> Image.Image:
    """The opened image from __init__ the first time (nothing decoded yet), then a new one."""
    img, self._img = getattr(self, '_img', None), None
    if img is not None:
      return img
    try:
      return Image.open(io.BytesIO(self._data))
    except _ERRORS as e:
      raise decode_error(self._dataset, self._name, e) from e

  def _rgb(self, img: Image.Image) -> Image.Image:
    try:
      return img.convert('RGB')
    except _ERRORS as e:
      raise decode_error(self._dataset, self._name, e) from e

  def decode(self) -> np.ndarray:
    """The full image, uint8 [H, W, 3]."""
    return np.asarray(self._rgb(self._open()))

  def decode_for_crop(self, box: Sequence[int], out_size: int
                      ) -> tuple[Image.Image, tuple[float, ...]]:
    """Decodes enough of the image to resize `box` (full-size pixels) to `out_size`.

    Returns:
      (RGB image, the box in that image's pixels): resizing that box of that image to
      out_size x out_size approximates resizing `box` of the full image. Unchanged box and
      full decode when no reduction applies (not a JPEG, or the crop is < 2 * out_size).
    """
    img = self._open()
    scale = reduction(box, out_size)
    if scale > 1 and img.format == 'JPEG':
      width, height = self.size
      drafted = img.draft('RGB', (width // scale, height // scale))
      if drafted is not None:
        # draft's box is the full image in reduced pixels: (0, 0, W / s, H / s).
        actual = width / drafted[1][2]
        if actual > 1:
          return self._rgb(img), tuple(v / actual for v in box)
    return self._rgb(img), tuple(box)
