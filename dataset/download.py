"""Resumable, idempotent download and arrangement of the sources of :mod:`dataset.sources`.

For each source: every remote file is fetched to ``ROOT/.downloads/FILE`` (a ``.part`` file that an
interrupted transfer leaves behind is continued with an HTTP Range request), its checksum verified when
known, extracted into a temporary folder, arranged into the project's layout there, and only then
renamed to ``ROOT/NAME``. A source whose folder exists is finished and is not fetched again.
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import progressbar

from dataset.sources import SOURCES, Remote, Source
from util.atomic import atomic_path
from util.image_io import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A file could not be fetched or verified; the message names the URL and the reason."""


def sha256sum(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(_CHUNK), b''):
            h.update(chunk)
    return h.hexdigest()


def fetch(url: str, dest: Path, timeout: float = 60, progress: bool = True) -> Path:
    """Download ``url`` to ``dest``, continuing ``dest.part`` if an earlier transfer was cut."""
    if dest.is_file():
        return dest
    part = dest.with_name(dest.name + '.part')
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={'Range': f'bytes={have}-'} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if have and response.status != 206:  # the server ignored the range: start again
                have = 0
            total = response.headers.get('Content-Length')
            total = int(total) + have if total is not None else None
            bar = progressbar.ProgressBar(max_value=total or progressbar.UnknownLength) if progress else None
            with open(part, 'ab' if have else 'wb') as f:
                done = have
                while chunk := response.read(_CHUNK):
                    f.write(chunk)
                    done += len(chunk)
                    bar and bar.update(done)
            bar and bar.finish()
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        reason = getattr(e, 'reason', None) or repr(e)
        raise DownloadError(f'{url}: {reason} (partial data kept in {part}; run again to continue)') from e
    if total is not None and part.stat().st_size != total:
        raise DownloadError(f'{url}: transfer ended at {part.stat().st_size} of {total} bytes '
                            f'(kept in {part}; run again to continue)')
    part.rename(dest)
    return dest


def _mirror_sums(mirror: str) -> dict[str, str]:
    try:
        with urllib.request.urlopen(mirror.rstrip('/') + '/SHA256SUMS', timeout=30) as r:
            lines = r.read().decode().splitlines()
    except (urllib.error.URLError, OSError):
        return {}
    return {name.strip().lstrip('*'): digest for digest, _, name in (l.partition(' ') for l in lines if l.strip())}


def _extract(archive: Path, into: Path) -> None:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for member in z.namelist():  # refuse paths that would escape the folder
                if member.startswith('/') or '..' in Path(member).parts:
                    raise DownloadError(f'{archive}: unsafe path {member} in archive')
            z.extractall(into)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            t.extractall(into, filter='data')
    else:
        raise DownloadError(f'{archive}: not a zip or tar archive')


def _arrange(source: Source, extracted: Path, final: Path) -> None:
    """Move the extracted files into the project's layout at ``final`` (a fresh folder)."""
    final.mkdir()
    if source.layout == 'flat':  # every image and mask of the archives, side by side
        for path in sorted(p for p in extracted.rglob('*') if p.suffix.lower() in IMAGE_SUFFIXES):
            target = final / path.name
            if target.exists():
                raise DownloadError(f'{source.name}: two files named {path.name} in the archives')
            shutil.move(str(path), target)
    elif source.layout == 'classes':  # the folder whose sub-folders hold the pairs
        classes = {p.parent.parent for p in extracted.rglob('*.jpg')}
        if len(classes) != 1:
            raise DownloadError(f'{source.name}: expected one folder of class folders, found {len(classes)}')
        for cls in sorted(p for p in classes.pop().iterdir() if p.is_dir()):
            shutil.move(str(cls), final / cls.name)
    else:  # 'tree': unwrap a single top-level folder, keep the rest as it is
        entries = [p for p in extracted.iterdir() if not p.name.startswith('__MACOSX')]
        top = entries[0] if len(entries) == 1 and entries[0].is_dir() else extracted
        for p in top.iterdir():
            shutil.move(str(p), final / p.name)


def _url(source: Source, remote: Remote, mirror: str | None, urls: dict[str, str]) -> str:
    if mirror:
        return mirror.rstrip('/') + '/' + remote.filename
    url = urls.get(source.name) if len(source.remotes) == 1 else urls.get(f'{source.name}/{remote.filename}')
    url = url or remote.url
    if not url:
        raise DownloadError(f'{source.name}: no download URL known. {source.note}')
    return url


def download_source(name: str, root: str | Path, mirror: str | None = None, urls: dict[str, str] | None = None,
                    keep_archives: bool = False, progress: bool = True) -> Path:
    """Fetch, verify, extract and arrange one source into ``root/name``; returns that path."""
    source, root = SOURCES[name], Path(root)
    final = root / source.name
    if final.exists():
        log.info('%s: already in %s, skipped', name, final)
        return final
    downloads = root / '.downloads'
    downloads.mkdir(parents=True, exist_ok=True)
    sums = _mirror_sums(mirror) if mirror else {}
    files = []
    for remote in source.remotes:
        url = _url(source, remote, mirror, urls or {})
        log.info('%s: fetching %s', name, url)
        path = fetch(url, downloads / remote.filename, progress=progress)
        with open(path, 'rb') as f:
            head = f.read(512).lstrip().lower()
        if head.startswith((b'<!doctype html', b'<html')):  # e.g. a Google Drive confirmation page
            bad = path.with_name(path.name + '.html')
            path.rename(bad)
            raise DownloadError(f'{url}: the server returned an HTML page, not {remote.filename} '
                                f'(saved as {bad}); use a direct download link')
        expected = remote.sha256 or sums.get(remote.filename)
        if expected and sha256sum(path) != expected:
            bad = path.with_name(path.name + '.corrupt')
            path.rename(bad)
            raise DownloadError(f'{url}: checksum mismatch (expected {expected}); moved to {bad}, run again')
        files.append(path)
    if source.layout == 'file':
        with atomic_path(final) as tmp:
            shutil.copyfile(files[0], tmp)
    else:
        with tempfile.TemporaryDirectory(prefix=f'.{name}.', dir=root) as tmp:
            extracted = Path(tmp) / 'extracted'
            for path in files:
                _extract(path, extracted)
            _arrange(source, extracted, Path(tmp) / 'arranged')
            os.replace(Path(tmp) / 'arranged', final)  # the folder appears only once complete
    if not keep_archives:
        for path in files:
            path.unlink()
    log.info('%s: ready in %s', name, final)
    return final
