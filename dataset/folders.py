"""The one finder of files that belong together in a folder, for every layout the project reads:

    NAME_im.jpg|png + NAME_seg.png [+ NAME_gt.png]     eval.py input (BIG / relabeled PASCAL)
    NAME_gt.png + NAME_seg.png + [PREFIX]NAME_mask.png  eval_post.py input (eval.py's output)
    X.jpg|png|... + X<mask_suffix>                      refine.py --dir input
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from util.image_io import IMAGE_SUFFIXES, read_grey, read_rgb, size_mismatch


@dataclass(frozen=True)
class Group:
    """Files of one item: ``files[role]`` for every role found (optional roles may be absent)."""
    name: str
    files: dict[str, Path]

    def get(self, role: str) -> Path | None:
        return self.files.get(role)


def find_groups(folder: str | Path, key: str, required: dict[str, str] | None = None,
                optional: dict[str, str] | None = None, suffixes: tuple[str, ...] = IMAGE_SUFFIXES,
                skip: tuple[str, ...] = (), partners_only: frozenset[Path] = frozenset()
                ) -> tuple[list[Group], list[str]]:
    """Every file ``NAME{key}{suffix}`` of ``folder`` (suffix in ``suffixes``, any case) with its partners.

    ``required`` / ``optional`` map a role to a file-name template such as ``'{name}_seg.png'``; the key file's
    role is ``'key'``. A name that starts with one of ``skip``, or a file in ``partners_only``, is not an item. Two key files of one NAME (e.g.
    ``NAME_im.jpg`` and ``NAME_im.png``) are reported, not both processed, since their outputs would collide.
    Returns (groups sorted by name, problems naming each missing or ambiguous file).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return [], [f'{folder}: no such folder']
    required, optional = required or {}, optional or {}
    by_name: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in suffixes and p.stem.endswith(key) and p not in partners_only:
            name = p.stem[:len(p.stem) - len(key)] if key else p.stem
            if name and not name.startswith(skip):
                by_name.setdefault(name, []).append(p)
    groups, problems = [], []
    for name, keys in sorted(by_name.items()):
        if len(keys) > 1:
            problems.append(f'{name}: several files ({", ".join(p.name for p in keys)}); keep one')
            continue
        files = {'key': keys[0]}
        missing = []
        for role, template in {**required, **optional}.items():
            path = folder / template.format(name=name)
            if path.is_file() and path != keys[0]:  # a file is not its own partner
                files[role] = path
            elif role in required:
                missing.append(path.name)
        if missing:
            problems.append(f'{keys[0]}: no partner file ' + ', '.join(missing))
        else:
            groups.append(Group(name, files))
    if not groups and not problems:
        problems.append(f'{folder}: no *{key}{"|".join(suffixes)} files')
    return groups, problems


@dataclass(frozen=True)
class Sample:
    """One image of an ``eval.py`` input folder."""
    name: str
    image: Path
    seg: Path
    gt: Path | None


def find_samples(folder: str | Path) -> tuple[list[Sample], list[str]]:
    """Pair every ``NAME_im.*`` with ``NAME_seg.png`` (required) and ``NAME_gt.png`` (optional); a
    ``NAME_seg.png`` without an image is reported too."""
    groups, problems = find_groups(folder, '_im', {'seg': '{name}_seg.png'}, {'gt': '{name}_gt.png'})
    folder = Path(folder)
    if folder.is_dir():
        for seg in sorted(folder.glob('*_seg.png')):
            name = seg.name[:-len('_seg.png')]
            if not any(p.is_file() for p in folder.glob(f'{name}_im.*')):
                problems.append(f'{seg}: no partner image {name}_im.jpg/.png')
    return [Sample(g.name, g.files['key'], g.files['seg'], g.get('gt')) for g in groups], problems


def load_sample(sample: Sample) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(H x W x 3 RGB image, H x W input mask, H x W ground truth or None), all uint8.

    Raises :class:`util.image_io.ImageReadError` or ``ValueError`` (size mismatch) naming the file.
    """
    image = read_rgb(sample.image, exif=True)  # the orientation a viewer shows, as refine.py reads it
    seg = read_grey(sample.seg, labels01=True, exif=True)
    gt = read_grey(sample.gt, labels01=True, exif=True) if sample.gt else None
    for path, mask in ((sample.seg, seg), (sample.gt, gt)):
        if mask is not None and mask.shape != image.shape[:2]:
            raise ValueError(size_mismatch(path, mask.shape, sample.image, image.shape))
    return image, seg, gt
