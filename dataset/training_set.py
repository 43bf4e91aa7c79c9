"""The merged saliency training set: random square crops with a degraded ground truth as input."""
from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from dataset.augment import color_jitter, random_crop, random_flip, random_grayscale, random_rescale
from dataset.degrade import degrade_recipe
from dataset.readers import Pair
from util.image_io import read_grey, read_rgb, size_mismatch
from util.transforms import normalize_image, normalize_mask


class TrainingSet(Dataset):
    """Items are (image 3 x S x S normalised RGB, input mask 1 x S x S in [-1, 1],
    ground truth 1 x S x S soft in [0, 1]); S = ``crop_size``.

    ``degradation`` names a recipe of :data:`dataset.degrade.RECIPES` (``perturb``: the authors').
    ``scale_range`` (lo, hi): before cropping, the image and its ground truth are resized by a factor drawn
    log-uniformly from it (1, 1: no resizing, the authors'), so that the net sees objects and boundary
    errors at several sizes relative to its fixed-radius filters.

    Randomness: one ``numpy.random.Generator`` per process, seeded from ``torch.initial_seed()``,
    which PyTorch makes distinct for every data-loader worker, epoch and (with a per-rank seed) rank.
    """

    def __init__(self, pairs: list[Pair], crop_size: int = 224, iou_range: tuple[float, float] = (0.8, 1.0),
                 degradation: str = 'perturb', scale_range: tuple[float, float] = (1.0, 1.0)) -> None:
        if not pairs:
            raise ValueError('no training pairs')
        self.pairs = pairs
        self.crop_size = crop_size
        self.iou_range = iou_range
        self.degradation = degradation
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self._rng: np.random.Generator | None = None
        self._rng_key: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def rng(self) -> np.random.Generator:
        key = (os.getpid(), torch.initial_seed())
        if self._rng_key != key:  # a new worker process, or a new epoch's workers
            self._rng, self._rng_key = np.random.default_rng(torch.initial_seed() % 2**63), key
        return self._rng

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pair = self.pairs[index]
        rng = self.rng
        image = read_rgb(pair.image)
        gt = read_grey(pair.mask, labels01=True)
        if gt.shape != image.shape[:2]:
            raise ValueError(size_mismatch(pair.mask, gt.shape, pair.image, image.shape))
        image, gt = random_rescale(image, gt, self.scale_range, rng)
        image, gt = random_crop(image, gt, self.crop_size, rng)
        image, gt = random_flip(image, gt, rng)
        image = random_grayscale(color_jitter(image, rng), rng)
        seg = degrade_recipe(gt, self.degradation, rng, self.iou_range)
        return (normalize_image(image)[0], normalize_mask(seg)[0],
                torch.from_numpy(np.array(gt, np.float32, copy=True))[None] / 255)
