"""Coarse masks made from a ground truth: the training input mix and the benchmark families.

Masks are H x W uint8 (0..255 in, 0/255 out); all randomness comes from a ``numpy.random.Generator``.

* ``perturb``: the authors' perturbation (:func:`dataset.perturb.perturb_mask`): jagged polygons and
  random dilations/erosions until IoU < target. The authors' recipe trains on this alone.
* ``lowres``: what a low-resolution segmenter gives (the BIG situation): the ground truth area-downscaled
  by ``factor``, bilinearly upsampled and thresholded.
* ``blur``: a near-right mask whose boundary is shifted and smoothed (Gaussian blur, random threshold).

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
}


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


def degrade(gt: np.ndarray, family: str, rng: np.random.Generator,
            iou_range: tuple[float, float] = (0.8, 1.0)) -> np.ndarray:
    """One coarse mask of ``family`` with randomly drawn strength (see the module docstring)."""
    if family == 'perturb':
        return perturb_mask(gt, rng.uniform(*iou_range), rng)
    if family == 'lowres':  # factors 4..16, log-uniform, around the benchmark's 8
        return lowres_mask(gt, float(np.exp(rng.uniform(np.log(4), np.log(16)))), int(rng.integers(96, 160)))
    if family == 'blur':
        return blur_mask(gt, rng.uniform(1.0, 4.0), rng.uniform(0.3, 0.7))
    raise ValueError(f'unknown degradation {family!r}; known: perturb, lowres, blur')


def degrade_recipe(gt: np.ndarray, recipe: str, rng: np.random.Generator,
                   iou_range: tuple[float, float] = (0.8, 1.0)) -> np.ndarray:
    """A coarse mask from a family drawn with the probabilities of ``RECIPES[recipe]``."""
    if recipe not in RECIPES:
        raise ValueError(f'unknown degradation recipe {recipe!r}; known: {", ".join(RECIPES)}')
    families, weights = zip(*RECIPES[recipe])
    pick = int(rng.choice(len(families), p=weights)) if len(families) > 1 else 0  # 'perturb' draws as before
    return degrade(gt, families[pick], rng, iou_range)
