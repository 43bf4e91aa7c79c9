"""Object boxes and label maps: the window around an object, and conversions between instance label maps and
per-object masks or probabilities.

The window is the object's bounding box grown by 1/8 of its size on each side (25% in all), clipped to
the image: the box the authors use for scene parsing (paper §5). Their code clamps the exclusive end at
H - 1 / W - 1, so a window never reaches the last row and column; :func:`grown_box` keeps that quirk only
when asked (``authors=True``, for reproducing their ADE20K numbers).
"""
from __future__ import annotations

import math

import numpy as np
import torch

Box = tuple[int, int, int, int]  #: (y0, y1, x0, x1), ends exclusive


def grown_box(mask: np.ndarray, authors: bool = False, degenerate_whole: bool = True) -> Box | None:
    """The window of a binary H x W mask: its tight box grown by 1/8 of its size on each side.

    Size is the index difference ``rmax - rmin`` (as the authors compute it). ``authors=True`` clamps the
    end at ``H - 1`` (their quirk), which can leave an empty (degenerate) box for an object on the last
    row or column: that gives the whole image, or None when ``degenerate_whole`` is off (the authors'
    fusion skips such a component). An empty mask gives the whole image.
    """
    h, w = mask.shape
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return 0, h, 0, w

    def grow(lo: int, hi: int, n: int) -> tuple[int, int]:
        margin = (hi - lo) / 8
        start = math.floor(max(0, lo - margin))
        if authors:
            return start, max(start, math.floor(min(n - 1, hi + margin)))
        return start, min(n, math.floor(hi + margin) + 1)

    (y0, y1), (x0, x1) = grow(rows[0], rows[-1], h), grow(cols[0], cols[-1], w)
    if y1 <= y0 or x1 <= x0:
        return (0, h, 0, w) if degenerate_whole else None
    return y0, y1, x0, x1


def masks_from_labels(labels: np.ndarray) -> tuple[list[int], list[np.ndarray]]:
    """An H x W instance label map (0 = background) -> (ids in ascending order, one bool mask per id)."""
    ids = [int(i) for i in np.unique(labels) if i != 0]
    return ids, [labels == i for i in ids]


def labels_from_probabilities(probs: list[torch.Tensor | np.ndarray] | torch.Tensor, ids: list[int] | None = None,
                              threshold: float = 0.5) -> np.ndarray:
    """Fuse per-object probabilities (N maps H x W, tensors or arrays) into an H x W label map: each pixel takes the object of
    highest probability (``ids[n]``, default n + 1), or 0 where none exceeds ``threshold``. uint16 when
    an id exceeds 255, else uint8."""
    stack = torch.stack([torch.as_tensor(p) for p in probs]) if isinstance(probs, list) else torch.as_tensor(probs)
    ids = list(range(1, stack.shape[0] + 1)) if ids is None else list(ids)
    if not ids:
        raise ValueError('no objects to fuse')
    best, which = stack.max(0)
    table = np.asarray([0] + ids, np.int64)
    labels = np.where(best.numpy() > threshold, table[which.numpy() + 1], 0)
    return labels.astype(np.uint16 if max(ids, default=0) > 255 else np.uint8)


def component_box(split_seg: np.ndarray) -> Box:
    """The crop a scene-parsing component is refined in: the authors' box of its H x W mask (> 0 foreground),
    the last image row and column excluded (see :func:`grown_box`)."""
    return grown_box(split_seg > 0, authors=True)
