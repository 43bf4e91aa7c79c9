"""Weights by name: ``lite`` (bundled in the repository), ``cascadepsp`` (the authors' release, downloaded
on first use), or a path.

    model = load_pretrained('lite')            # models/weights/lite.pth, offline
    model = load_pretrained('cascadepsp')      # $CASCADEPSP_HOME/model, fetched and MD5-verified once
    model = load_pretrained('saves/RUN/checkpoint_final.pth')
"""
from __future__ import annotations

import os
from pathlib import Path

import torch.nn as nn

from models.checkpoint import CheckpointError, load_model

#: Weights shipped in the repository (fp16; see the README for how they were trained).
BUNDLED = {'lite': Path(__file__).resolve().parent / 'weights' / 'lite.pth'}
#: Weights downloaded into the cache on first use: name -> source of :mod:`dataset.sources`.
DOWNLOADED = {'cascadepsp': 'model', 'cascadepsp_paper': 'model_paper'}
#: The model used when none is named.
DEFAULT = 'lite'


def cache_dir() -> Path:
    """``$CASCADEPSP_HOME``, default ``~/.cache/cascadepsp``."""
    return Path(os.environ.get('CASCADEPSP_HOME') or Path.home() / '.cache' / 'cascadepsp')


def resolve_weights(name_or_path: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The weights file for a name (see the module docstring) or a path (returned as is).

    Raises :class:`CheckpointError` when a bundled file is missing, or when a downloadable file is not in
    the cache and cannot be fetched (the message names the URL and where to put the file by hand).
    """
    name = str(name_or_path if name_or_path is not None else DEFAULT)
    if name in BUNDLED:
        if not BUNDLED[name].is_file():
            raise CheckpointError(f'{BUNDLED[name]}: the bundled {name!r} weights are missing from this checkout')
        return BUNDLED[name]
    if name not in DOWNLOADED:
        return Path(name)
    from dataset.download import DownloadError, download_source  # only when a download may be needed
    from dataset.sources import SOURCES
    source = SOURCES[DOWNLOADED[name]]
    target = cache_dir() / source.name
    if target.is_file() or not download:
        return target
    try:
        return download_source(source.name, cache_dir())
    except DownloadError as e:
        first = source.remotes[0].candidates[0]
        checksum = f' (MD5 {first.md5})' if first.md5 else ''
        raise CheckpointError(f'{name}: the weights are not in the cache and could not be downloaded: {e}\n'
                              f'Download {first.resolve()}{checksum} by hand and put it at {target} '
                              f'(or set CASCADEPSP_HOME to the folder holding {source.name!r}).') from e


def load_pretrained(name_or_path: str | os.PathLike | None = None) -> nn.Module:
    """Resolve ``name_or_path`` (:func:`resolve_weights`) and build its model in eval mode."""
    return load_model(resolve_weights(name_or_path)).eval()
