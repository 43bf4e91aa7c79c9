"""Many objects of one image: each refined inside a window around its box, windows of one size batched.

The window is the object's bounding box grown by 1/8 of its size on each side (25% in all), clipped to
the image: the box the authors use for scene parsing (paper §5). Their code clamps the exclusive end at
H - 1 / W - 1, so a window never reaches the last row and column; :func:`grown_box` keeps that quirk only
when asked (``authors=True``, for reproducing their ADE20K numbers).
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import torch
import torch.nn as nn

from models.cascade import CascadeConfig
from models.refiner import refine_image

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


@torch.inference_mode()
def refine_crops(model: nn.Module, images: list[torch.Tensor], masks: list[torch.Tensor], L: int = 900,
                 stride: int = 450, batch: int = 1, global_only: bool = False, min_size: int | None = None,
                 follow_size: bool = True) -> list[torch.Tensor]:
    """Refine independent crops (1 x 3 x h x w images, 1 x 1 x h x w masks in [-1, 1]), batching those of one size.

    ``follow_size``: each crop's L is its long side capped at ``L`` (a small crop is refined at its own
    resolution, also in ``global_only`` mode); otherwise ``L`` as given (the authors' ``eval.py --ade``).
    Returns 1 x 1 x h x w probabilities per crop, each the result it would have alone.
    """
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, image in enumerate(images):
        groups[tuple(image.shape[-2:])].append(i)
    results: list[torch.Tensor | None] = [None] * len(images)
    for (h, w), members in groups.items():
        crop_L = min(L, max(h, w, 8)) if follow_size else L
        cfg = CascadeConfig(L=crop_L, stride=stride, batch=batch)
        for k in range(0, len(members), batch):
            chunk = members[k:k + batch]
            prob, _ = refine_image(model, torch.cat([images[i] for i in chunk]), torch.cat([masks[i] for i in chunk]),
                                   cfg, global_only, min_size)
            for j, i in enumerate(chunk):
                results[i] = prob[j:j + 1]
    return results  # type: ignore[return-value]


def refine_objects(model: nn.Module, image: torch.Tensor, masks: list[np.ndarray], L: int = 900,
                   stride: int = 450, batch: int = 1, global_only: bool = False) -> list[torch.Tensor]:
    """Refine each object inside its window (:func:`grown_box`).

    Args:
        image: 1 x 3 x H x W normalised RGB.
        masks: N binary H x W masks (bool or uint8, non-zero = object).
        L: the cascade's L for each window is the window's long side, capped at ``L`` (a small object is
            refined at its own resolution, a large one as an image of its own).
        batch: windows (and local crops) per forward pass. Windows of the same size are refined together;
            each result is the one it would have alone.

    Returns:
        N tensors H x W of probabilities in [0, 1], zero outside each window.
    """
    h, w = image.shape[-2:]
    boxes = [grown_box(np.asarray(m) > 0) for m in masks]
    crops = [image[:, :, y0:y1, x0:x1] for y0, y1, x0, x1 in boxes]
    segs = [torch.from_numpy((np.asarray(m) > 0)[y0:y1, x0:x1].astype(np.float32))[None, None] * 2 - 1
            for m, (y0, y1, x0, x1) in zip(masks, boxes)]
    results = []
    for prob, (y0, y1, x0, x1) in zip(refine_crops(model, crops, segs, L, stride, batch, global_only), boxes):
        full = torch.zeros(h, w)
        full[y0:y1, x0:x1] = prob[0, 0]
        results.append(full)
    return results


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
