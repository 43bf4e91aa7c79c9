"""Coarse masks from a real segmenter, stored beside the training data.

``DATA_ROOT/mediapipe/SOURCE/STEM.png`` holds MediaPipe's selfie segmenter's mask (0/255, the image's size) of
``DATA_ROOT/SOURCE/STEM.jpg``: a 256 x 256 network's confidence resized to the image and thresholded at 0.5.
``DATA_ROOT/mediapipe/SOURCE/iou.tsv`` (``name<TAB>iou``, one header line) gives each mask's IoU with the ground
truth. Its errors are those practitioners bring: a band of misplaced boundary, plus parts missed or added.
"""
from __future__ import annotations

import functools
from pathlib import Path

from dataset.readers import Pair

#: The folder under the data root, and the lowest IoU a mask may have to count as a coarse mask of the object
#: (below it the segmenter found something else, or nothing: no refiner can recover that).
SEGMENTER = 'mediapipe'
MIN_IOU = 0.6


def segmenter_mask(pair: Pair) -> Path:
    """Where the segmenter's mask of a flat-layout ``pair`` lies (it may not exist)."""
    source = pair.image.parent
    return source.parent / SEGMENTER / source.name / f'{pair.image.stem}.png'


@functools.lru_cache(maxsize=None)
def _ious(table: Path) -> dict[str, float]:
    if not table.is_file():
        return {}
    rows = (line.split('\t') for line in table.read_text().splitlines()[1:] if line.strip())
    return {name: float(iou) for name, iou in rows}


def segmenter_iou(pair: Pair) -> float | None:
    """The IoU of the pair's segmenter mask with its ground truth, from ``iou.tsv`` (None: no mask or no row)."""
    mask = segmenter_mask(pair)
    if not mask.is_file():
        return None
    return _ious(mask.parent / 'iou.tsv').get(pair.image.stem)


def with_segmenter_masks(pairs: list[Pair], min_iou: float = MIN_IOU) -> list[Pair]:
    """The pairs whose segmenter mask exists with an IoU of at least ``min_iou``, in order."""
    return [p for p in pairs if (iou := segmenter_iou(p)) is not None and iou >= min_iou]
