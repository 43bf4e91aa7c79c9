"""Resumable, idempotent download and arrangement of named sources (datasets in :mod:`dataset.sources`,
weights in :mod:`models.hub`).

For each source: every remote file is fetched to ``ROOT/.downloads/FILE`` (a ``.part`` file that an
interrupted transfer leaves behind is continued with an HTTP Range request), its checksum verified when
known, extracted into a temporary folder, arranged into the project's layout there, and only then
renamed to ``ROOT/NAME``. A source whose folder exists is finished and is not fetched again.

A remote's candidates are tried in order: a candidate that answers with an HTTP error or cannot be
reached hands over to the next (Google Drive backups). Google Drive serves large files behind an HTML
page ("can't scan this file for viruses") holding a form whose hidden fields (``id``, ``export``,
``confirm``, ``uuid``) must be sent to the form's action URL; :func:`fetch` follows that form. Any other
HTML answer is refused with its URL.
"""
from __future__ import annotations

import hashlib
import html.parser
import http.client
import logging
import os
from dataclasses import dataclass
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import progressbar

from util.atomic import atomic_path
from util.image_io import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

#: Google Drive's direct-download endpoint; large files answer with a confirmation form first (handled in
#: :mod:`util.fetch`). ``CASCADEPSP_DRIVE_URL`` overrides it (tests point it at a local server).
DRIVE_URL = 'https://drive.google.com/uc?export=download&id={id}'


@dataclass(frozen=True)
class Candidate:
    """One place a file can be fetched from: a URL, or a Google Drive file id."""
    url: str | None = None
    drive_id: str | None = None
    md5: str | None = None      #: published MD5, verified when given
    sha256: str | None = None

    def resolve(self) -> str:
        if self.url:
            return self.url
        return os.environ.get('CASCADEPSP_DRIVE_URL', DRIVE_URL).format(id=self.drive_id)


@dataclass(frozen=True)
class Remote:
    filename: str                        #: name of the downloaded file (and its name on a mirror)
    candidates: tuple[Candidate, ...]    #: tried in order; empty: no public direct link (needs --url/--mirror)
    size_range: tuple[int, int] | None = None  #: bytes the file must have, whatever URL serves it


@dataclass(frozen=True)
class Source:
    name: str               #: folder (or file) created under the data root
    layout: str             #: 'flat' (X.jpg + X.png), 'classes' (CLASS/N.jpg + N.png), 'tree' (kept), 'file'
    remotes: tuple[Remote, ...]
    note: str = ''


def url_candidate(url: str, md5: str | None = None) -> Candidate:
    return Candidate(url=url, md5=md5)


def drive_candidates(*ids: str) -> tuple[Candidate, ...]:
    return tuple(Candidate(drive_id=i) for i in ids)


_CHUNK = 1 << 20
#: A transfer that receives less than this within its timeout is stalled.
_MIN_PROGRESS = 64 << 10


class DownloadError(RuntimeError):
    """A file could not be fetched or verified; the message names the URL and the reason."""


class Unavailable(DownloadError):
    """The server answered with an error or could not be reached before any data came: try a backup."""


def file_digest(path: Path, algorithm: str = 'sha256') -> str:
    h = hashlib.new(algorithm)
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(_CHUNK), b''):
            h.update(chunk)
    return h.hexdigest()


class _FormParser(html.parser.HTMLParser):
    """Collects the first form's action and its hidden input fields."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or '' for k, v in attrs}
        if tag == 'form' and self.action is None:
            self.action, self._in_form = a.get('action', ''), True
        elif tag == 'input' and self._in_form and a.get('type', '').lower() == 'hidden' and a.get('name'):
            self.fields[a['name']] = a.get('value', '')

    def handle_endtag(self, tag: str) -> None:
        if tag == 'form':
            self._in_form = False


def drive_confirmation_url(page: str, page_url: str) -> str | None:
    """The download URL behind a Google Drive virus-scan warning page, or None if ``page`` is not one.

    The page holds ``<form action=...>`` with hidden ``id``, ``export``, ``confirm`` (and ``uuid``) fields;
    submitting it (a GET) returns the file.
    """
    parser = _FormParser()
    parser.feed(page)
    if parser.action is None or 'id' not in parser.fields or 'confirm' not in parser.fields:
        return None
    action = urllib.parse.urljoin(page_url, parser.action)
    return action + ('&' if '?' in action else '?') + urllib.parse.urlencode(parser.fields)


def _html_error(url: str, what: str) -> DownloadError:
    return DownloadError(f'{url}: the server returned an HTML page, not {what} (a login, quota or error page); '
                         'use a direct download link')


def _open(url: str, have: int, timeout: float, what: str):
    """Open ``url`` (with a Range from ``have``), following one Google Drive confirmation form."""
    for _ in range(2):
        request = urllib.request.Request(url, headers={'Range': f'bytes={have}-'} if have else {})
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as e:
            raise Unavailable(f'{url}: HTTP {e.code} {e.reason}') from e
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            raise Unavailable(f'{url}: {getattr(e, "reason", None) or repr(e)}') from e
        if 'text/html' not in response.headers.get('Content-Type', ''):
            return response, url
        with response:
            page = response.read(1 << 21).decode('utf-8', 'replace')
        confirm = drive_confirmation_url(page, url)
        if confirm is None:
            raise _html_error(url, what)
        log.info('%s: following the Google Drive download confirmation', url)
        url = confirm
    raise _html_error(url, what)


def fetch(url: str, dest: Path, timeout: float = 60, progress: bool = True) -> Path:
    """Download ``url`` to ``dest``, continuing ``dest.part`` if an earlier transfer was cut.

    Raises :class:`Unavailable` when the server cannot be reached or answers with an HTTP error (nothing
    was received: a backup may be tried), :class:`DownloadError` for a cut transfer or an HTML page.
    """
    if dest.is_file():
        return dest
    part = dest.with_name(dest.name + '.part')
    have = part.stat().st_size if part.exists() else 0
    response, url = _open(url, have, timeout, dest.name)
    try:
        with response:
            if have and response.status != 206:  # the server ignored the range: start again
                have = 0
            total = response.headers.get('Content-Length')
            total = int(total) + have if total is not None else None
            bar = progressbar.ProgressBar(max_value=total or progressbar.UnknownLength) if progress else None
            with open(part, 'ab' if have else 'wb') as f:
                done = mark = have
                last = time.monotonic()
                # read1 returns what has arrived: a server that trickles a few bytes at a time cannot hold the
                # transfer open for ever (the socket's timeout only bounds each wait).
                while chunk := response.read1(_CHUNK):
                    f.write(chunk)
                    done += len(chunk)
                    bar and bar.update(done)
                    now = time.monotonic()
                    if done - mark >= _MIN_PROGRESS:
                        mark, last = done, now
                    elif now - last > timeout:
                        raise DownloadError(f'{url}: stalled: {done - mark} bytes in {now - last:.0f} s (less than '
                                            f'{_MIN_PROGRESS // 1024} KiB in {timeout:g} s)')
            bar and bar.finish()
    except (urllib.error.URLError, http.client.HTTPException, OSError, DownloadError) as e:
        reason = str(e).removeprefix(f'{url}: ') if isinstance(e, DownloadError) else getattr(e, 'reason', None) or repr(e)
        kept = part.stat().st_size if part.exists() else 0
        if kept == 0:
            part.unlink(missing_ok=True)
            raise DownloadError(f'{url}: {reason} (nothing received)') from e
        raise DownloadError(f'{url}: {reason} ({kept} bytes kept in {part}; run again to continue)') from e
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


def _candidates(source: Source, remote: Remote, mirror: str | None, urls: dict[str, str]) -> list[Candidate]:
    """Where to fetch ``remote`` from, in order: a ``--url`` override (not verified: the user chose the
    file), a mirror (the same files, so the published checksums apply), else the built-in candidates."""
    override = urls.get(source.name) if len(source.remotes) == 1 else urls.get(f'{source.name}/{remote.filename}')
    if override:  # the published checksum is the file's, whatever URL serves it
        known = next((c for c in remote.candidates if c.md5 or c.sha256), Candidate())
        return [Candidate(url=override, md5=known.md5, sha256=known.sha256)]
    if mirror:
        known = remote.candidates[0] if remote.candidates else Candidate()
        return [Candidate(url=mirror.rstrip('/') + '/' + remote.filename, md5=known.md5, sha256=known.sha256)]
    if not remote.candidates:
        raise DownloadError(f'{source.name}: no download URL known. {source.note}: give --url {source.name}=URL')
    return list(remote.candidates)


def _verify(path: Path, url: str, candidate: Candidate, mirror_sha256: str | None) -> None:
    """Check the published MD5 / SHA-256; a mismatch deletes the file and names URL and both digests."""
    checks = [('MD5', 'md5', candidate.md5), ('SHA-256', 'sha256', candidate.sha256 or mirror_sha256)]
    for label, algorithm, expected in checks:
        if expected and (got := file_digest(path, algorithm)) != expected.lower():
            path.unlink()
            raise DownloadError(f'{url}: {label} mismatch: expected {expected}, received {got}; '
                                f'the file was deleted (run again to fetch it anew)')
    if not (candidate.md5 or candidate.sha256 or mirror_sha256):
        log.warning('%s: no checksum is published for this file; it was not verified', url)


def fetch_remote(source: Source, remote: Remote, folder: Path, mirror: str | None = None,
                 urls: dict[str, str] | None = None, progress: bool = True) -> Path:
    """Fetch and verify ``remote`` into ``folder/remote.filename``, failing over to backup candidates."""
    sums = _mirror_sums(mirror) if mirror else {}
    failures = []
    for candidate in _candidates(source, remote, mirror, urls or {}):
        url = candidate.resolve()
        log.info('%s: fetching %s', source.name, url)
        try:
            path = fetch(url, folder / remote.filename, progress=progress)
        except Unavailable as e:
            failures.append(str(e))
            log.warning('%s (trying the next source if there is one)', e)
            continue
        with open(path, 'rb') as f:
            head = f.read(512).lstrip().lower()
        if head.startswith((b'<!doctype html', b'<html')):  # an HTML page sent without a text/html type
            path.unlink()
            raise _html_error(url, remote.filename)
        _verify(path, url, candidate, sums.get(remote.filename))
        size = path.stat().st_size
        if remote.size_range and not remote.size_range[0] <= size <= remote.size_range[1]:
            path.unlink()
            raise DownloadError(f'{url}: {size} bytes, but {remote.filename} has {remote.size_range[0]} to '
                                f'{remote.size_range[1]}; the file was deleted')
        return path
    raise Unavailable(f'{source.name}: {remote.filename} could not be fetched from any source: ' + '; '.join(failures))


def download_source(source: Source, root: str | Path, mirror: str | None = None, urls: dict[str, str] | None = None,
                    keep_archives: bool = False, progress: bool = True) -> Path:
    """Fetch, verify, extract and arrange one source into ``root/source.name``; returns that path."""
    root = Path(root)
    name = source.name
    final = root / source.name
    if final.exists():
        log.info('%s: already in %s, skipped', name, final)
        return final
    downloads = root / '.downloads'
    downloads.mkdir(parents=True, exist_ok=True)
    files = [fetch_remote(source, remote, downloads, mirror, urls, progress) for remote in source.remotes]
    if source.layout == 'file':
        if keep_archives:
            with atomic_path(final) as tmp:
                shutil.copyfile(files[0], tmp)
        else:
            os.replace(files[0], final)  # same folder tree: an atomic rename, no 259 MB copy
            files = []
    else:
        with tempfile.TemporaryDirectory(prefix=f'.{name}.', dir=root) as tmp:
            extracted = Path(tmp) / 'extracted'
            for path in files:
                try:
                    _extract(path, extracted)
                except (DownloadError, zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
                    path.unlink(missing_ok=True)  # a corrupt archive must not be reused by the next try
                    raise DownloadError(f'{path}: not a valid archive ({type(e).__name__}: {e}); it was deleted, '
                                        'run again to fetch it anew') from e
            _arrange(source, extracted, Path(tmp) / 'arranged')
            os.replace(Path(tmp) / 'arranged', final)  # the folder appears only once complete
    if not keep_archives:
        for path in files:
            path.unlink()
    log.info('%s: ready in %s', name, final)
    return final
