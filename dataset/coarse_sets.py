"""Evaluation folders of coarse masks made from ground truths, in the BIG layout that ``eval.py`` reads.

Families, as ``scripts/benchmark_learning.py`` reports them:
  * ``lowres4``, ``lowres`` (x8), ``lowres16``: the ground truth area-downscaled by the factor, bilinearly
    upsampled, thresholded at 127 (a low-resolution segmenter's output: the BIG situation);
  * ``perturbed``: the training perturbation at an IoU target drawn from U[0.8, 0.9);
  * ``jitter``: :func:`dataset.degrade.jitter_mask` (a smooth displacement of 2-4 px and a dilation or
    erosion of up to 2 px), which no training recipe uses;
  * ``mediapipe``: a real segmenter's mask (:mod:`dataset.segmenter_masks`), on the pairs where its IoU is at
    least 0.6: a 256 x 256 network's output on photos of about 400 px;
  * ``mediapipe_x8``: the same mask area-downscaled by 8, bilinearly upsampled and thresholded at 127: what the
    segmenter gives on a photo eight times larger (about 3200 px, where its mask is x12 coarser than the pixels;
    on a 4000-px photo, x16).
Each pair's draw is seeded by its name, so a folder is the same on every machine and every run.
"""
from __future__ import annotations

import shutil
import zlib
from pathlib import Path

import numpy as np

from dataset.degrade import jitter_mask, lowres_mask
from dataset.perturb import perturb_mask
from dataset.readers import Pair
from dataset.segmenter_masks import segmenter_mask, with_segmenter_masks
from dataset.splits import pair_key
from util.atomic import atomic_path, write_image
from util.image_io import read_grey
from util.transforms import binarize

#: The real segmenter's families and the further downscaling factor of its mask.
SEGMENTER_FAMILIES = {'mediapipe': 1, 'mediapipe_x8': 8}
FAMILIES = ('lowres4', 'lowres', 'lowres16', 'perturbed', 'jitter', *SEGMENTER_FAMILIES)
#: The low-resolution families and their factors.
LOWRES = {'lowres4': 4, 'lowres': 8, 'lowres16': 16}


def coarse_mask(gt: np.ndarray, family: str, key: str, seed: int = 0, segmenter: np.ndarray | None = None
                ) -> np.ndarray:
    """The ``family`` coarse mask of an H x W uint8 ground truth; ``key`` (the pair's name) seeds the draw;
    ``segmenter``: the real segmenter's H x W mask, which the ``mediapipe`` families need."""
    if family in LOWRES:
        return lowres_mask(gt, LOWRES[family], 127)
    if family in SEGMENTER_FAMILIES:
        if segmenter is None:
            raise ValueError(f'the {family} family needs the segmenter\'s mask of {key}')
        factor = SEGMENTER_FAMILIES[family]
        return binarize(segmenter) if factor == 1 else lowres_mask(binarize(segmenter), factor, 127)
    rng = np.random.default_rng([zlib.crc32(key.encode()), seed])
    if family == 'perturbed':
        return perturb_mask(gt, rng.uniform(0.8, 0.9), rng)
    if family == 'jitter':
        return jitter_mask(gt, rng.uniform(2.0, 4.0), rng.uniform(24, 64), int(rng.integers(-2, 3)), rng)
    raise ValueError(f'unknown coarse family {family!r}; known: {", ".join(FAMILIES)}')


def sample_name(pair: Pair) -> str:
    """``SOURCE_STEM``: unique across sources."""
    return pair_key(pair).replace('/', '_')


def write_coarse_folder(pairs: list[Pair], family: str, output: str | Path, seed: int = 0,
                        prefix: str = '') -> Path:
    """Write ``NAME_im.jpg`` (the original file), ``NAME_seg.png`` (coarse) and ``NAME_gt.png`` per pair,
    NAME = ``prefix + SOURCE_STEM``.

    Files already present are kept (the draw is deterministic), so a folder can be built incrementally. The
    segmenter's families keep only the pairs whose segmenter mask has an IoU of at least 0.6.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    segmenter = family in SEGMENTER_FAMILIES
    if segmenter:
        pairs = with_segmenter_masks(pairs)
    for pair in pairs:
        name = prefix + sample_name(pair)
        im, seg, gt_path = (output / f'{name}_{s}' for s in ('im' + pair.image.suffix.lower(), 'seg.png', 'gt.png'))
        if im.exists() and seg.exists() and gt_path.exists():
            continue
        gt = binarize(read_grey(pair.mask, labels01=True))
        write_image(gt_path, gt)
        theirs = read_grey(segmenter_mask(pair)) if segmenter else None
        write_image(seg, coarse_mask(gt, family, pair_key(pair), seed, theirs))
        with atomic_path(im) as tmp:
            shutil.copyfile(pair.image, tmp)
    return output
