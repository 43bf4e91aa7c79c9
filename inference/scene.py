"""Scene parsing, step 3 (``eval.py --ade``): refine every component of a split folder inside its box.

    SPLIT/NAME_im.jpg, NAME_<class>.<id>_seg.png, _gt.png      step 2 (scripts/split_scene.py)
    MASKS/NAME_<class>.<id>_mask.png                           step 3 (the box's size)
"""
from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from typing import Any

import torch.nn as nn

from util.boxes import component_box
from inference.folders import check_settings
from util.runner import RunReport, run_items
from inference.objects import refine_crops
from inference.predict import mask_tensor
from util.atomic import ensure_folder, write_image
from util.image_io import read_grey, read_rgb, size_mismatch
from util.transforms import normalize_image, probability_to_uint8

log = logging.getLogger(__name__)

_STEM = re.compile(r'^(?P<name>.*)_(?P<cls>\d+)\.(?P<id>\d+)$')
#: The authors' ``eval.py --ade`` upscales crops under 224 px in the global-only mode.
ADE_MIN_SIZE = 224


def _refine_image_components(model: nn.Module, split_dir: Path, output: Path, name: str, stems: list[str],
                             cfg: Any) -> dict[str, float]:
    image_path = split_dir / f'{name}_im.jpg'
    image = normalize_image(read_rgb(image_path))
    crops, segs = [], []
    for stem in stems:
        seg_path = split_dir / f'{stem}_seg.png'
        seg = read_grey(seg_path)
        if seg.shape != tuple(image.shape[-2:]):
            raise ValueError(size_mismatch(seg_path, seg.shape, image_path, tuple(image.shape[-2:])))
        y0, y1, x0, x1 = component_box(seg)
        crops.append(image[:, :, y0:y1, x0:x1])
        segs.append(mask_tensor(seg[y0:y1, x0:x1]))
    probs = refine_crops(model, crops, segs, cfg, follow_size=False)
    for stem, prob in zip(stems, probs):
        write_image(output / f'{stem}_mask.png', probability_to_uint8(prob[0, 0]))
    return {'components': len(stems)}


def refine_split_folder(model: nn.Module, split_dir: str | Path, output: str | Path, cfg: Any = None,
                        overwrite: bool = False, progress: bool = True) -> RunReport:
    """Refine every component of a split folder inside its box (:func:`util.boxes.component_box`)
    with ``model``'s method and ``cfg``; write ``STEM_mask.png`` at the box's size.

    Components of one image are refined together (same-sized crops batched). Finished components are
    skipped unless ``overwrite``; every file is written atomically. In the global-only mode, crops under
    224 px are upscaled unless ``cfg.min_size`` says otherwise (the authors' setting). The report counts
    images; its ``stats['components']`` counts components.
    """
    split_dir, output = Path(split_dir), ensure_folder(output)
    if cfg is not None and getattr(cfg, 'min_size', 0) is None:
        cfg = dataclasses.replace(cfg, min_size=ADE_MIN_SIZE)
    check_settings(output, model, cfg, overwrite)
    report = RunReport()
    by_image: dict[str, list[str]] = {}
    for gt in sorted(split_dir.glob('*_gt.png')):
        stem = gt.name[:-len('_gt.png')]
        match = _STEM.match(stem)
        if not match:
            report.failures.append(f'{gt}: not a NAME_<class>.<id>_gt.png component file')
            log.error('%s', report.failures[-1])
        elif not overwrite and (output / f'{stem}_mask.png').is_file():
            report.skipped += 1
        else:
            by_image.setdefault(match['name'], []).append(stem)
    if report.skipped:
        log.info('%d component(s) already done in %s (use --overwrite to redo them)', report.skipped, output)
    if not by_image and not report.skipped and not report.failures:
        report.failures.append(f'{split_dir}: no NAME_<class>.<id>_gt.png component files (run scripts/split_scene.py first)')
        log.error('%s', report.failures[-1])
    return run_items(list(by_image.items()),
                     lambda item: _refine_image_components(model, split_dir, output, item[0], item[1], cfg),
                     lambda item: item[0], report, progress)
