"""Weights by name: ``lite`` (bundled in the repository), ``cascadepsp``, ``crm``, MagNet's files and systems
(``magnet_cityscapes``, ``magnet_deepglobe``) (the authors' releases, downloaded on first use), or a path.

    model = load_pretrained('lite')            # models/weights/lite.pth, offline
    model = load_pretrained('cascadepsp')      # $CASCADEPSP_HOME/model, fetched and MD5-verified once
    model = load_pretrained('saves/RUN/checkpoint_final.pth')
"""
from __future__ import annotations

import os
from pathlib import Path

import torch.nn as nn

from models.checkpoint import CheckpointError, load_model, load_weights
from models.magnet.system import MagNetSystem
from util.fetch import DownloadError, Remote, Source, download_source, drive_candidates, url_candidate

#: Weights shipped in the repository (fp16; see the README for how they were trained).
BUNDLED = {'lite': Path(__file__).resolve().parent / 'weights' / 'lite.pth'}
#: The released weights (259 MB): the file the authors' pip package downloads, with its published MD5.
MODEL_URL = 'https://github.com/hkchengrex/CascadePSP/releases/download/v1.0/model'
MODEL_MD5 = '7478d4a9c42ab52beb6d7e9683402fe0'
#: CRM's README (its pretrained-model link is a OneDrive share), and its file's tensor bytes (from its layout).
CRM_PAGE = 'https://github.com/dvlab-research/Entity/tree/main/High-Quality-Segmention'
CRM_BYTES = 97_281_412

#: Published weights, as download sources (``download_dataset.py --what model`` fetches them too). The
#: GitHub release is MD5-verified; the Drive copy of the retrained model is its backup (no checksum is
#: published for it, which the download log says).
WEIGHT_SOURCES: dict[str, Source] = {s.name: s for s in (
    Source('model', 'file', (Remote('model', (url_candidate(MODEL_URL, MODEL_MD5),
                                              *drive_candidates('1FMmUYtWsZB4fReoQmtqqn-NOZrC8CfWK'))),),
           note="the released CascadePSP weights ('model', 259 MB)"),
    Source('model_paper', 'file', (Remote('model_paper', drive_candidates('103nLN1JQCs2yASkna0HqfioYZO7MA_J9')),),
           note='the weights of the paper (the release above is the retrained, slightly better model)'),
    # CRM: one file on OneDrive, linked from the authors' README; OneDrive share links need a browser, so no
    # direct URL is built in. No MD5 is published: its size (97,281,412 bytes of float32 tensors plus the
    # file's own overhead) is checked here and its layout when it loads.
    Source('crm', 'file', (Remote('model_45705', (), size_range=(CRM_BYTES, CRM_BYTES + 2**20)),),
           note=f'the released CRM weights (model_45705, 97.3 MB; the OneDrive link in the README at {CRM_PAGE}, '
                'which needs a browser)'),
)}
#: MagNet's six released files (``checkpoints/download_*.sh``): name -> tensor bytes of its layout (no MD5 is
#: published: the size is checked on download, the layout on load).
MAGNET_URL = 'https://public.vinai.io/magnet_cvpr2021/'
MAGNET_FILES = {'cityscapes_hrnet.pth': 25_606_892, 'cityscapes_refinement_512.pth': 419_504,
                'cityscapes_refinement_1024.pth': 419_504, 'cityscapes_refinement_2048.pth': 419_504,
                'deepglobe_fpn.pth': 112_472_288, 'deepglobe_refinement.pth': 357_680}
WEIGHT_SOURCES.update({name: Source(name, 'file', (Remote(name, (url_candidate(MAGNET_URL + name),),
                                                          size_range=(size, size + 2**20)),),
                                    note=f"MagNet's released {name}") for name, size in MAGNET_FILES.items()})
#: MagNet systems by name: the authors' ``--model``, classes, backbone file and refinement file(s) (Cityscapes:
#: one per stage; DeepGlobe: one for every stage).
MAGNET_SYSTEMS = {
    'magnet_cityscapes': ('hrnet18+ocr', 19, 'cityscapes_hrnet.pth',
                          ('cityscapes_refinement_512.pth', 'cityscapes_refinement_1024.pth',
                           'cityscapes_refinement_2048.pth')),
    'magnet_deepglobe': ('fpn', 7, 'deepglobe_fpn.pth', ('deepglobe_refinement.pth',)),
}

#: Weights downloaded into the cache on first use: name -> source of :data:`WEIGHT_SOURCES`.
DOWNLOADED = {'cascadepsp': 'model', 'cascadepsp_paper': 'model_paper', 'crm': 'crm',
              **{name: name for name in MAGNET_FILES}}
#: The architecture of each named model (what ``-h`` needs to list its method's flags without loading it).
NAMED_ARCHS = {'lite': 'lite', 'cascadepsp': 'cascadepsp', 'cascadepsp_paper': 'cascadepsp', 'crm': 'crm'}
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
        path = Path(name)
        if not path.exists() and path.suffix == '' and '/' not in name and os.sep not in name:
            raise CheckpointError(f'{name}: no such weights file, and not a known name; known names: '
                                  f'{", ".join([*BUNDLED, *DOWNLOADED])}')
        return path
    source = WEIGHT_SOURCES[DOWNLOADED[name]]
    target = cache_dir() / source.name
    if target.is_file() or not download:
        return target
    try:
        return download_source(source, cache_dir())
    except DownloadError as e:
        candidates = source.remotes[0].candidates
        if candidates:
            where = candidates[0].resolve() + (f' (MD5 {candidates[0].md5})' if candidates[0].md5 else '')
        else:
            where = source.note
        raise CheckpointError(f'{name}: the weights are not in the cache and could not be downloaded: {e}\n'
                              f'Download {where} by hand and put it at {target} '
                              f'(or set CASCADEPSP_HOME to the folder holding {source.name!r}).') from e


def load_pretrained(name_or_path: str | os.PathLike | None = None) -> nn.Module:
    """Resolve ``name_or_path`` (:func:`resolve_weights`) and build its model in eval mode; a MagNet system
    name (:data:`MAGNET_SYSTEMS`) loads its backbone and refinement files."""
    if str(name_or_path) in MAGNET_SYSTEMS:
        return load_named_system(str(name_or_path))
    return load_model(resolve_weights(name_or_path)).eval()


def load_system(model: str, num_classes: int, backbone: str | os.PathLike,
                refinements: list[str | os.PathLike]) -> MagNetSystem:
    """The authors' ``--model fpn|hrnet18+ocr --num_classes C --pretrained BACKBONE --pretrained_refinement
    R1 [R2 ...]``, each file loaded strictly (a released ``FullModel`` file or a checkpoint of this project) and
    on the CPU whatever device it was saved from. Returns the system in eval mode."""
    if not refinements:
        raise CheckpointError('MagNet needs at least one refinement module (--pretrained_refinement FILE [FILE ...])')
    system = MagNetSystem(model, num_classes, len(refinements))
    load_weights(system.backbone, resolve_weights(backbone))
    for module, path in zip(system.refinements, refinements):
        load_weights(module, resolve_weights(path))
    return system.eval()


def load_named_system(name: str) -> MagNetSystem:
    """A released system by name (:data:`models.hub.MAGNET_SYSTEMS`), its files fetched into the cache once."""
    if name not in MAGNET_SYSTEMS:
        raise CheckpointError(f'{name}: not a MagNet system; known: {", ".join(MAGNET_SYSTEMS)}')
    model, classes, backbone, refinements = MAGNET_SYSTEMS[name]
    return load_system(model, classes, backbone, list(refinements))
