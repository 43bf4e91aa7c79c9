"""Atomic file writes: write to a temporary name in the same folder, then rename over the target.

A crash or an exception mid-write leaves any previous file intact and no half-written one behind.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np


#: Suffixes :func:`write_image` writes (OpenCV picks the format from them).
WRITABLE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success it is renamed to ``path``.

    The temporary name keeps the suffix, so writers that pick a format from it (OpenCV, PIL) work.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f'{path}: is a folder, not a file to write')
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The writer's PID is in the name, so a later run can tell a killed run's leftovers from live writes.
        fd, tmp = tempfile.mkstemp(prefix=f'.{path.stem}.{os.getpid()}-', suffix=f'.tmp{path.suffix}', dir=path.parent)
    except OSError as e:  # name the target and the reason, not a temporary name
        raise OSError(e.errno, f'{path}: cannot write there ({e.strerror or e})') from e
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the permissions an ordinary write would
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, 'w', encoding='utf-8') as f:
        f.write(text)


_LEFTOVER = re.compile(r'^\..*\.(\d+)-[^.]*\.tmp')


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_leftovers(folder: str | os.PathLike) -> int:
    """Delete the temporary files that killed writers (their PID no longer runs) left in ``folder``; returns
    how many. Live writers' files are kept, so two runs can share a folder."""
    removed = 0
    for p in Path(folder).iterdir():
        match = _LEFTOVER.match(p.name)
        if match and p.is_file() and not _alive(int(match[1])):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed += 1
    return removed


def ensure_folder(path: str | os.PathLike) -> Path:
    """Create the output folder ``path`` (and its parents), check that files can be written in it, and delete
    the temporary files of killed runs, before any work; raise ``OSError`` naming it when it cannot be written
    (a file in the way, no permission, a read-only disk)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix='.write_test.', dir=path)
        os.close(fd)
        os.remove(probe)
        remove_leftovers(path)
    except OSError as e:
        raise OSError(e.errno, f'{path}: cannot write output there ({e.strerror or e})') from e
    return path


def check_writable(path: str | os.PathLike, what: str = 'output') -> None:
    """Raise ``OSError`` naming ``path`` unless a file can be written there: not a folder, in a folder that exists
    or can be made and takes files. Call it before the work that ends in writing ``path``."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f'{what} {path}: is a folder; a file is written there, so move the folder away or '
                                'choose another output')
    ensure_folder(path.parent if str(path.parent) else '.')


def check_output_file(path: str | os.PathLike, what: str = 'output') -> None:
    """Raise ``OSError`` naming ``path`` unless an image can be written there: a known suffix, and
    :func:`check_writable`."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f'{what} {path}: is a folder; give a file name such as {path / "refined.png"}')
    if path.suffix.lower() not in WRITABLE_SUFFIXES:
        raise OSError(f'{what} {path}: unknown image suffix {path.suffix or "(none)"!r}; use one of '
                      f'{", ".join(WRITABLE_SUFFIXES)}')
    check_writable(path, what)


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write a uint8 (or uint16 PNG) image atomically; H x W x 3 / x 4 arrays are taken as RGB / RGBA
    (converted for OpenCV). The suffix picks the format; one OpenCV cannot write is an ``OSError``."""
    suffix = Path(path).suffix.lower()
    if suffix not in WRITABLE_SUFFIXES:
        raise OSError(f'{path}: cannot write an image with suffix {suffix or "(none)"!r}; use one of '
                      f'{", ".join(WRITABLE_SUFFIXES)}')
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR if image.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(tmp, image):
            raise OSError(f'{path}: OpenCV could not write the image')


class OverwritesInput(ValueError):
    """An output path would replace one of the command's inputs, or another output of the same run."""


def _same_file_key(path: str | os.PathLike) -> str:
    """A key equal for two spellings of one file: symbolic links followed, case folded where the file
    system folds it."""
    return os.path.normcase(str(Path(path).resolve()))


def refuse_overwriting_inputs(outputs: dict[str, str | os.PathLike | None],
                              inputs: dict[str, str | os.PathLike | None]) -> None:
    """Raise :class:`OverwritesInput`, naming both paths, when an output (file or folder) is one of the inputs,
    or when two outputs are the same file (the second would silently replace the first).

    ``outputs`` / ``inputs`` map a role (e.g. ``'--output'``, ``'IMAGE'``) to a path; None is skipped. Call it
    before any work starts, so that a refused command changes nothing.
    """
    known = {_same_file_key(p): (role, p) for role, p in inputs.items() if p is not None}
    written: dict[str, tuple[str, str | os.PathLike]] = {}
    for out_role, out in outputs.items():
        if out is None:
            continue
        key = _same_file_key(out)
        if key in known:
            in_role, inp = known[key]
            raise OverwritesInput(f'{out_role} {out} is the input {in_role} {inp}: refusing to write over an '
                                  'input; choose another output')
        if key in written:
            other_role, other = written[key]
            raise OverwritesInput(f'{out_role} {out} and {other_role} {other} are the same file: one output would '
                                  'replace the other; give each its own name')
        written[key] = (out_role, out)


def colliding_outputs(planned: list[tuple[str, list[str | os.PathLike]]]) -> dict[int, str]:
    """Items of one run whose output files are another item's (``a``'s panel ``a_panel.png`` and the mask of an
    image named ``a_panel``; two images named ``0_sat`` in different folders): index -> message naming the
    file and every item that would write it. ``planned`` lists (item name, its output paths) in run order."""
    owners: dict[str, list[int]] = {}
    for index, (_, paths) in enumerate(planned):
        for key in dict.fromkeys(_same_file_key(p) for p in paths):  # in order: the first clash is named
            owners.setdefault(key, []).append(index)
    problems: dict[int, str] = {}
    for key, indices in owners.items():
        if len(indices) > 1:
            names = ', '.join(planned[i][0] for i in indices)
            for i in indices:
                problems.setdefault(i, f'its output {key} would also be written by {names}: none of them is '
                                       'written (rename one of the inputs, or write to another folder)')
    return problems
