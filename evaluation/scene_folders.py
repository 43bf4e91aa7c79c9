"""The scene-parsing steps on folders (what ``scripts/split_scene.py``, ``eval.py --ade`` and
``eval_post.py --ade`` run). Layouts:

    IM/NAME.jpg, GT/NAME.png, SEG/NAME.png                     inputs (labels 1..150, 0 = void)
    SPLIT/NAME_im.jpg, NAME_<class>.<id>_seg.png, _gt.png      step 2 (one pair per component)
    MASKS/NAME_<class>.<id>_mask.png                           step 3 (the crop's size)
    OUT/results_post.txt, results_post.json[, NAME_labels.png] step 4
"""
from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import progressbar
import torch
import torch.nn as nn

from evaluation.scene_parsing import (SceneScores, component_box, component_class, component_files, format_results,
                                      format_stdout, fuse, label_colours, split_components)
from models.objects import grown_box, refine_crops
from util.atomic import atomic_path, write_image, write_text
from util.image_io import ImageReadError, read_grey, read_labels, read_rgb, size_mismatch
from util.post_eval import json_safe
from util.transforms import normalize_image, normalize_mask, probability_to_uint8

log = logging.getLogger(__name__)


@dataclass
class StepReport:
    done: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)


def _fail(report: StepReport, message: str) -> None:
    report.failures.append(message)
    log.error('%s', message)


def split_folder(im_dir: str | Path, gt_dir: str | Path, seg_dir: str | Path, output: str | Path) -> StepReport:
    """Step 2 for every SEG/NAME.png (with GT/NAME.png and IM/NAME.jpg)."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    report = StepReport()
    for seg_path in sorted(Path(seg_dir).glob('*.png')):
        name = seg_path.stem
        gt_path, im_path = Path(gt_dir) / f'{name}.png', Path(im_dir) / f'{name}.jpg'
        try:
            seg, gt = read_grey(seg_path), read_grey(gt_path)  # both read as 'L', as the authors' split does
            if seg.shape != gt.shape:
                raise ValueError(size_mismatch(seg_path, seg.shape, gt_path, gt.shape))
            if not im_path.is_file():
                raise ImageReadError(f'{im_path}: no such file (the image of {seg_path})')
            components = split_components(seg, gt)
            for comp in components:
                write_image(output / f'{name}_{comp.stem}_gt.png', comp.gt)
                write_image(output / f'{name}_{comp.stem}_seg.png', comp.seg)
            if components:
                with atomic_path(output / f'{name}_im.jpg') as tmp:
                    shutil.copyfile(im_path, tmp)
            report.done += 1
        except (ImageReadError, ValueError, OSError) as e:
            _fail(report, str(e))
    return report


_STEM = re.compile(r'^(?P<name>.*)_(?P<cls>\d+)\.(?P<id>\d+)$')


def refine_split_folder(model: nn.Module, split_dir: str | Path, output: str | Path, L: int = 900, stride: int = 450,
                        global_only: bool = False, min_size: int = 224, batch: int = 1, overwrite: bool = False,
                        progress: bool = True) -> StepReport:
    """Step 3: refine every component of a split folder inside its box; write ``STEM_mask.png`` (crop size).

    Components of one image are refined together (``batch`` same-sized crops per pass). Finished components
    are skipped unless ``overwrite``; every file is written atomically.
    """
    split_dir, output = Path(split_dir), Path(output)
    output.mkdir(parents=True, exist_ok=True)
    report = StepReport()
    by_image: dict[str, list[str]] = {}
    for gt in sorted(split_dir.glob('*_gt.png')):
        stem = gt.name[:-len('_gt.png')]
        match = _STEM.match(stem)
        if not match:
            _fail(report, f'{gt}: not a NAME_<class>.<id>_gt.png component file')
        elif not overwrite and (output / f'{stem}_mask.png').is_file():
            report.skipped += 1
        else:
            by_image.setdefault(match['name'], []).append(stem)
    if not by_image and not report.skipped and not report.failures:
        _fail(report, f'{split_dir}: no NAME_<class>.<id>_gt.png component files (run scripts/split_scene.py first)')
    bar = progressbar.ProgressBar(max_value=sum(map(len, by_image.values()))) if progress and by_image else None
    for name, stems in by_image.items():
        try:
            image = normalize_image(read_rgb(split_dir / f'{name}_im.jpg'))
            crops, segs, boxes = [], [], []
            for stem in stems:
                seg_path = split_dir / f'{stem}_seg.png'
                seg = read_grey(seg_path)
                if seg.shape != tuple(image.shape[-2:]):
                    raise ValueError(size_mismatch(seg_path, seg.shape, split_dir / f'{name}_im.jpg', tuple(image.shape[-2:])))
                y0, y1, x0, x1 = component_box(seg)
                boxes.append((y0, y1, x0, x1))
                crops.append(image[:, :, y0:y1, x0:x1])
                segs.append(normalize_mask(seg[y0:y1, x0:x1]))
            with torch.inference_mode():
                probs = refine_crops(model, crops, segs, L, stride, batch, global_only, min_size, follow_size=False)
            for stem, prob in zip(stems, probs):
                write_image(output / f'{stem}_mask.png', probability_to_uint8(prob[0, 0]))
                report.done += 1
        except (ImageReadError, ValueError, OSError) as e:
            _fail(report, f'{name}: {e}')
        bar and bar.update(report.done + len(report.failures))
    bar and bar.finish()
    return report


def fuse_and_score_folder(mask_dir: str | Path, seg_dir: str | Path, gt_dir: str | Path, split_dir: str | Path,
                          output: str | Path, visualize: bool = False) -> tuple[dict, str]:
    """Step 4 over every SEG/NAME.png: fuse its refined components, score old and new label maps, write
    ``results_post.txt`` (the authors' wording, plus labelled extra figures) and ``results_post.json``
    (every figure and the per-class intersections/unions); with ``visualize``, ``NAME_labels.png`` panels
    (ground truth | input | refined, colour-coded). Returns (summary, what the authors' script prints).

    Raises ValueError / ImageReadError naming the file (labels above 150, sizes that differ, unreadable files).
    """
    output = Path(output)
    scores = SceneScores()
    seg_paths = sorted(Path(seg_dir).glob('*.png'))
    if not seg_paths:
        raise ImageReadError(f'{seg_dir}: no NAME.png label maps')
    for seg_path in seg_paths:
        name = seg_path.stem
        gt_path = Path(gt_dir) / f'{name}.png'
        seg, gt = read_grey(seg_path), read_labels(gt_path)  # input 'L', ground truth 'P' (raw indices)
        if seg.shape != gt.shape:
            raise ValueError(size_mismatch(seg_path, seg.shape, gt_path, gt.shape))
        components = []
        for path in component_files(mask_dir, name):
            cls = component_class(path.name)
            box = grown_box(read_grey(Path(split_dir) / path.name.replace('mask', 'seg')) > 0, authors=True,
                            degenerate_whole=False)
            if box is None:
                print(f'{name}.png {cls}')  # the authors' message for a degenerate box; the file is skipped
            components.append((cls, box, read_grey(path)))
        fused = fuse(seg, components)
        seg_scored, fused_scored = scores.add(f'{name}.png', gt, seg, fused)
        if visualize:
            write_image(output / f'{name}_labels.png', np.concatenate(
                [label_colours(gt), label_colours(seg_scored), label_colours(fused_scored)], 1))
    summary = scores.summary()
    write_text(output / 'results_post.txt', format_results(summary))
    write_text(output / 'results_post.json', json.dumps(json_safe(summary), indent=1) + '\n')
    return summary, format_stdout(summary, scores)
