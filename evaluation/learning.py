"""The learning benchmark's runner: does a model improve coarse masks of held-out images, and by more than
the classical alternative?

For each family of coarse masks (:mod:`dataset.coarse_sets`) it scores, with the project's IoU and mBA:
the coarse input itself, the classical alternatives (a colour guided filter of it, He et al. 2010, at several
settings; closed-form matting on a trimap eroded from it, Levin et al. 2008, as ``rembg``'s alpha-matting
option runs it) and each model (Global+Local).
"""
from __future__ import annotations

import importlib
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn as nn

from dataset.folders import find_samples, load_sample
from evaluation.metrics import ImageScore, score_image, summarize
from util.atomic import write_text
from inference.predict import image_tensors, refine_image
from util.guided_filter import guided_filter
from util.image_io import read_grey, read_rgb
from util.transforms import binarize, probability_to_uint8, unit_rgb

#: A method maps (H x W x 3 uint8 RGB image, H x W uint8 coarse mask) to an H x W uint8 mask.
MaskFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: The guided-filter settings a user would try, (radius divisor, eps): radius (H + W) / divisor px.
FILTER_SETTINGS = tuple((per, eps) for per in (300, 150, 75) for eps in (1e-4, 1e-3, 1e-2))


#: Closed-form matting's trimaps: the unknown band reaches this far on either side of the mask's boundary,
#: ``px`` in pixels (rembg's default erosion) or ``per`` as (H + W) / per px.
MATTING_SETTINGS = (('px', 10), ('per', 100))


def filter_label(per: float, eps: float) -> str:
    return f'guided filter r=(H+W)/{per:g} eps={eps:g}'


def guided_filter_methods() -> dict[str, MaskFn]:
    """One method per setting of :data:`FILTER_SETTINGS`."""
    return {filter_label(per, eps): (lambda image, coarse, per=per, eps=eps:
                                     guided_filter_mask(image, coarse, eps, radius_per=per))
            for per, eps in FILTER_SETTINGS}


def matting_label(kind: str, size: float) -> str:
    return f'closed-form matting, trimap {size:g} px' if kind == 'px' else f'closed-form matting, trimap (H+W)/{size:g}'


def matting_methods() -> dict[str, MaskFn]:
    """One method per setting of :data:`MATTING_SETTINGS`. Raises ImportError (saying how to install it) where
    the optional ``pymatting`` package is missing."""
    try:
        importlib.import_module('pymatting')
    except ImportError as e:
        raise ImportError('the matting baseline needs pymatting: pip install -e ".[dev]" (or pymatting)') from e
    return {matting_label(kind, size): (lambda image, coarse, kind=kind, size=size: matting_mask(
        image, coarse, size if kind == 'px' else max(1, round(sum(coarse.shape) / size)))) for kind, size in MATTING_SETTINGS}


def matting_mask(image: np.ndarray, coarse: np.ndarray, width: int, threshold: float = 0.5) -> np.ndarray:
    """Closed-form matting (``pymatting.estimate_alpha_cf``) of H x W x 3 uint8 ``image`` on the trimap whose
    known foreground and background are ``coarse`` (H x W uint8, > 127 foreground) and its complement, each eroded
    by ``width`` px; the alpha matte thresholded at ``threshold``. Returns H x W uint8 0/255. A mask with no
    foreground or no background comes back as it is (matting needs both)."""
    from pymatting import estimate_alpha_cf  # optional: imported when the baseline runs
    fg = coarse > 127
    if fg.all() or not fg.any():
        return np.where(fg, 255, 0).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1,) * 2)
    sure_fg = cv2.erode(fg.astype(np.uint8), kernel) > 0
    sure_bg = cv2.erode((~fg).astype(np.uint8), kernel) > 0
    if not sure_fg.any() or not sure_bg.any():  # the erosion removed one side: nothing to anchor the matte
        return np.where(fg, 255, 0).astype(np.uint8)
    trimap = np.full(fg.shape, 0.5)
    trimap[sure_fg], trimap[sure_bg] = 1.0, 0.0
    alpha = estimate_alpha_cf(image.astype(np.float64) / 255, trimap)
    return np.where(alpha > threshold, 255, 0).astype(np.uint8)


@torch.inference_mode()
def guided_filter_mask(image: np.ndarray, coarse: np.ndarray, eps: float = 1e-4, threshold: float = 0.5,
                       radius_per: float = 150) -> np.ndarray:
    """The classical refinement: colour guided filter of the coarse mask, radius (H + W) / ``radius_per`` px,
    ``eps`` in squared [0, 1]-RGB units, then a threshold. Returns H x W uint8 0/255."""
    h, w = coarse.shape
    guide = unit_rgb(image)
    src = torch.from_numpy((coarse > 127).astype(np.float32))[None, None]
    q = guided_filter(guide, src, max(1, round((h + w) / radius_per)), eps)[0, 0].numpy()
    return np.where(q > threshold, 255, 0).astype(np.uint8)


def model_method(model: nn.Module, cfg: Any = None) -> MaskFn:
    """Refinement by ``model`` with its method and ``cfg`` (its inference config; default: its defaults)."""
    def run(image: np.ndarray, coarse: np.ndarray) -> np.ndarray:
        return probability_to_uint8(refine_image(model, *image_tensors(image, coarse), cfg).probs[0, 0])
    return run


@dataclass
class MethodResult:
    method: str
    summary: dict          #: :func:`evaluation.metrics.summarize` of (coarse input, method output)
    seconds: float
    scores: list = field(default_factory=list)  #: the per-image :class:`evaluation.metrics.ImageScore`

    @property
    def iou(self) -> float:
        return self.summary['new_iou']

    @property
    def mba(self) -> float:
        return self.summary['new_mba']


def _cache_file(cache: Path, key: str) -> Path:
    return cache / (re.sub(r'[^A-Za-z0-9_.=-]+', '_', key) + '.json')


def _score(items, methods: dict[str, MaskFn], progress: Callable[[int], None] | None,
           cache: Path | None = None, keys: dict[str, str] | None = None) -> dict[str, MethodResult]:
    """``items`` yields (name, image, coarse mask, reference mask); the coarse input itself is ``'input'``.

    With ``cache``, each method's per-image scores are stored under ``keys[method]`` (default: its name) and a
    later call reuses them instead of running the method again (the key must change with the method: for a
    model, include a digest of its weights)."""
    methods = {'input': lambda image, coarse: coarse, **methods}
    keys = {m: (keys or {}).get(m, m) for m in methods}
    cached = {}
    for m in methods:
        path = _cache_file(cache, keys[m]) if cache else None
        if path and path.is_file():
            data = json.loads(path.read_text())
            cached[m] = MethodResult(m, summarize([ImageScore(**{k: v for k, v in s.items() if k not in ('seg_iou', 'mask_iou')})
                                                   for s in data['scores']]), data['seconds'],
                                     [ImageScore(**{k: v for k, v in s.items() if k not in ('seg_iou', 'mask_iou')})
                                      for s in data['scores']])
    methods = {m: f for m, f in methods.items() if m not in cached}
    scores: dict[str, list] = {m: [] for m in methods}
    seconds = dict.fromkeys(methods, 0.0)
    for i, (name, image, coarse, reference) in enumerate(items if methods else ()):
        for m, method in methods.items():
            start = time.perf_counter()
            out = method(image, coarse)
            seconds[m] += time.perf_counter() - start
            scores[m].append(score_image(name, reference, coarse, out))
        if progress:
            progress(i + 1)
    results = {m: MethodResult(m, summarize(scores[m]), seconds[m], scores[m]) for m in methods}
    for m, r in results.items():
        if cache:
            write_text(_cache_file(cache, keys[m]), json.dumps({'scores': [s.to_dict() for s in r.scores],
                                                                 'seconds': r.seconds}))
    return {m: cached.get(m) or results[m] for m in ['input', *keys] if m in cached or m in results}


def score_folder(folder: str | Path, methods: dict[str, MaskFn], progress: Callable[[int], None] | None = None,
                 cache: Path | None = None, keys: dict[str, str] | None = None) -> dict[str, MethodResult]:
    """Run every method on every NAME_im / NAME_seg / NAME_gt triplet of ``folder`` and score it against
    the ground truth. The coarse input's own scores are ``'input'`` in the result. ``cache``/``keys``: see
    :func:`_score`."""
    samples, problems = find_samples(folder)
    samples = [s for s in samples if s.gt is not None]
    if problems or not samples:
        raise FileNotFoundError(f'{folder}: ' + ('; '.join(problems) or 'no triplets with a ground truth'))
    return _score(((s.name, *load_sample(s)) for s in samples), methods, progress, cache, keys)


def score_against_reference(triplets: list[tuple[str, Path, Path, Path]], methods: dict[str, MaskFn]
                            ) -> dict[str, MethodResult]:
    """Score methods against a reference *output* rather than a ground truth: ``triplets`` are (name, image,
    coarse mask, reference mask) files, e.g. the authors' released model's outputs on the H36M samples.
    JPEG masks are thresholded at 127, as the authors do."""
    return _score(((name, read_rgb(im), binarize(read_grey(coarse)), binarize(read_grey(ref)))
                   for name, im, coarse, ref in triplets), methods, None)


def results_from_json(data: dict) -> dict[str, dict[str, MethodResult]]:
    """The results that ``scripts/benchmark_learning.py`` wrote to ``results.json`` (family -> method -> summary
    with ``seconds`` and ``per_image_mba``), as :class:`MethodResult` objects whose scores carry the per-image mBA
    only: enough for :func:`comparison_markdown`, so every table of the benchmark comes from its JSON output."""
    return {family: {method: MethodResult(method, {k: v for k, v in r.items() if k not in ('seconds', 'per_image_mba')},
                                          r['seconds'], [SimpleNamespace(mask_mba=float('nan') if m is None else m)
                                                         for m in r['per_image_mba']])
                     for method, r in by_method.items()}
            for family, by_method in data.items()}


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


def is_classical(name: str) -> bool:
    """Whether a method of the results is a classical alternative (a guided filter or matting setting)."""
    return name.startswith(('guided filter', 'closed-form matting'))


def best_filter(results: dict[str, MethodResult]) -> MethodResult:
    """The classical setting (guided filter or matting) of highest mean mBA among ``results``: what a user
    tuning the classical alternatives on this data would keep."""
    filters = [r for name, r in results.items() if is_classical(name)]
    return max(filters, key=lambda r: (r.mba, r.iou))


def win_tie_loss(model: MethodResult, other: MethodResult, tie: float = 1e-3) -> tuple[int, int, int]:
    """Images where ``model``'s mBA beats, ties (within ``tie``, i.e. 0.1 point x 100) or loses to ``other``'s."""
    wins = ties = losses = 0
    for a, b in zip(model.scores, other.scores):
        if math.isnan(a.mask_mba) or math.isnan(b.mask_mba):
            continue
        d = a.mask_mba - b.mask_mba
        wins, ties, losses = wins + (d > tie), ties + (abs(d) <= tie), losses + (d < -tie)
    return wins, ties, losses


def comparison_markdown(results: dict[str, dict[str, MethodResult]], models: list[str]) -> str:
    """Families x (input, best classical alternative, each model): IoU / mBA x 100, and each model's per-image
    win/tie/loss count on mBA against that alternative."""
    def cell(r: MethodResult) -> str:
        return f'{100 * r.iou:.2f} / {100 * r.mba:.2f}'
    head = ['coarse masks', 'input', 'best classical'] + models + [f'{m}: W/T/L vs classical' for m in models]
    rows = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for family, by in results.items():
        gf = best_filter(by) if any(is_classical(n) for n in by) else None
        cells = [family, cell(by['input']), f'{cell(gf)} ({gf.method})' if gf else '']
        cells += [cell(by[m]) for m in models]
        cells += ['/'.join(map(str, win_tie_loss(by[m], gf))) if gf else '' for m in models]
        rows.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(rows)


def worst_losses(model: MethodResult, other: MethodResult, k: int = 5) -> list[tuple[ImageScore, ImageScore]]:
    """The ``k`` images where ``model``'s mBA falls furthest below ``other``'s (losses only, worst first), as
    (model's score, other's score) pairs; images without a defined mBA are left out."""
    pairs = [(a, b) for a, b in zip(model.scores, other.scores)
             if not (math.isnan(a.mask_mba) or math.isnan(b.mask_mba)) and a.mask_mba < b.mask_mba]
    return sorted(pairs, key=lambda ab: ab[0].mask_mba - ab[1].mask_mba)[:k]


def losses_markdown(results: dict[str, dict[str, MethodResult]], models: list[str], k: int = 5) -> str:
    """Per family and model, the ``k`` worst per-image losses on mBA against the best guided filter: image, size,
    mBA of the input, the filter and the model, and the model's IoU change over the input (x 100)."""
    rows = ['| coarse masks | model | image | size | input mBA | filter mBA | model mBA | model - filter | '
            'IoU change over the input |', '|---|---|---|---|---|---|---|---|---|']
    for family, by in results.items():
        if not any(is_classical(n) for n in by):
            continue
        gf = best_filter(by)
        for m in models:
            for a, b in worst_losses(by[m], gf, k):
                rows.append(f'| {family} | {m} | {a.name} | {a.width} x {a.height} | {100 * a.seg_mba:.2f} | '
                            f'{100 * b.mask_mba:.2f} | {100 * a.mask_mba:.2f} | {100 * (a.mask_mba - b.mask_mba):+.2f} | '
                            f'{100 * (a.mask_iou - a.seg_iou):+.2f} |')
    return '\n'.join(rows)
