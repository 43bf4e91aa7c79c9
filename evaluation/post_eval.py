"""Scoring a folder of refined results (``NAME_gt.png``, ``NAME_seg.png``, ``NAME_mask.png``).

This is the body of ``eval_post.py``; the per-image metric is :func:`evaluation.metrics.score_image`.
"""
from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import progressbar

from dataset.folders import find_groups
from util.atomic import write_text
from util.image_io import ImageReadError, read_grey, read_labels, size_mismatch
from evaluation.metrics import ImageScore, score_image, summarize

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Triplet:
    name: str
    gt: Path
    seg: Path
    mask: Path


def find_triplets(folder: str | os.PathLike, mask_prefix: str = '') -> tuple[list[Triplet], list[str]]:
    """Every ``NAME_gt.png`` of ``folder`` with its ``NAME_seg.png`` and ``{mask_prefix}NAME_mask.png``.

    Returns (complete triplets sorted by name, problems naming each missing file).
    """
    groups, problems = find_groups(folder, '_gt', {'seg': '{name}_seg.png', 'mask': mask_prefix + '{name}_mask.png'},
                                   suffixes=('.png',), skip=(mask_prefix,) if mask_prefix else ())
    return [Triplet(g.name, g.files['key'], g.files['seg'], g.files['mask']) for g in groups], problems


def _score(args: tuple[Triplet, bool, bool]) -> tuple[ImageScore | None, str | None]:
    """(score, None), (score, warning) for a refined mask resized to its ground truth, or (None, problem)."""
    triplet, multiclass, strict_sizes = args
    cv2.setNumThreads(1)  # one process per core already
    try:
        if multiclass:
            gt, seg, mask = (read_labels(p) for p in (triplet.gt, triplet.seg, triplet.mask))
        else:
            gt = read_grey(triplet.gt, labels01=True)
            # {0, 1} label masks (another tool's output, FSS-style inputs) would score as empty; a soft
            # probability map whose every value is 0 or 1/255 is not a thing any refiner writes.
            seg, mask = read_grey(triplet.seg, labels01=True), read_grey(triplet.mask, labels01=True)
        if seg.shape != gt.shape:  # the input is the dataset's own: another size is a broken folder
            return None, size_mismatch(triplet.seg, seg.shape, triplet.gt, gt.shape)
        warning = None
        if mask.shape != gt.shape:
            problem = size_mismatch(triplet.mask, mask.shape, triplet.gt, gt.shape)
            if strict_sizes:
                return None, problem
            # The authors' eval_post resizes every refined mask to the ground truth's size (score_image does): that
            # is how the published numbers of other methods' outputs, often written at another resolution, came.
            warning = f'{problem}: resized to the ground truth ({"nearest" if multiclass else "bilinear"}), as the ' \
                      'authors\' eval_post does'
        return score_image(triplet.name, gt, seg, mask, multiclass=multiclass), warning
    except (ImageReadError, ValueError) as e:
        return None, str(e)


def evaluate_folder(folder: str | os.PathLike, mask_prefix: str = '', workers: int | None = None,
                    multiclass: bool = False, progress: bool = True, strict_sizes: bool = False
                    ) -> tuple[dict, list[ImageScore], list[str]]:
    """Score every complete triplet of ``folder``.

    A refined mask of another size than its ground truth is resized to it, as the authors' eval_post does
    (:func:`evaluation.metrics.resize_like`): each is logged as a warning and counted in the summary's
    ``resized_masks``. With ``strict_sizes`` it is a problem instead.

    Returns (summary of :func:`evaluation.metrics.summarize` with ``resized_masks``, per-image scores, problems).
    Images with a problem are not scored; the caller decides whether a partial result may be written.
    """
    triplets, problems = find_triplets(folder, mask_prefix)
    workers = workers or os.cpu_count() or 1
    jobs = [(t, multiclass, strict_sizes) for t in triplets]
    bar = progressbar.ProgressBar(max_value=len(jobs)) if progress and jobs else None
    results = []
    if workers > 1 and len(jobs) > 1:
        # spawn, not fork: forking a process whose torch/OpenCV thread pools are running can deadlock
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context('spawn')) as pool:
            for r in pool.map(_score, jobs, chunksize=4):
                results.append(r)
                bar and bar.update(len(results))
    else:
        for job in jobs:
            results.append(_score(job))
            bar and bar.update(len(results))
    bar and bar.finish()
    scores = [score for score, _ in results if score is not None]
    warnings = [note for score, note in results if score is not None and note]
    problems += [note for score, note in results if score is None]
    for note in warnings:
        log.warning('%s', note)
    return dict(summarize(scores), resized_masks=len(warnings), multiclass=multiclass), scores, problems


def format_results(summary: dict) -> str:
    """The authors' ``results_post.txt`` wording."""
    lines = [
        f"New IoU  : {summary['new_iou']:.6f}",
        f"Old IoU  : {summary['old_iou']:.6f}",
        f"IoU Delta: {summary['iou_delta']:.6f}",
        f"New mBA  : {summary['new_mba']:.6f}",
        f"Old mBA  : {summary['old_mba']:.6f}",
        f"mBA Delta: {summary['mba_delta']:.6f}",
        f"Avg. H+W  : {summary['avg_h_plus_w']:.2f}",
        f"Avg. Max(H,W) : {summary['avg_max_side']:.2f}",
        f"Number of images: {summary['images']}",
        f"Number of small objects: {summary['small_objects']}",
    ]
    if summary.get('resized_masks'):
        lines.append(f"Refined masks resized to their ground truth's size: {summary['resized_masks']}")
    if math.isnan(summary['new_iou']):
        lines.append('IoU is undefined (nan): no foreground in any ground truth nor refined mask'
                     + (' (label maps: IoU is binary; see mBA)' if summary.get('multiclass') else ''))
    if summary['images_without_boundary']:
        lines.append(f"Images without a boundary (left out of mBA): {summary['images_without_boundary']}")
    return '\n'.join(lines) + '\n'


def json_safe(value):
    """NaN (an image without a boundary) as JSON null, recursively through dicts and lists."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def results_files(output: str | os.PathLike, stem: str = 'results_post') -> tuple[Path, Path]:
    """The ``{stem}.txt`` and ``{stem}.json`` that :func:`write_results` writes into ``output``."""
    return Path(output) / f'{stem}.txt', Path(output) / f'{stem}.json'


def write_results(output: str | os.PathLike, summary: dict, scores: list[ImageScore],
                  stem: str = 'results_post') -> tuple[Path, Path]:
    """Write ``{stem}.txt`` and ``{stem}.json`` atomically (each replaced only once complete)."""
    output = Path(output)
    payload = {'summary': json_safe(summary), 'images': [json_safe(s.to_dict()) for s in scores]}
    txt, js = output / f'{stem}.txt', output / f'{stem}.json'
    write_text(js, json.dumps(payload, indent=1) + '\n')
    write_text(txt, format_results(summary))
    return txt, js
