"""The body of ``refine.py``: refine one image or a folder of practitioners' files and write the results.

Outputs, all written atomically (temporary name, then rename), at the image's size:
  * the mask: mode-L PNG floor(p * 255), or 0/255 with ``binary`` (threshold at 127); with ``instances``,
    a label map (uint8, or uint16 above 255 objects) where each pixel takes its most probable object;
  * ``cutout``: the RGBA image with the mask as alpha;
  * ``visualize``: the panel of :mod:`inference.visualize`.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import progressbar
from PIL import Image

from inference.visualize import refinement_panel
from models.objects import labels_from_probabilities, masks_from_labels
from models.refiner import Refiner
from util.atomic import write_image
from util.image_io import IMAGE_SUFFIXES, ImageReadError, read_labels, read_mask, read_rgb
from util.transforms import binarize

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefineOptions:
    fast: bool = False          #: Global step only
    L: int = 900                #: global resolution and local crop side (pixels)
    stride: int = 450
    batch: int = 1
    binary: bool = False        #: write 0/255 instead of the soft mask
    resize_mask: bool = False   #: resize a mask of another size (nearest neighbour) instead of refusing it
    instances: bool = False     #: the mask is an instance label map; write a label map


@dataclass
class Report:
    done: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        per = f' ({self.seconds / len(self.done):.2f} s/image)' if self.done else ''
        return f'{len(self.done)} refined in {self.seconds:.1f} s{per}, {len(self.failures)} failed'


def _load(image_path: Path, mask_path: Path, opts: RefineOptions) -> tuple[np.ndarray, np.ndarray]:
    image = read_rgb(image_path, exif=True)
    mask = read_labels(mask_path) if opts.instances else read_mask(mask_path, exif=True)
    if mask.shape[:2] != image.shape[:2]:
        sizes = f'mask {mask_path} is {mask.shape[1]}x{mask.shape[0]}, image {image_path} is {image.shape[1]}x{image.shape[0]}'
        if not opts.resize_mask:
            raise ValueError(f'{sizes}; pass --resize_mask to resize the mask (nearest neighbour)')
        log.warning('%s: resized to the image (nearest neighbour)', sizes)
        mask = np.asarray(Image.fromarray(mask).resize((image.shape[1], image.shape[0]), Image.NEAREST))
    return image, mask


def refine_file(refiner: Refiner, image_path: str | Path, mask_path: str | Path, output: str | Path,
                opts: RefineOptions = RefineOptions(), visualize: str | Path | None = None,
                cutout: str | Path | None = None) -> np.ndarray:
    """Refine one image/mask pair and write the requested files; returns the written mask (H x W)."""
    image, mask = _load(Path(image_path), Path(mask_path), opts)
    if opts.instances:
        ids, masks = masks_from_labels(mask)
        probs = refiner.refine_objects(image, masks, fast=opts.fast, L=opts.L, stride=opts.stride, batch=opts.batch)
        out = labels_from_probabilities(probs, ids) if ids else np.zeros(mask.shape, np.uint8)
        coarse_view = binarize(mask, 0)
        refined_view = binarize(out, 0)
    else:
        out = refiner.refine(image, mask, fast=opts.fast, L=opts.L, stride=opts.stride, batch=opts.batch)
        if opts.binary:
            out = binarize(out)
        coarse_view, refined_view = mask, out
    write_image(output, out)
    if cutout:
        write_image(cutout, np.concatenate([image, refined_view[..., None]], 2))
    if visualize:
        write_image(visualize, refinement_panel(image, binarize(coarse_view), refined_view))
    return out


def find_pairs(folder: str | Path, mask_suffix: str = '.png') -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """(name, image, mask) for every ``X.jpg|png|webp|...`` of ``folder`` with a ``X<mask_suffix>``.

    Files that are themselves some image's mask are not taken as images. Returns (pairs, problems).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return [], [f'{folder}: no such folder']
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    names = {p.name for p in files}
    pairs, problems = [], []
    for p in files:
        if any(p.name == q.stem + mask_suffix for q in files if q != p):
            continue  # the mask of another image
        mask = folder / (p.stem + mask_suffix)
        if mask.name in names and mask != p:
            pairs.append((p.stem, p, mask))
        else:
            problems.append(f'{p}: no mask {mask.name}')
    if not pairs and not problems:
        problems.append(f'{folder}: no images')
    return pairs, problems


def refine_directory(refiner: Refiner, folder: str | Path, output: str | Path, mask_suffix: str = '.png',
                     opts: RefineOptions = RefineOptions(), visualize: bool = False, cutout: bool = False,
                     progress: bool = True) -> Report:
    """Refine every pair of ``folder`` into ``output/X.png`` (and ``X_panel.png``, ``X_cutout.png``).

    A pair that fails is reported by name and the others go on.
    """
    output = Path(output)
    pairs, problems = find_pairs(folder, mask_suffix)
    report = Report(failures=list(problems))
    for p in problems:
        log.error('%s', p)
    start = time.perf_counter()
    bar = progressbar.ProgressBar(max_value=len(pairs)) if progress and pairs else None
    for i, (name, image, mask) in enumerate(pairs):
        try:
            refine_file(refiner, image, mask, output / f'{name}.png', opts,
                        output / f'{name}_panel.png' if visualize else None,
                        output / f'{name}_cutout.png' if cutout else None)
            report.done.append(name)
        except (ImageReadError, ValueError, OSError) as e:
            report.failures.append(f'{name}: {e}')
            log.error('%s: %s', name, e)
        bar and bar.update(i + 1)
    bar and bar.finish()
    report.seconds = time.perf_counter() - start
    return report
