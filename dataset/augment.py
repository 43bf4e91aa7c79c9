"""Training augmentation in NumPy (no torchvision): joint crop and flip, colour jitter, grayscale.

Images are H x W x 3 uint8 RGB, masks H x W uint8; the same geometric draw is applied to both.
"""
from __future__ import annotations

import cv2
import numpy as np

_GREY = np.array([0.299, 0.587, 0.114], np.float32)


def random_crop(image: np.ndarray, mask: np.ndarray, size: int, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray]:
    """A size x size crop at a random position; a side shorter than ``size`` is zero-padded at a
    random offset (so the object is not always in the top-left corner)."""
    h, w = mask.shape
    ph, pw = max(0, size - h), max(0, size - w)
    if ph or pw:
        oy, ox = int(rng.integers(ph + 1)), int(rng.integers(pw + 1))
        image = np.pad(image, ((oy, ph - oy), (ox, pw - ox), (0, 0)))
        mask = np.pad(mask, ((oy, ph - oy), (ox, pw - ox)))
        h, w = mask.shape
    y, x = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
    return image[y:y + size, x:x + size], mask[y:y + size, x:x + size]


def random_rescale(image: np.ndarray, mask: np.ndarray, scale_range: tuple[float, float],
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Resize both by a factor drawn log-uniformly from ``scale_range`` (area when shrinking, bilinear
    when enlarging; the mask is resized like the image and stays soft at its boundary)."""
    lo, hi = scale_range
    if lo == hi == 1.0:
        return image, mask
    s = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    h, w = mask.shape
    size = (max(1, round(w * s)), max(1, round(h * s)))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interp), cv2.resize(mask, size, interpolation=interp)


def random_flip(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal flip of both with probability 0.5."""
    if rng.random() < 0.5:
        return image[:, ::-1], mask[:, ::-1]
    return image, mask


def _grey(image: np.ndarray) -> np.ndarray:
    return image @ _GREY


def color_jitter(image: np.ndarray, rng: np.random.Generator, brightness: float = 0.2,
                 contrast: float = 0.05, saturation: float = 0.05) -> np.ndarray:
    """torchvision-style ColorJitter (factors drawn from [1 - x, 1 + x], applied in random order)."""
    out = image.astype(np.float32)
    for op in rng.permutation(3):
        if op == 0:
            out = out * rng.uniform(1 - brightness, 1 + brightness)
        elif op == 1:
            out = (out - _grey(out).mean()) * rng.uniform(1 - contrast, 1 + contrast) + _grey(out).mean()
        else:
            grey = _grey(out)[..., None]
            out = (out - grey) * rng.uniform(1 - saturation, 1 + saturation) + grey
        out = np.clip(out, 0, 255)
    return out.astype(np.uint8)


def random_grayscale(image: np.ndarray, rng: np.random.Generator, p: float = 0.1) -> np.ndarray:
    """With probability p, replace the image by its luma in all three channels."""
    if rng.random() < p:
        return np.repeat(np.clip(_grey(image.astype(np.float32)), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    return image
