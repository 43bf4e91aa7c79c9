"""Fixed held-out splits, listed in the repository (``dataset/splits/*.txt``) so every run excludes the
same pairs and every benchmark scores the same ones.

A split file has one ``SOURCE/STEM`` per line (``ecssd/0042``, ``DUTS-TE/ILSVRC2012_test_00000003``);
``#`` starts a comment.
"""
from __future__ import annotations

import logging
from pathlib import Path

from dataset.readers import Pair

log = logging.getLogger(__name__)

#: The held-out validation split of the bundled model: 100 ECSSD + 200 DUTS-TE pairs, drawn once with
#: ``numpy.random.default_rng(2026)`` from the pairs of ECSSD and DUTS-TE (see scripts/make_split.py).
VAL_SPLIT = Path(__file__).resolve().parent / 'splits' / 'val.txt'


def pair_key(pair: Pair) -> str:
    """``SOURCE/STEM`` of a flat-layout pair (the source is the image's folder name)."""
    return f'{pair.image.parent.name}/{pair.image.stem}'


def read_split(path: str | Path) -> list[str]:
    """The ``SOURCE/STEM`` keys of a split file, in file order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'{path}: no such split file')
    keys = [line.split('#')[0].strip() for line in path.read_text().splitlines()]
    return [k for k in keys if k]


def exclude_split(pairs: list[Pair], path: str | Path) -> list[Pair]:
    """``pairs`` without those listed in the split file ``path`` (logged)."""
    held = set(read_split(path))
    kept = [p for p in pairs if pair_key(p) not in held]
    log.info('held out %d pairs listed in %s', len(pairs) - len(kept), path)
    return kept


def split_pairs(data_root: str | Path, path: str | Path) -> list[Pair]:
    """The pairs a split file lists, found under ``data_root/SOURCE/STEM.jpg|png``; missing ones raise."""
    root = Path(data_root)
    pairs, missing = [], []
    for key in read_split(path):
        image = next((p for p in (root / f'{key}.jpg', root / f'{key}.jpeg') if p.is_file()), None)
        mask = root / f'{key}.png'
        if image is None or not mask.is_file():
            missing.append(key)
        else:
            pairs.append(Pair(image, mask))
    if missing:
        raise FileNotFoundError(f'{root}: {len(missing)} pairs of {path} not found, e.g. {missing[:3]}')
    return pairs
