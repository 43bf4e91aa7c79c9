"""Make a training input mask by perturbing the ground truth, as the authors' ``modify_boundary`` does.

1. Per external contour with at least 10 points: drop a consecutive run of 10% of its vertices whose
   two ends are close (the start is drawn among the 10% closest-ended runs), keep a random 10% of the
   remaining vertices in order, and fill the resulting polygons.
2. Up to 250 rounds of 4 random operations on random rectangles (sometimes flip the centre pixel,
   then dilate or erode once with a random kernel), stopping once the IoU with the polygon mask falls
   below ``iou_target``.

All randomness comes from the ``rng`` argument (``numpy.random.Generator``), so data-loader workers
seeded differently draw different masks and a seeded run is reproducible.
"""
from __future__ import annotations

import math

import cv2
import numpy as np


def _random_kernel(rng: np.random.Generator) -> np.ndarray:
    size = int(rng.integers(3, 10))
    # The authors' released model was trained with a bug that drew from 0..3 (one shape never used);
    # their code, and this one, use all four shapes.
    shape = int(rng.integers(1, 5))
    if shape == 1:
        return cv2.getStructuringElement(cv2.MORPH_RECT, (size, size))
    if shape == 2:
        return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    if shape == 3:
        return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size // 2))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size // 2, size))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of the non-zero pixels of two masks, with the authors' 1e-6 smoothing."""
    return (np.count_nonzero(a & b) + 1e-6) / (np.count_nonzero(a | b) + 1e-6)


def perturb_regions(mask: np.ndarray, iou_target: float, rng: np.random.Generator, rounds: int = 250) -> np.ndarray:
    """Step 2: random dilations/erosions of rectangles until IoU(result, mask) < iou_target.

    mask: H x W uint8 (0/255 after thresholding at 127). Returns a new H x W uint8 0/255 mask.
    """
    h, w = mask.shape
    _, seg = cv2.threshold(mask, 127, 255, cv2.THRESH_BINARY)
    if h <= 2 or w <= 2:
        return seg
    for _ in range(rounds):
        for _ in range(4):
            lx, ly = int(rng.integers(w)), int(rng.integers(h))
            lw, lh = int(rng.integers(lx + 1, w + 1)), int(rng.integers(ly + 1, h + 1))
            # A single flipped pixel grown by the dilation/erosion below makes holes and islands.
            if rng.random() < 0.25:
                seg[(ly + lh) // 2, (lx + lw) // 2] = int(rng.integers(2)) * 255
            op = cv2.dilate if rng.random() < 0.5 else cv2.erode
            seg[ly:lh, lx:lw] = op(seg[ly:lh, lx:lw], _random_kernel(rng), iterations=1)
        if iou(seg, mask) < iou_target:
            break
    return seg


def simplify_contours(mask: np.ndarray, rng: np.random.Generator, regional_rate: float = 0.1,
                      sample_rate: float = 0.1) -> np.ndarray:
    """Step 1: polygons from subsampled external contours, filled. H x W uint8 0/255 in and out."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    polygons = []
    for contour in contours:
        n = contour.shape[0]
        if n < 10:
            continue
        removes = int(n * regional_rate)
        # Runs of `removes` vertices whose ends are closest: dropping one cuts a shortcut across the shape.
        ends = np.sum((contour[:n - removes] - contour[removes:n]) ** 2, axis=(1, 2))
        candidates = np.argsort(ends, kind='stable')[:math.ceil(0.1 * (n - removes))]
        start = int(rng.choice(candidates))
        contour = np.concatenate([contour[:start], contour[start + removes:]], axis=0)
        n = contour.shape[0]
        keep = np.sort(rng.choice(n, int(n * sample_rate), replace=False))
        if len(keep):
            polygons.append(contour[keep])
    if not polygons:
        return mask.copy()
    return cv2.drawContours(np.zeros_like(mask), polygons, -1, 255, -1)


def perturb_mask(gt: np.ndarray, iou_target: float, rng: np.random.Generator) -> np.ndarray:
    """The full perturbation. gt: H x W uint8 (any non-zero is foreground); returns H x W uint8 0/255."""
    binary = (gt > 0).astype(np.uint8) * 255
    return perturb_regions(simplify_contours(binary, rng), iou_target, rng)
