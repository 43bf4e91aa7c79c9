"""Refiner: the practitioner's API, and :func:`refine_image`, which ``eval.py`` shares with it."""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn as nn

from models.cascade import CascadeConfig, refine_global_local, refine_global_only
from models.hub import load_pretrained
from util.transforms import binarize, normalize_image, normalize_mask, probability_to_uint8


@torch.inference_mode()
def refine_image(model: nn.Module, image: torch.Tensor, mask: torch.Tensor, cfg: CascadeConfig = CascadeConfig(),
                 global_only: bool = False, min_size: int | None = None) -> tuple[torch.Tensor, int]:
    """Refine one image with the Global+Local cascade (or the Global step alone).

    Args:
        model: refinement module in eval mode, on any device.
        image: B x 3 x H x W normalised RGB (see :mod:`util.transforms`), on the aggregation device; B > 1
            refines same-sized images together (each as it would be alone).
        mask: B x 1 x H x W coarse masks in [-1, 1], same device.
        cfg: L, stride, crop batch, ...
        global_only: run the Global step only (images under ``min_size`` are upscaled first).
        min_size: long-side minimum for ``global_only`` (default ``cfg.L``; 224 for ADE20K-style objects).

    Returns:
        (B x 1 x H x W probabilities in [0, 1], number of local crops run). An essentially empty input
        mask (less than one full foreground pixel) gives an all-zero output, as in the authors' eval.py.
    """
    if image.shape[-2:] != mask.shape[-2:] or image.shape[0] != mask.shape[0]:
        raise ValueError(f'image {tuple(image.shape)} and mask {tuple(mask.shape)} differ in size')
    empty = (mask + 1).flatten(1).sum(1) < 2
    if bool(empty.all()):
        return torch.zeros_like(mask), 0
    keep = (~empty).nonzero()[:, 0]
    if global_only:
        prob, crops = refine_global_only(model, image[keep], mask[keep], cfg.L, min_size), 0
    else:
        prob, crops = refine_global_local(model, image[keep], mask[keep], cfg)
    out = torch.zeros_like(mask)
    out[keep] = prob
    return out, crops


class Refiner:
    """Refine a coarse mask of any image (SamPredictor-style: owns pre- and post-processing).

    Example::

        refiner = Refiner()                                # the bundled 'lite' model, CPU
        refiner = Refiner('cascadepsp', device='cuda')     # the authors' weights (downloaded once)
        output = refiner.refine(image_rgb, coarse_mask)    # H x W uint8
    """

    def __init__(self, checkpoint: str | os.PathLike | None = None, device: str | torch.device = 'cpu',
                 model: nn.Module | None = None) -> None:
        """Load ``checkpoint``: a name (``lite``, the default, bundled; ``cascadepsp``, the authors' release)
        or a path (the released ``model`` file or a ``train.py`` checkpoint); or use an already built ``model``.
        """
        if checkpoint is not None and model is not None:
            raise ValueError('give a checkpoint or a model, not both')
        self.device = torch.device(device)
        self.model = model if model is not None else load_pretrained(checkpoint)
        self.model.to(self.device).eval()

    def refine(self, image: np.ndarray, mask: np.ndarray, fast: bool = False, L: int = 900,
               stride: int = 450, batch: int = 1) -> np.ndarray:
        """Refine ``mask`` to follow the boundaries of ``image``.

        Args:
            image: H x W x 3 uint8 RGB (convert OpenCV's BGR first).
            mask: H x W (or H x W x 1) uint8 coarse mask; binarised at 127 as the authors' package does.
            fast: Global step only: faster, less accurate on large images.
            L: global resolution and local crop side (pixels); lower uses less memory.
            stride: local crop spacing (pixels), as in eval.py.
            batch: local crops per forward pass (speed/memory only; the result does not change).

        Returns:
            H x W uint8 soft mask, floor(probability * 255).
        """
        image, mask = self._validate(image, mask)
        image_t = normalize_image(image)
        mask_t = normalize_mask(binarize(mask))
        prob, _ = refine_image(self.model, image_t, mask_t, CascadeConfig(L=L, stride=stride, batch=batch),
                               global_only=fast)
        return probability_to_uint8(prob[0, 0])

    def refine_objects(self, image: np.ndarray, masks: np.ndarray | list[np.ndarray], fast: bool = False,
                       L: int = 900, stride: int = 450, batch: int = 1) -> list[np.ndarray]:
        """Refine every object of one image, each inside a window around its box (see :mod:`models.objects`).

        Args:
            image: H x W x 3 uint8 RGB.
            masks: a list of H x W binary masks (bool, {0, 1}, or uint8 thresholded at 127), or one H x W integer
                instance label map (0 = background; objects in ascending id order).
            L: cap of each window's L (a window is refined at its own resolution up to L).
            batch: windows of the same size (and local crops) per forward pass; results do not depend on it.

        Returns:
            One H x W float32 probability map in [0, 1] per object, zero outside its window.
        """
        from models.objects import masks_from_labels, refine_objects  # objects builds on this module
        if isinstance(masks, np.ndarray):
            if masks.ndim != 2 or not (np.issubdtype(masks.dtype, np.integer) or masks.dtype == bool):
                raise ValueError(f'a label map must be an H x W integer array, got {masks.dtype} {masks.shape}')
            _, masks = masks_from_labels(masks)
        binary = [m > 0 if m.dtype == bool or m.max(initial=0) <= 1 else m > 127  # bool / {0,1} / 0..255
                  for m in map(np.asarray, masks)]
        for m in binary:
            self._validate(image, m.astype(np.uint8))
        probs = refine_objects(self.model, normalize_image(image), binary, L, stride, batch, global_only=fast)
        return [p.numpy().astype(np.float32) for p in probs]

    @staticmethod
    def _validate(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(image, np.ndarray) or not isinstance(mask, np.ndarray):
            raise TypeError(f'image and mask must be numpy arrays, got {type(image).__name__} and {type(mask).__name__}')
        if image.dtype != np.uint8 or mask.dtype != np.uint8:
            raise TypeError(f'image and mask must be uint8 (0..255), got {image.dtype} and {mask.dtype}')
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f'image must be H x W x 3 RGB, got shape {image.shape}')
        if mask.ndim == 3 and mask.shape[2] == 1:
            mask = mask[:, :, 0]
        if mask.ndim != 2:
            raise ValueError(f'mask must be H x W (or H x W x 1), got shape {mask.shape}')
        if mask.shape != image.shape[:2]:
            raise ValueError(f'mask {mask.shape} and image {image.shape[:2]} differ in size')
        if min(mask.shape) < 1:
            raise ValueError(f'empty image of shape {image.shape}')
        return image, mask
