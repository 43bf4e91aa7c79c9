"""Finding image/mask pairs in the download layout (see ``download_dataset.py``).

    data/MSRA_10K/X.jpg + X.png      flat folders (also DUTS-TR, DUTS-TE, ecssd)
    data/fss/CLASS/N.jpg + N.png     FSS-1000 class folders (labels may be {0, 1})
    data/BIG/val/NAME_im.jpg ...     validation/test folders in the _im/_seg/_gt layout
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from util.image_io import ImageReadError, image_size, size_mismatch

log = logging.getLogger(__name__)

#: Training sources of the paper, by folder name under the data root, with their layout.
TRAINING_SOURCES = {'MSRA_10K': 'flat', 'DUTS-TR': 'flat', 'DUTS-TE': 'flat', 'ecssd': 'flat', 'fss': 'classes'}


@dataclass(frozen=True)
class Pair:
    image: Path
    mask: Path


def flat_pairs(folder: str | Path) -> tuple[list[Pair], list[str]]:
    """``X.jpg`` (or .jpeg) with ``X.png`` in one folder. Returns (pairs sorted by name, problems)."""
    folder = Path(folder)
    images = {p.stem: p for p in folder.iterdir() if p.suffix.lower() in ('.jpg', '.jpeg')}
    masks = {p.stem: p for p in folder.iterdir() if p.suffix.lower() == '.png'}
    pairs = [Pair(images[k], masks[k]) for k in sorted(images.keys() & masks.keys())]
    problems = ([f'{images[k]}: no mask {k}.png' for k in sorted(images.keys() - masks.keys())]
                + [f'{masks[k]}: no image {k}.jpg' for k in sorted(masks.keys() - images.keys())])
    return pairs, problems


def class_folder_pairs(folder: str | Path) -> tuple[list[Pair], list[str]]:
    """FSS-1000 layout: every sub-folder is a class of flat pairs."""
    pairs, problems = [], []
    for sub in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        p, q = flat_pairs(sub)
        pairs += p
        problems += q
    return pairs, problems


def check_sizes(pairs: list[Pair]) -> tuple[list[Pair], list[str]]:
    """Drop pairs whose image and mask sizes differ or whose headers are unreadable (headers only: fast)."""
    good, problems = [], []
    for pair in pairs:
        try:
            a, b = image_size(pair.image), image_size(pair.mask)
        except ImageReadError as e:
            problems.append(str(e))
            continue
        if a != b:
            problems.append(size_mismatch(pair.mask, b, pair.image, a))
        else:
            good.append(pair)
    return good, problems


def training_pairs(data_root: str | Path, sources: list[str] | None = None) -> list[Pair]:
    """All training pairs of the given sources (default: those of :data:`TRAINING_SOURCES` present).

    Unmatched or mis-sized pairs are logged and skipped. Raises ``FileNotFoundError`` when nothing is found.
    """
    root = Path(data_root)
    wanted = sources or [s for s in TRAINING_SOURCES if (root / s).is_dir()]
    pairs: list[Pair] = []
    for source in wanted:
        folder = root / source
        if not folder.is_dir():
            raise FileNotFoundError(f'{folder}: training source not found (run download_dataset.py)')
        layout = TRAINING_SOURCES.get(source) or ('classes' if any(p.is_dir() for p in folder.iterdir()) else 'flat')
        found, problems = (class_folder_pairs if layout == 'classes' else flat_pairs)(folder)
        found, more = check_sizes(found)
        for p in problems + more:
            log.warning('skipped: %s', p)
        log.info('%s: %d pairs', folder, len(found))
        pairs += found
    if not pairs:
        raise FileNotFoundError(f'{root}: no training pairs in {wanted or list(TRAINING_SOURCES)}')
    return pairs
