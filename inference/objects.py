"""Many objects of one image: each refined inside a window around its box (:func:`util.boxes.grown_box`),
windows of one size batched."""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from inference.predict import default_config, refine_image
from util.boxes import grown_box


def _window_config(cfg: Any, h: int, w: int) -> Any:
    """``cfg`` with its working resolution ``L`` (where the method has one) capped at the window's long side:
    a small window is refined at its own resolution, a large one as an image of its own."""
    if any(f.name == 'L' for f in dataclasses.fields(cfg)):
        return dataclasses.replace(cfg, L=min(cfg.L, max(h, w, 8)))
    return cfg


@torch.inference_mode()
def refine_crops(model: nn.Module, images: list[torch.Tensor], masks: list[torch.Tensor], cfg: Any = None,
                 follow_size: bool = True) -> list[torch.Tensor]:
    """Refine independent crops (1 x 3 x h x w normalised images, 1 x 1 x h x w masks in [0, 1]), batching
    those of one size (``cfg.batch`` at a time, where the method's config has a batch).

    ``follow_size``: each crop's L is its long side capped at ``cfg.L`` (also in ``global_only`` mode);
    otherwise ``cfg`` as given (the authors' ``eval.py --ade``).
    Returns 1 x C x h x w probabilities per crop, each the result it would have alone.
    """
    cfg = cfg if cfg is not None else default_config(model)
    batch = max(1, getattr(cfg, 'batch', 1))
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, image in enumerate(images):
        groups[tuple(image.shape[-2:])].append(i)
    results: list[torch.Tensor | None] = [None] * len(images)
    for (h, w), members in groups.items():
        crop_cfg = _window_config(cfg, h, w) if follow_size else cfg
        for k in range(0, len(members), batch):
            chunk = members[k:k + batch]
            probs = refine_image(model, torch.cat([images[i] for i in chunk]), torch.cat([masks[i] for i in chunk]),
                                 crop_cfg).probs
            for j, i in enumerate(chunk):
                results[i] = probs[j:j + 1]
    return results  # type: ignore[return-value]


def refine_objects(model: nn.Module, image: torch.Tensor, masks: list[np.ndarray], cfg: Any = None
                   ) -> list[torch.Tensor]:
    """Refine each object inside its window (:func:`util.boxes.grown_box`).

    Args:
        image: 1 x 3 x H x W normalised RGB.
        masks: N binary H x W masks (bool or uint8, non-zero = object).
        cfg: the method's inference config; its L is each window's long side capped at ``cfg.L``. Windows
            of the same size are refined together (``cfg.batch`` per pass); each result is the one it would
            have alone.

    Returns:
        N tensors H x W of probabilities in [0, 1], zero outside each window.
    """
    h, w = image.shape[-2:]
    boxes = [grown_box(np.asarray(m) > 0) for m in masks]
    crops = [image[:, :, y0:y1, x0:x1] for y0, y1, x0, x1 in boxes]
    segs = [torch.from_numpy((np.asarray(m) > 0)[y0:y1, x0:x1].astype(np.float32))[None, None]
            for m, (y0, y1, x0, x1) in zip(masks, boxes)]
    results = []
    for prob, (y0, y1, x0, x1) in zip(refine_crops(model, crops, segs, cfg), boxes):
        full = torch.zeros(h, w)
        full[y0:y1, x0:x1] = prob[0, 0]
        results.append(full)
    return results
