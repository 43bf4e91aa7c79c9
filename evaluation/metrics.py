"""IoU and mean Boundary Accuracy (mBA), computed as the authors' ``eval_post`` does.

These are the numbers published for CascadePSP, CRM and SegRefiner on BIG and relabeled PASCAL, so
nothing here may change without breaking comparability:
  * masks are binarised with ``> 128`` (0..255 grey values);
  * IoU is cumulative over a folder: total intersection / total union;
  * mBA of an image: r_max = (W + H) / 300; radii r_i = 1 + int((r_max - 1) / 5 * i), i = 0..4;
    the band is the morphological gradient of the ground truth with an elliptical (2r+1) x (2r+1)
    kernel; accuracy is the fraction of band pixels where prediction equals ground truth; the mean
    over the five radii, then the unweighted mean over images. (The paper's text says radii start at
    3; the released numbers come from this code.)
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np
from PIL import Image

NUM_RADII = 5
#: Objects whose input mask sums to less than this (in 0..255 units) keep the input as their output.
SMALL_OBJECT_SUM = 32 * 32


def boundary_radii(h: int, w: int) -> list[int]:
    """The five band radii (pixels) used for an h x w ground truth."""
    max_radius = (w + h) / 300
    return [1 + int((max_radius - 1) / NUM_RADII * i) for i in range(NUM_RADII)]


_TILE = 256


def _gradient_band(binary: np.ndarray, radius: int, edges: np.ndarray) -> np.ndarray:
    """``morphologyEx(binary, MORPH_GRADIENT, ellipse(2r+1)) > 0``, computed only where it can be non-zero.

    A tile whose surroundings (``radius`` + 1 pixels) hold no transition pixel (``edges``) is constant
    there, so its band is empty; the large-kernel morphology runs only on the other tiles, each with a
    halo of ``radius`` pixels, which gives exactly the whole-image result (at the image border OpenCV's
    default border values never create a transition). On a 5000 x 3600 mask this is several times faster.
    """
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (radius * 2 + 1, radius * 2 + 1))
    h, w = binary.shape
    band = np.zeros((h, w), bool)
    halo = radius + 1
    for y0 in range(0, h, _TILE):
        for x0 in range(0, w, _TILE):
            y1, x1 = min(y0 + _TILE, h), min(x0 + _TILE, w)
            ya, yb, xa, xb = max(0, y0 - halo), min(h, y1 + halo), max(0, x0 - halo), min(w, x1 + halo)
            if not edges[ya:yb, xa:xb].any():
                continue
            grad = cv2.morphologyEx(binary[ya:yb, xa:xb], cv2.MORPH_GRADIENT, kernel)
            band[y0:y1, x0:x1] = grad[y0 - ya:y1 - ya, x0 - xa:x1 - xa] > 0
    return band


def _band(gt: np.ndarray, radius: int, multiclass: bool) -> np.ndarray:
    classes = [c for c in np.unique(gt) if c != 0] if multiclass else [True]
    band = np.zeros(gt.shape, bool)
    for c in classes:  # multiclass: the union of the per-class bands of the non-void classes
        binary = (gt == c).astype(np.uint8)
        edges = cv2.morphologyEx(binary, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
        band |= _gradient_band(binary, radius, edges)
    return band & (gt != 0) if multiclass else band  # void pixels are not counted


def boundary_accuracy(gt: np.ndarray, *preds: np.ndarray, multiclass: bool = False) -> tuple[float, ...]:
    """Mean boundary accuracy of each prediction against ``gt`` (one band computation for all).

    Args:
        gt: H x W ground truth: boolean (binary) or integer labels with ``multiclass`` (0 = void).
        preds: H x W predictions of the same kind.
        multiclass: scene-parsing variant: the band is the union of the per-class bands of the
            non-void classes, and void ground-truth pixels are left out of the count.

    Returns:
        One mBA in [0, 1] per prediction; NaN when the ground truth has no boundary at all (empty or
        full mask), where the authors' code divides by zero.
    """
    for p in preds:
        if p.shape != gt.shape:
            raise ValueError(f'prediction {p.shape} and ground truth {gt.shape} differ in size')
    h, w = gt.shape
    accs = [[] for _ in preds]
    for radius in boundary_radii(h, w):
        band = _band(gt, radius, multiclass)
        n = int(band.sum())
        gt_in = gt[band]
        for acc, p in zip(accs, preds):
            acc.append(int((p[band] == gt_in).sum()) / n if n else math.nan)
    # sum(list) / 5 in the authors' order, for bit-identical floats
    return tuple(sum(acc) / NUM_RADII for acc in accs)


def intersection_union(gt: np.ndarray, pred: np.ndarray) -> tuple[int, int]:
    """Pixel counts of gt AND pred and gt OR pred (boolean H x W arrays)."""
    return int(np.count_nonzero(gt & pred)), int(np.count_nonzero(gt | pred))


@dataclass
class ImageScore:
    """Per-image record: input (``seg``) and refined (``mask``) against the ground truth."""
    name: str
    height: int
    width: int
    seg_intersection: int
    seg_union: int
    mask_intersection: int
    mask_union: int
    seg_mba: float
    mask_mba: float
    small_object: bool

    @property
    def seg_iou(self) -> float:
        return self.seg_intersection / self.seg_union if self.seg_union else math.nan

    @property
    def mask_iou(self) -> float:
        return self.mask_intersection / self.mask_union if self.mask_union else math.nan

    def to_dict(self) -> dict:
        return {**asdict(self), 'seg_iou': self.seg_iou, 'mask_iou': self.mask_iou}


def resize_like(mask: np.ndarray, height: int, width: int, labels: bool = False) -> np.ndarray:
    """Resize a uint8 grey mask with PIL's bilinear filter (antialiased when it shrinks), as the authors'
    ``eval_post`` does for refined masks of another size; a label map (``labels``) nearest-neighbour, so that no
    label is invented between two others."""
    if mask.shape == (height, width):
        return mask
    return np.asarray(Image.fromarray(mask).resize((width, height), Image.NEAREST if labels else Image.BILINEAR))


def score_image(name: str, gt: np.ndarray, seg: np.ndarray, mask: np.ndarray,
                multiclass: bool = False) -> ImageScore:
    """Score one image the authors' way.

    Args:
        gt, seg, mask: H x W uint8 in 0..255 (binary case) or label maps (``multiclass``). ``mask`` is
            resized to the ground truth's size when it differs (:func:`resize_like`). ``seg`` must have the
            ground truth's size.
    """
    if seg.shape != gt.shape:
        raise ValueError(f'{name}: input mask {seg.shape} and ground truth {gt.shape} differ in size')
    mask = resize_like(mask, *gt.shape, labels=multiclass)
    small = int(seg.sum(dtype=np.int64)) < SMALL_OBJECT_SUM
    if multiclass:
        gt_b, seg_b, mask_b = gt, seg, mask
        seg_i = seg_u = mask_i = mask_u = 0  # IoU of label maps is per class; not reported here
    else:
        gt_b, seg_b, mask_b = gt > 128, seg > 128, mask > 128
    if small:  # the authors keep tiny inputs as they are
        mask_b = seg_b
    if not multiclass:
        seg_i, seg_u = intersection_union(gt_b, seg_b)
        mask_i, mask_u = intersection_union(gt_b, mask_b)
    seg_mba, mask_mba = boundary_accuracy(gt_b, seg_b, mask_b, multiclass=multiclass)
    return ImageScore(name, gt.shape[0], gt.shape[1], seg_i, seg_u, mask_i, mask_u, seg_mba, mask_mba, small)


def summarize(scores: Sequence[ImageScore]) -> dict:
    """Folder-level numbers: cumulative IoU, mean mBA (images without a boundary left out), sizes."""
    def ratio(a: int, b: int) -> float:
        return a / b if b else math.nan

    with_boundary = [s for s in scores if not math.isnan(s.mask_mba)]
    new_iou = ratio(sum(s.mask_intersection for s in scores), sum(s.mask_union for s in scores))
    old_iou = ratio(sum(s.seg_intersection for s in scores), sum(s.seg_union for s in scores))
    new_mba = sum(s.mask_mba for s in with_boundary) / len(with_boundary) if with_boundary else math.nan
    old_mba = sum(s.seg_mba for s in with_boundary) / len(with_boundary) if with_boundary else math.nan
    n = len(scores)
    return {
        'images': n,
        'new_iou': new_iou, 'old_iou': old_iou, 'iou_delta': new_iou - old_iou,
        'new_mba': new_mba, 'old_mba': old_mba, 'mba_delta': new_mba - old_mba,
        'avg_h_plus_w': sum(s.height + s.width for s in scores) / n if n else math.nan,
        'avg_max_side': sum(max(s.height, s.width) for s in scores) / n if n else math.nan,
        'small_objects': sum(s.small_object for s in scores),
        'images_without_boundary': n - len(with_boundary),
    }
