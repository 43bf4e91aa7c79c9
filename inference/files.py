"""The body of ``refine.py``: refine one image or a folder of practitioners' files and write the results.

Outputs, all written atomically (temporary name, then rename), at the image's size:
  * the mask: mode-L PNG floor(p * 255), or 0/255 with ``binary`` (threshold at 127); with ``instances``,
    a label map (uint8, or uint16 above 255 objects) where each pixel takes its most probable object;
  * ``cutout``: the RGBA image with the mask as alpha;
  * ``visualize``: the panel of :mod:`inference.visualize`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dataset.folders import find_groups
from inference.refiner import Refiner
from inference.visualize import refinement_panel
from util.atomic import write_image
from util.boxes import labels_from_probabilities, masks_from_labels
from util.image_io import IMAGE_SUFFIXES, read_labels, read_mask, read_rgb
from util.runner import RunReport, run_items
from util.transforms import binarize

log = logging.getLogger(__name__)


#: An 8-bit "label map" with more ids than this is a soft mask given to --instances by mistake.
MAX_8BIT_INSTANCES = 128


@dataclass(frozen=True)
class RefineOptions:
    binary: bool = False        #: write 0/255 instead of the soft mask
    resize_mask: bool = False   #: resize a mask of another size (nearest neighbour) instead of refusing it
    instances: bool = False     #: the mask is an instance label map; write a label map
    cfg: Any = None             #: the method's inference config (default: its defaults)


def _load(image_path: Path, mask_path: Path, opts: RefineOptions) -> tuple[np.ndarray, np.ndarray]:
    image = read_rgb(image_path, exif=True)
    mask = read_labels(mask_path) if opts.instances else read_mask(mask_path, exif=True)
    if opts.instances and mask.dtype == np.uint8 and (levels := len(np.unique(mask))) > MAX_8BIT_INSTANCES:
        raise ValueError(f'{mask_path}: {levels - 1} grey levels: a soft mask, not an instance label '
                         f'map; drop --instances (or save the label map as a 16-bit PNG)')
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
        probs = refiner.refine_objects(image, masks, cfg=opts.cfg)
        out = labels_from_probabilities(probs, ids) if ids else np.zeros(mask.shape, np.uint8)
        coarse_view = binarize(mask, 0)
        refined_view = binarize(out, 0)
    else:
        out = refiner.refine(image, mask, cfg=opts.cfg)
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
    images = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES] if folder.is_dir() else []
    masks = frozenset(folder / (q.stem + mask_suffix) for q in images if q.stem + mask_suffix != q.name)
    groups, problems = find_groups(folder, '', {'mask': '{name}' + mask_suffix}, partners_only=masks)
    return [(g.name, g.files['key'], g.files['mask']) for g in groups], problems


def refine_directory(refiner: Refiner, folder: str | Path, output: str | Path, mask_suffix: str = '.png',
                     opts: RefineOptions = RefineOptions(), visualize: bool = False, cutout: bool = False,
                     progress: bool = True) -> RunReport:
    """Refine every pair of ``folder`` into ``output/X.png`` (and ``X_panel.png``, ``X_cutout.png``).

    A pair that fails is reported by name and the others go on.
    """
    output = Path(output)
    pairs, problems = find_pairs(folder, mask_suffix)
    for p in problems:
        log.error('%s', p)

    def files(pair: tuple[str, Path, Path]) -> tuple[Path, Path | None, Path | None]:
        name = pair[0]
        return (output / f'{name}.png', output / f'{name}_panel.png' if visualize else None,
                output / f'{name}_cutout.png' if cutout else None)

    def one(pair: tuple[str, Path, Path]) -> None:
        out, panel, cut = files(pair)
        refine_file(refiner, pair[1], pair[2], out, opts, panel, cut)

    return run_items(pairs, one, lambda pair: pair[0], RunReport(failures=list(problems)), progress,
                     outputs=lambda pair: [p for p in files(pair) if p is not None])
