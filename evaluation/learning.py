"""The learning benchmark: does a model improve coarse masks of held-out images, and by more than the
classical alternative?

For each family of coarse masks (:mod:`dataset.coarse_sets`) it scores, with the project's IoU and mBA:
the coarse input itself, a colour guided filter of it (He et al. 2010), and each model (Global+Local).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from models.cascade import CascadeConfig
from models.guided_filter import guided_filter
from models.refiner import refine_image
from util.image_io import read_grey, read_rgb
from util.metrics import score_image, summarize
from util.refine_folder import find_samples, load_sample
from util.transforms import binarize, normalize_image, normalize_mask, probability_to_uint8

#: A method maps (H x W x 3 uint8 RGB image, H x W uint8 coarse mask) to an H x W uint8 mask.
Method = Callable[[np.ndarray, np.ndarray], np.ndarray]


@torch.inference_mode()
def guided_filter_mask(image: np.ndarray, coarse: np.ndarray, eps: float = 1e-4, threshold: float = 0.5) -> np.ndarray:
    """The classical refinement: colour guided filter of the coarse mask, radius (H + W) / 150 px, then a
    threshold. Returns H x W uint8 0/255."""
    h, w = coarse.shape
    guide = torch.from_numpy(np.array(image, np.float32)).permute(2, 0, 1)[None] / 255
    src = torch.from_numpy((coarse > 127).astype(np.float32))[None, None]
    q = guided_filter(guide, src, max(1, round((h + w) / 150)), eps)[0, 0].numpy()
    return np.where(q > threshold, 255, 0).astype(np.uint8)


def model_method(model: nn.Module, cfg: CascadeConfig = CascadeConfig(), global_only: bool = False) -> Method:
    """Refinement by ``model`` (Global+Local with ``cfg``, or the Global step alone)."""
    def run(image: np.ndarray, coarse: np.ndarray) -> np.ndarray:
        prob, _ = refine_image(model, normalize_image(image), normalize_mask(coarse), cfg, global_only)
        return probability_to_uint8(prob[0, 0])
    return run


@dataclass
class MethodResult:
    method: str
    summary: dict          #: :func:`util.metrics.summarize` of (coarse input, method output)
    seconds: float

    @property
    def iou(self) -> float:
        return self.summary['new_iou']

    @property
    def mba(self) -> float:
        return self.summary['new_mba']


def _score(items, methods: dict[str, Method], progress: Callable[[int], None] | None) -> dict[str, MethodResult]:
    """``items`` yields (name, image, coarse mask, reference mask); the coarse input itself is ``'input'``."""
    methods = {'input': lambda image, coarse: coarse, **methods}
    scores: dict[str, list] = {m: [] for m in methods}
    seconds = dict.fromkeys(methods, 0.0)
    for i, (name, image, coarse, reference) in enumerate(items):
        for m, method in methods.items():
            start = time.perf_counter()
            out = method(image, coarse)
            seconds[m] += time.perf_counter() - start
            scores[m].append(score_image(name, reference, coarse, out))
        if progress:
            progress(i + 1)
    return {m: MethodResult(m, summarize(scores[m]), seconds[m]) for m in methods}


def score_folder(folder: str | Path, methods: dict[str, Method], progress: Callable[[int], None] | None = None
                 ) -> dict[str, MethodResult]:
    """Run every method on every NAME_im / NAME_seg / NAME_gt triplet of ``folder`` and score it against
    the ground truth. The coarse input's own scores are ``'input'`` in the result."""
    samples, problems = find_samples(folder)
    samples = [s for s in samples if s.gt is not None]
    if problems or not samples:
        raise FileNotFoundError(f'{folder}: ' + ('; '.join(problems) or 'no triplets with a ground truth'))
    return _score(((s.name, *load_sample(s)) for s in samples), methods, progress)


def score_against_reference(triplets: list[tuple[str, Path, Path, Path]], methods: dict[str, Method]
                            ) -> dict[str, MethodResult]:
    """Score methods against a reference *output* rather than a ground truth: ``triplets`` are (name, image,
    coarse mask, reference mask) files, e.g. the authors' released model's outputs on the H36M samples.
    JPEG masks are thresholded at 127, as the authors do."""
    return _score(((name, read_rgb(im), binarize(read_grey(coarse)), binarize(read_grey(ref)))
                   for name, im, coarse, ref in triplets), methods, None)


def results_markdown(results: dict[str, dict[str, MethodResult]]) -> str:
    """A markdown table: one row per (family, method), IoU and mBA x 100, seconds per image."""
    def pct(x: float) -> str:
        return 'n/a' if math.isnan(x) else f'{100 * x:.2f}'
    rows = ['| coarse masks | method | IoU | mBA | s/image |', '|---|---|---|---|---|']
    for family, by_method in results.items():
        for name, r in by_method.items():
            n = r.summary['images'] or 1
            rows.append(f'| {family} | {name} | {pct(r.iou)} | {pct(r.mba)} | {r.seconds / n:.3f} |')
    return '\n'.join(rows)
