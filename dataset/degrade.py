"""Coarse masks made from a ground truth: the training input mix and the benchmark families.

Masks are H x W uint8 (0..255 in, 0/255 out); all randomness comes from a ``numpy.random.Generator``.

* ``perturb``: the authors' perturbation (:func:`dataset.perturb.perturb_mask`): jagged polygons and
  random dilations/erosions until IoU < target. The authors' recipe trains on this alone.
* ``lowres``: what a low-resolution segmenter gives (the BIG situation): the ground truth area-downscaled
  by ``factor``, bilinearly upsampled and thresholded.
* ``blur``: a near-right mask whose boundary is shifted and smoothed (Gaussian blur, random threshold).
* ``jitter``: a smooth random displacement of the whole mask (a few pixels, varying slowly across the
  image) plus a small dilation or erosion: a segmenter that is right up to a wobble of its boundary. It is
  written independently of the perturbation and kept out of every training recipe, so the benchmark's
  jitter family measures generalisation, not memory of the training degradations.
* ``identity``: the ground truth itself: a right mask must come back unchanged.

A net trained on ``perturb`` alone has never seen a mask that is already nearly right, and on a CPU
budget it learns to replace such masks by its own weaker segmentation; the ``mix`` recipe shows it all three.
"""
from __future__ import annotations

import cv2
import numpy as np

from dataset.perturb import perturb_mask

#: Degradation recipes for training: name -> ((family, probability), ...).
RECIPES: dict[str, tuple[tuple[str, float], ...]] = {
    'perturb': (('perturb', 1.0),),
    'mix': (('perturb', 0.4), ('lowres', 0.4), ('blur', 0.2)),
    'mix_gentle': (('perturb', 0.3), ('lowres', 0.5), ('blur', 0.2)),   # more near-right masks
    # near-right masks at every coarseness (x2-x24), right masks, and the authors' perturbation
    'nearright': (('perturb', 0.25), ('lowres_wide', 0.5), ('blur', 0.15), ('identity', 0.1)),
}


#: Every family :func:`degrade` knows.
FAMILY_NAMES = ('perturb', 'lowres', 'lowres_wide', 'lowres_near', 'blur', 'jitter', 'identity')


def lowres_mask(gt: np.ndarray, factor: float = 8.0, threshold: int = 127) -> np.ndarray:
    """Area-downscale by ``factor`` (each side at least 1 px), upsample bilinearly, threshold (> threshold)."""
    h, w = gt.shape
    small = cv2.resize(gt, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA)
    up = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.where(up > threshold, 255, 0).astype(np.uint8)


def blur_mask(gt: np.ndarray, sigma: float, threshold: float) -> np.ndarray:
    """Gaussian-blur the 0/255 mask (sigma in pixels) and threshold at ``threshold`` in (0, 1)."""
    blurred = cv2.GaussianBlur((gt > 127).astype(np.float32), (0, 0), sigma)
    return np.where(blurred > threshold, 255, 0).astype(np.uint8)


def jitter_mask(gt: np.ndarray, amplitude: float, wavelength: float, morph: int,
                rng: np.random.Generator) -> np.ndarray:
    """Displace the mask by a smooth random field and dilate (``morph`` > 0) or erode (< 0) it.

    The field is Gaussian noise on a grid of one node per ``wavelength`` pixels, bicubically upsampled and
    scaled so that its largest displacement is ``amplitude`` pixels; ``|morph|`` is the radius, in pixels,
    of the elliptical structuring element.
    """
    h, w = gt.shape
    gh, gw = max(2, round(h / wavelength) + 1), max(2, round(w / wavelength) + 1)
    field = [cv2.resize(rng.standard_normal((gh, gw)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
             for _ in range(2)]
    peak = max(float(np.abs(field[0]).max()), float(np.abs(field[1]).max()), 1e-6)
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    moved = cv2.remap(gt, gx + field[0] * (amplitude / peak), gy + field[1] * (amplitude / peak),
                      cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out = np.where(moved > 127, 255, 0).astype(np.uint8)
    if morph:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(morph) + 1,) * 2)
        out = cv2.dilate(out, kernel) if morph > 0 else cv2.erode(out, kernel)
    return out


def degrade(gt: np.ndarray, family: str, rng: np.random.Generator,
            iou_range: tuple[float, float] = (0.8, 1.0)) -> np.ndarray:
    """One coarse mask of ``family`` with randomly drawn strength (see the module docstring)."""
    if family == 'perturb':
        return perturb_mask(gt, rng.uniform(*iou_range), rng)
    if family == 'lowres':  # factors 4..16, log-uniform, around the benchmark's 8
        return lowres_mask(gt, float(np.exp(rng.uniform(np.log(4), np.log(16)))), int(rng.integers(96, 160)))
    if family == 'lowres_wide':  # factors 2..24, log-uniform: the benchmark's x4, x8, x16 and beyond
        return lowres_mask(gt, float(np.exp(rng.uniform(np.log(2), np.log(24)))), int(rng.integers(96, 160)))
    if family == 'lowres_near':  # factors 3..5 at the 0.5 threshold: nearly right, as an upsampled x4 segmenter's
        return lowres_mask(gt, float(rng.uniform(3, 5)), 127)
    if family == 'blur':
        return blur_mask(gt, rng.uniform(1.0, 4.0), rng.uniform(0.3, 0.7))
    if family == 'jitter':
        return jitter_mask(gt, rng.uniform(1.5, 4.0), rng.uniform(24, 64), int(rng.integers(-2, 3)), rng)
    if family == 'identity':
        return np.where(gt > 127, 255, 0).astype(np.uint8)
    raise ValueError(f'unknown degradation {family!r}; known: {", ".join(FAMILY_NAMES)}')


def degrade_recipe(gt: np.ndarray, recipe: str, rng: np.random.Generator,
                   iou_range: tuple[float, float] = (0.8, 1.0)) -> np.ndarray:
    """A coarse mask from a family drawn with the probabilities of ``RECIPES[recipe]``."""
    if recipe not in RECIPES:
        raise ValueError(f'unknown degradation recipe {recipe!r}; known: {", ".join(RECIPES)}')
    families, weights = zip(*RECIPES[recipe])
    pick = int(rng.choice(len(families), p=weights)) if len(families) > 1 else 0  # 'perturb' draws as before
    return degrade(gt, families[pick], rng, iou_range)
