"""Scene parsing (paper §5, ADE20K): split a label map into per-class components, fuse the refined
components back into a label map, and score it, exactly as the authors' ``ade_expand_inst.py`` and
``eval_post_ade.py`` do (``tests/reference/scene_parsing.*``; reproduced to the pixel and to 1e-12).

Labels: 0 = void (ground truth only), 1..150 = ADE20K classes. Model outputs in 0..149 need the authors'
+1 shift first (:func:`all_plus_one`). Quirks kept by default so the numbers stay comparable with the paper:
  * the split's closing kernel is an asymmetric 10 x 10 disc (regions lose a top row / left column);
  * a component's box never holds the last image row and column (:func:`util.boxes.grown_box`);
  * mIoU is the mean over all 150 classes, absent classes counting 0;
  * per image, the smallest label of gt ∪ input is dropped from the counts (meant to be void; without void
    pixels, a real class is dropped).
The report adds clearly labelled fairer figures (mIoU over the classes present).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from util.boxes import Box
from evaluation.metrics import boundary_accuracy, resize_like

NUM_CLASSES = 150
#: Minimum size (pixels, exclusive) of a class in the input and of a closed component.
MIN_PIXELS = 1024
#: ADE20K classes treated as background (stuff): their refined probabilities are scaled by 0.51.
BACKGROUND_CLASSES = frozenset((1, 2, 3, 4, 6, 7, 10, 12, 14, 17, 22, 26, 27, 29, 30, 47, 49, 52, 53, 55, 60, 61,
                                62, 69, 80, 85, 92, 95, 97, 102, 106, 110, 114, 129, 141))
BACKGROUND_SCALE = 0.51


def all_plus_one(labels: np.ndarray) -> np.ndarray:
    """The authors' ``all_plus_one.py``: 0..149 model outputs -> 1..150 ADE labels; 255 wraps to 0 (void)."""
    return (np.asarray(labels).astype(np.uint8) + np.uint8(1)).astype(np.uint8)


def closing_kernel() -> np.ndarray:
    """10 x 10, K[i, j] = 1 iff (i - 5)^2 + (j - 5)^2 <= 25: a radius-5 disc without its last row and column."""
    i, j = np.mgrid[:10, :10]
    return ((i - 5) ** 2 + (j - 5) ** 2 <= 25).astype(np.uint8)


@dataclass(frozen=True)
class Component:
    cls: int
    k: int                  #: OpenCV's connected-component label: an opaque id
    seg: np.ndarray         #: H x W uint8 0/255: the component's input pixels (region AND class)
    gt: np.ndarray          #: H x W uint8 0/255: the region AND the ground-truth class

    @property
    def stem(self) -> str:
        return f'{self.cls}.{self.k}'


def split_components(seg: np.ndarray, gt: np.ndarray) -> list[Component]:
    """Step 2: per class of the input (in ascending order), close it with :func:`closing_kernel`, take the
    8-connected components of the dilation, erode each, and keep those of more than 1024 pixels."""
    kernel = closing_kernel()
    out = []
    for c in np.union1d(np.unique(seg), np.unique(gt)):
        s = (seg == c).astype(np.uint8)
        if int(s.sum()) <= MIN_PIXELS:
            continue
        dilated = cv2.dilate(s, kernel)
        n, labels = cv2.connectedComponents(dilated, connectivity=8)
        for k in range(1, n):
            region = cv2.erode((labels == k).astype(np.uint8), kernel)  # outside the image counts as 1
            if int(region.sum()) <= MIN_PIXELS:
                continue
            out.append(Component(int(c), k, ((region > 0) & (s > 0)).astype(np.uint8) * 255,
                                 ((region > 0) & (gt == c)).astype(np.uint8) * 255))
    return out


_CLASS = re.compile(r'(\d+)\.(\d+)')


def component_class(filename: str) -> int:
    """The class of a component file: the digits before the dot of the last ``digits.digits`` in the name."""
    found = _CLASS.findall(filename)
    if not found:
        raise ValueError(f'{filename}: no CLASS.ID in the component file name')
    return int(found[-1][0])


def fuse(seg: np.ndarray, components: list[tuple[int, Box | None, np.ndarray]]) -> np.ndarray:
    """Step 4 fusion: each pixel takes the class of the highest (scaled) probability above 0.5, else keeps
    its input label.

    Args:
        seg: H x W input label map.
        components: (class, box or None for a degenerate one: skipped, uint8 probability map of the box's
            size or another size: PIL-bilinear-resized to it), in reading order (ties: the first read wins).

    Returns:
        H x W fused label map (void not yet masked).
    """
    mask = seg.copy()
    conf = np.full(seg.shape, 0.5, np.float64)
    for cls, box, png in components:
        if box is None:
            continue
        y0, y1, x0, x1 = box
        png = resize_like(png, y1 - y0, x1 - x0)
        p = png.astype(np.float32) / np.float32(255)
        if cls in BACKGROUND_CLASSES:
            p = p * np.float32(BACKGROUND_SCALE)
        region, c = mask[y0:y1, x0:x1], conf[y0:y1, x0:x1]
        region[p > c] = cls
        conf[y0:y1, x0:x1] = np.maximum(c, p)
    return mask


@dataclass
class SceneScores:
    """Accumulated over a folder; index c - 1 holds class c."""
    old_i: np.ndarray = field(default_factory=lambda: np.zeros(NUM_CLASSES, np.int64))
    old_u: np.ndarray = field(default_factory=lambda: np.zeros(NUM_CLASSES, np.int64))
    new_i: np.ndarray = field(default_factory=lambda: np.zeros(NUM_CLASSES, np.int64))
    new_u: np.ndarray = field(default_factory=lambda: np.zeros(NUM_CLASSES, np.int64))
    old_correct: int = 0
    new_correct: int = 0
    pixels: int = 0
    mba: dict[str, tuple[float, float]] = field(default_factory=dict)   #: name -> (old, new)

    def add(self, name: str, gt: np.ndarray, seg: np.ndarray, fused: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score one image (labels as read; void masking is done here). Returns the masked (seg, fused)."""
        labels = np.union1d(np.unique(gt), np.unique(seg))
        high = labels[labels > NUM_CLASSES]
        if len(high):
            raise ValueError(f'{name}: labels {high.tolist()} above {NUM_CLASSES}; ADE20K labels are 1..150 '
                             '(0 = void). Model outputs in 0..149 need the +1 shift (all_plus_one)')
        seg, fused = np.where(gt == 0, 0, seg), np.where(gt == 0, 0, fused)
        for c in labels[1:]:  # the smallest label is dropped, as the authors do (meant to be void)
            g, a, b = gt == c, seg == c, fused == c
            ga, gb = int(np.count_nonzero(g & a)), int(np.count_nonzero(g & b))
            self.old_i[c - 1] += ga
            self.old_u[c - 1] += int(np.count_nonzero(g | a))
            self.new_i[c - 1] += gb
            self.new_u[c - 1] += int(np.count_nonzero(g | b))
            self.old_correct += ga
            self.new_correct += gb
            self.pixels += int(np.count_nonzero(g))
        old_mba, new_mba = boundary_accuracy(gt, seg, fused, multiclass=True)
        self.mba[name] = (old_mba, new_mba)
        return seg, fused

    def summary(self) -> dict:
        old_iou = self.old_i / (self.old_u + 1e-6)
        new_iou = self.new_i / (self.new_u + 1e-6)
        present = (self.old_u + self.new_u) > 0
        with_boundary = [v for v in self.mba.values() if not math.isnan(v[0])]
        old_mba = sum(v[0] for v in with_boundary) / len(with_boundary) if with_boundary else math.nan
        new_mba = sum(v[1] for v in with_boundary) / len(with_boundary) if with_boundary else math.nan
        old_miou, new_miou = float(np.mean(old_iou)), float(np.mean(new_iou))
        return {
            'new_pixel_accuracy': self.new_correct / self.pixels if self.pixels else math.nan,
            'old_pixel_accuracy': self.old_correct / self.pixels if self.pixels else math.nan,
            'total_new_correct_pixels': self.new_correct, 'total_old_correct_pixels': self.old_correct,
            'total_num_pixels': self.pixels,
            'old_miou': old_miou, 'new_miou': new_miou, 'miou_delta': new_miou - old_miou,
            'old_mba': old_mba, 'new_mba': new_mba, 'mba_delta': new_mba - old_mba,
            'num_images': len(self.mba), 'small_objects': 0,
            'classes_present': int(present.sum()),
            'old_miou_present': float(old_iou[present].mean()) if present.any() else math.nan,
            'new_miou_present': float(new_iou[present].mean()) if present.any() else math.nan,
            'class_i_u_by_label__new_i_new_u_old_i_old_u': {
                str(c + 1): [int(self.new_i[c]), int(self.new_u[c]), int(self.old_i[c]), int(self.old_u[c])]
                for c in np.flatnonzero(present)},
            'mba_per_image__old_new': {k: list(v) for k, v in self.mba.items()},
        }


def format_results(s: dict) -> str:
    """``results_post.txt`` in the authors' wording, then extra figures under a labelled heading."""
    text = (f"New pixel accuracy:  {s['new_pixel_accuracy']!r}\nOld pixel accuracy:  {s['old_pixel_accuracy']!r}\n"
            f"Number of small objects:  {s['small_objects']}\nNow giving class information\n\nAverage over classes\n"
            f"Old mIoU    :  {s['old_miou']!r}\nNew mIoU    :  {s['new_miou']!r}\nmIoU Delta  :  {s['miou_delta']!r}\n"
            f"Old mBA     :  {s['old_mba']!r}\nNew mBA     :  {s['new_mba']!r}\nmBA Delta   :  {s['mba_delta']!r}\n")
    return text + ('\n# Not in the authors\' output: mIoU over the classes present in gt or input '
                   f"({s['classes_present']} of {NUM_CLASSES}; the figures above count absent classes as 0)\n"
                   f"Old mIoU (present):  {s['old_miou_present']!r}\nNew mIoU (present):  {s['new_miou_present']!r}\n")


def label_colours(labels: np.ndarray) -> np.ndarray:
    """H x W labels -> H x W x 3 RGB with a fixed colour per class (0 = void in black)."""
    rng = np.random.default_rng(150)
    palette = np.concatenate([np.zeros((1, 3), np.uint8), rng.integers(40, 256, (NUM_CLASSES + 105, 3), dtype=np.uint8)])
    return palette[np.asarray(labels, np.int64)]


def component_files(mask_dir: str | Path, name: str) -> list[Path]:
    """The refined component files of image ``name`` (``NAME_<class>.<id>_mask.png``), sorted by name."""
    return sorted(p for p in Path(mask_dir).glob(f'{name}_*mask*') if _CLASS.search(p.name))


def format_stdout(s: dict, scores: SceneScores) -> str:
    """What the authors' script prints: the file's text with the per-class IoUs inserted."""
    new = ''.join(f'{v:.3f} ' for v in scores.new_i / (scores.new_u + 1e-6))
    old = ''.join(f'{v:.3f} ' for v in scores.old_i / (scores.old_u + 1e-6))
    text = format_results(s)
    head, _, tail = text.partition('Now giving class information\n\n')
    return f'{head}Now giving class information\n\nNew IOUs: \n{new}\nOld IOUs: \n{old}\n{tail}'
