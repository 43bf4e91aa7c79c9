"""The scene-parsing steps on folders that need no model (what ``scripts/split_scene.py`` and
``eval_post.py --ade`` run; step 3, ``eval.py --ade``, is :mod:`inference.scene`). Layouts:

    IM/NAME.jpg, GT/NAME.png, SEG/NAME.png                     inputs (labels 1..150, 0 = void)
    SPLIT/NAME_im.jpg, NAME_<class>.<id>_seg.png, _gt.png      step 2 (one pair per component)
    MASKS/NAME_<class>.<id>_mask.png                           step 3 (the crop's size)
    OUT/results_post.txt, results_post.json[, NAME_labels.png] step 4
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from evaluation.scene_parsing import (SceneScores, component_class, component_files, format_results,
                                      format_stdout, fuse, label_colours, split_components)
from evaluation.post_eval import json_safe
from util.boxes import grown_box
from util.atomic import atomic_path, write_image, write_text
from util.image_io import ImageReadError, read_grey, read_labels, size_mismatch
from util.runner import RunReport, run_items

log = logging.getLogger(__name__)


def _split_one(seg_path: Path, gt_dir: Path, im_dir: Path, output: Path) -> dict[str, float]:
    name = seg_path.stem
    gt_path, im_path = gt_dir / f'{name}.png', im_dir / f'{name}.jpg'
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
    return {'components': len(components)}


def split_folder(im_dir: str | Path, gt_dir: str | Path, seg_dir: str | Path, output: str | Path,
                 progress: bool = False) -> RunReport:
    """Step 2 for every SEG/NAME.png (with GT/NAME.png and IM/NAME.jpg)."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    return run_items(sorted(Path(seg_dir).glob('*.png')), lambda p: _split_one(p, Path(gt_dir), Path(im_dir), output),
                     lambda p: str(p), progress=progress)


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
