"""Refining a BIG / relabeled-PASCAL style folder: the body of ``eval.py``.

Input folder: ``NAME_im.jpg|png``, ``NAME_seg.png`` and optionally ``NAME_gt.png``. Output folder:
``NAME_im.png``, ``NAME_seg.png``, ``NAME_gt.png`` (when given) and ``NAME_mask.png`` = floor(p * 255),
each written atomically; ``NAME_mask.png`` is written last and marks the image as finished.
"""
from __future__ import annotations

import logging
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import progressbar
import torch
import torch.nn as nn

from inference.visualize import refinement_panel
from models.cascade import CascadeConfig
from models.refiner import refine_image
from util.atomic import write_image
from util.image_io import IMAGE_SUFFIXES, ImageReadError, read_grey, read_rgb, size_mismatch
from util.transforms import normalize_image, normalize_mask, probability_to_uint8

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    name: str
    image: Path
    seg: Path
    gt: Path | None


@dataclass
class RunReport:
    refined: int = 0
    skipped: int = 0
    crops: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        cpu_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is in KiB on Linux
        gpu = (f', peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB'
               if torch.cuda.is_available() else '')
        per = f' ({self.seconds / self.refined:.2f} s/image)' if self.refined else ''
        return (f'{self.refined} image(s) refined in {self.seconds:.1f} s{per}, {self.crops} local crops, '
                f'{self.skipped} already done, {len(self.failures)} failed; '
                f'peak CPU memory (RSS) {cpu_mb:.0f} MiB{gpu}')


def find_samples(folder: str | Path) -> tuple[list[Sample], list[str]]:
    """Pair every ``NAME_im.*`` with ``NAME_seg.png`` (required) and ``NAME_gt.png`` (optional)."""
    folder = Path(folder)
    if not folder.is_dir():
        return [], [f'{folder}: no such input folder']
    samples, problems = [], []
    for image in sorted(p for p in folder.iterdir() if p.stem.endswith('_im') and p.suffix.lower() in IMAGE_SUFFIXES):
        name = image.stem[:-len('_im')]
        seg, gt = folder / f'{name}_seg.png', folder / f'{name}_gt.png'
        if not seg.is_file():
            problems.append(f'{image}: no partner mask {seg.name}')
            continue
        samples.append(Sample(name, image, seg, gt if gt.is_file() else None))
    for seg in sorted(folder.glob('*_seg.png')):
        name = seg.name[:-len('_seg.png')]
        if not any((folder / f'{name}_im{s}').is_file() for s in IMAGE_SUFFIXES):
            problems.append(f'{seg}: no partner image {name}_im.jpg/.png')
    if not samples and not problems:
        problems.append(f'{folder}: no NAME_im.jpg/.png files')
    return samples, problems


def load_sample(sample: Sample) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(H x W x 3 RGB image, H x W input mask, H x W ground truth or None), all uint8.

    Raises :class:`ImageReadError` or ``ValueError`` (size mismatch) naming the file.
    """
    image = read_rgb(sample.image)
    seg = read_grey(sample.seg, labels01=True)
    gt = read_grey(sample.gt, labels01=True) if sample.gt else None
    for path, mask in ((sample.seg, seg), (sample.gt, gt)):
        if mask is not None and mask.shape != image.shape[:2]:
            raise ValueError(size_mismatch(path, mask.shape, sample.image, image.shape))
    return image, seg, gt


def _refine_one(model: nn.Module, sample: Sample, output: Path, cfg: CascadeConfig,
                global_only: bool, min_size: int | None, visualize: Path | None) -> int:
    image, seg, gt = load_sample(sample)
    prob, crops = refine_image(model, normalize_image(image), normalize_mask(seg), cfg, global_only, min_size)
    mask = probability_to_uint8(prob[0, 0])
    write_image(output / f'{sample.name}_im.png', image)
    write_image(output / f'{sample.name}_seg.png', seg)
    if gt is not None:
        write_image(output / f'{sample.name}_gt.png', gt)
    if visualize is not None:
        write_image(visualize / f'{sample.name}_panel.png', refinement_panel(image, seg, mask, gt))
    write_image(output / f'{sample.name}_mask.png', mask)  # last: it marks the image as finished
    return crops


def refine_folder(model: nn.Module, input_dir: str | Path, output_dir: str | Path,
                  cfg: CascadeConfig = CascadeConfig(), global_only: bool = False, min_size: int | None = None,
                  overwrite: bool = False, clear_cache: bool = False, progress: bool = True,
                  visualize_dir: str | Path | None = None) -> RunReport:
    """Refine every sample of ``input_dir`` into ``output_dir``; a bad sample is reported and skipped.

    ``visualize_dir``: also write ``NAME_panel.png`` there (see :mod:`inference.visualize`).
    """
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    samples, problems = find_samples(input_dir)
    report = RunReport(failures=list(problems))
    for p in problems:
        log.error(p)
    todo = [s for s in samples if overwrite or not (output / f'{s.name}_mask.png').is_file()]
    report.skipped = len(samples) - len(todo)
    if report.skipped:
        log.info('%d image(s) already refined in %s (use --overwrite to redo them)', report.skipped, output)
    start = time.perf_counter()
    bar = progressbar.ProgressBar(max_value=len(todo)) if progress and todo else None
    for i, sample in enumerate(todo):
        try:
            report.crops += _refine_one(model, sample, output, cfg, global_only, min_size,
                                        Path(visualize_dir) if visualize_dir else None)
            report.refined += 1
        except (ImageReadError, ValueError, OSError) as e:
            report.failures.append(str(e))
            log.error('%s: %s', sample.name, e)
        if clear_cache and torch.cuda.is_available():
            torch.cuda.empty_cache()
        bar and bar.update(i + 1)
    bar and bar.finish()
    report.seconds = time.perf_counter() - start
    return report
