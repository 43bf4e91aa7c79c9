"""Reading images and masks from disk with clear errors.

PIL is used, as in the authors' datasets and ``eval_post``, so grey conversion and resizing match theirs
bit for bit. Inputs that are not 8-bit RGB / grey are converted rather than rejected:
  * grey or palette images become RGB (channels replicated), RGBA/LA drop their alpha;
  * 16-bit (and 32-bit integer) PNGs are rescaled to 0..255 when they use values above 255;
  * colour masks become grey with PIL's ``convert('L')``.
For a practitioner's files (``refine.py``), ``exif=True`` applies the JPEG's EXIF orientation, and
:func:`read_mask` takes a cut-out's alpha channel as the mask.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps


#: PIL modes of grey images with more than 8 bits per pixel.
_WIDE_MODES = ('I', 'I;16', 'I;16B', 'I;16L', 'F')
#: Images above this many pixels are refused before they are decoded (0: no limit), unless a :func:`pixel_limit`
#: block says otherwise. PIL's own guard (a "decompression bomb" warning above 89 MP, an error above 179 MP) would
#: stop legitimate large photos; this one names the file and the flag that raises it (``--max_pixels``).
MAX_PIXELS = 400_000_000
Image.MAX_IMAGE_PIXELS = None
_LIMIT: contextvars.ContextVar[int] = contextvars.ContextVar('max_pixels', default=MAX_PIXELS)


@contextlib.contextmanager
def pixel_limit(limit: int) -> Iterator[None]:
    """Within the block, and in this thread or task only, refuse images above ``limit`` pixels (0: no limit);
    the limit before the block is restored after it."""
    token = _LIMIT.set(int(limit))
    try:
        yield
    finally:
        _LIMIT.reset(token)


#: File suffixes read as images.
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.webp', '.tif', '.tiff', '.bmp')


def size_mismatch(path: str | os.PathLike, shape: tuple[int, ...], ref: str | os.PathLike,
                  ref_shape: tuple[int, ...]) -> str:
    """'PATH: size WxH differs from REF (WxH)' for two (height, width, ...) shapes."""
    return f'{path}: size {shape[1]}x{shape[0]} differs from {ref} ({ref_shape[1]}x{ref_shape[0]})'


class ImageReadError(ValueError):
    """A file cannot be read as an image, or is not the kind of image expected."""


def _open(path: str | os.PathLike, exif: bool = False) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f'{path}: no such file')
    try:
        image = Image.open(path)
        limit = _LIMIT.get()
        if limit and image.width * image.height > limit:
            raise ImageReadError(f'{path}: {image.width}x{image.height} is {image.width * image.height / 1e6:.0f} '
                                 f'megapixels, over the limit of {limit / 1e6:.0f} (--max_pixels raises it)')
        image.load()
        if exif:  # the orientation a viewer shows (phone photos are often stored rotated)
            image = ImageOps.exif_transpose(image)
    except ImageReadError:
        raise
    except Exception as e:  # PIL raises several types for truncated or foreign files
        raise ImageReadError(f'{path}: cannot read image ({type(e).__name__}: {e})') from e
    return image


def _wide_to_uint8(image: Image.Image) -> np.ndarray:
    """Grey image with more than 8 bits per pixel -> uint8. Values above 255 are scaled down from the
    smallest bit depth that holds them (10, 12, 14 or 16 bits: a 12-bit camera image stored in a 16-bit PNG
    uses 0..4095 and would read almost black if scaled from 65535)."""
    arr = np.asarray(image).astype(np.float64)
    top = arr.max(initial=0)
    if top > 255:
        depth = next((2.0 ** b - 1 for b in (10, 12, 14, 16) if top <= 2 ** b - 1), top)
        arr = arr / depth * 255
    return np.clip(np.round(arr), 0, 255).astype(np.uint8)


def read_rgb(path: str | os.PathLike, exif: bool = False) -> np.ndarray:
    """Read an image as H x W x 3 uint8 RGB (``exif``: apply the EXIF orientation)."""
    image = _open(path, exif)
    if image.mode in _WIDE_MODES:
        return np.repeat(_wide_to_uint8(image)[:, :, None], 3, axis=2)
    return np.asarray(image.convert('RGB'))


def _grey(image: Image.Image, labels01: bool) -> np.ndarray:
    grey = _wide_to_uint8(image) if image.mode in _WIDE_MODES else np.asarray(image.convert('L'))
    if labels01 and grey.max(initial=0) == 1:
        grey = grey * np.uint8(255)
    return grey


def read_grey(path: str | os.PathLike, labels01: bool = False, exif: bool = False) -> np.ndarray:
    """Read a mask as H x W uint8 in 0..255 (``exif``: apply the EXIF orientation).

    With ``labels01``, a mask whose values are all in {0, 1} (FSS-1000 style labels) is scaled to
    {0, 255} instead of being read as (almost) empty. Leave it off for soft predictions, where a
    near-zero probability map would be misread as foreground.
    """
    return _grey(_open(path, exif), labels01)


def read_mask(path: str | os.PathLike, exif: bool = False) -> np.ndarray:
    """Read a practitioner's mask as H x W uint8 in 0..255.

    An image with a varying alpha channel (a background remover's RGBA cut-out) gives its alpha; a colour
    mask (channels that differ) gives the largest channel, so a red or blue object is foreground (its luma
    is below the threshold); otherwise the grey value, with {0, 1} labels scaled to {0, 255} and 16-bit masks
    rescaled.
    """
    image = _open(path, exif)
    if 'A' in image.getbands():
        alpha = np.asarray(image.getchannel('A'))
        if alpha.min() != alpha.max():
            return alpha
        image = image.convert('RGB' if len(image.getbands()) > 2 else 'L')
    if image.mode in ('RGB', 'P', 'CMYK', 'YCbCr', 'HSV', 'LAB'):
        rgb = np.asarray(image.convert('RGB'))
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])):
            grey = rgb.max(axis=2)
            return grey * np.uint8(255) if grey.max(initial=0) == 1 else grey
    return _grey(image, labels01=True)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of an image file, read from its header only."""
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except Exception as e:
        raise ImageReadError(f'{path}: cannot read image ({type(e).__name__}: {e})') from e


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """Read a label map (grey or palette PNG) as its raw H x W indices, without colour conversion."""
    image = _open(path)
    if image.mode not in ('L', 'P') + _WIDE_MODES[:-1]:  # float maps are no labels
        raise ImageReadError(f'{path}: a label map must be a grey or palette image, got mode {image.mode}')
    return np.asarray(image)
