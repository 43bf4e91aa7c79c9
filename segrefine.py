"""A drop-in for the authors' pip package (``segmentation-refinement`` 0.6, which carvekit and clipx build on):
change one import and nothing else.

    import segrefine as refine                 # was: import segmentation_refinement as refine
    refiner = refine.Refiner(device='cuda:0')  # the released CascadePSP weights, found in or downloaded to
                                               # model_folder (default ~/.segmentation-refinement, the package's)
    output = refiner.refine(image, mask, fast=False, L=900)   # H x W uint8, floor(p * 255)

By default the package's procedure runs (``compat='pip'``: images under L upscaled to L before the Global step, the
Local stride L // 2, the fast mode's upscale with ``align_corners=True``) with cheaper arithmetic (Winograd
convolutions on the CPU, folded batch norms, see :mod:`inference.engine` and docs/performance.md), and
within one level of 255 of the package's outputs on 99.9% of pixels or more (Global+Local, where the global result
is near 0.5, can flip more); ``exact=True`` gives the package's outputs bit for bit. ``compat='research'`` runs the
authors' research procedure (``eval.py``, the papers' numbers). The input mask is thresholded at 127 as
the package does; PIL images, bool masks (True is foreground; the package reads a bool mask as empty) and 0/255
masks of any integer or float dtype are accepted. Beyond the package, as carvekit's wrapper: ``refine_batch``
for several images, and ``max_size``, above which an image is refined downscaled and the result upscaled.
The project's own API is :class:`inference.Refiner` (bundled weights by default).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from inference.engine import check_precision, precision_scope, prepare
from inference import predict
from inference.predict import image_tensors, refine_image
from methods.cascadepsp.config import CascadeConfig
from models.checkpoint import CheckpointError, load_model
from models.hub import MODEL_MD5, MODEL_URL, WEIGHT_SOURCES
from util.devices import parse_device
from util.malloc import keep_freed_memory as keep_freed
from util.fetch import DownloadError, download_source, file_digest
from util.transforms import probability_to_uint8

log = logging.getLogger('segrefine')
DEFAULT_FOLDER = '~/.segmentation-refinement'  # the package's, so a model it downloaded is reused


def _rgb(image: Any) -> np.ndarray:
    if not isinstance(image, np.ndarray):  # a PIL image (the package's ToTensor takes one too)
        image = np.asarray(image.convert('RGB') if hasattr(image, 'convert') else image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'image must be H x W x 3 RGB, got shape {image.shape}')
    if image.dtype != np.uint8:
        raise ValueError(f'image must be uint8 0..255, got {image.dtype}')
    return image


def _binary(mask: Any, shape: tuple[int, int]) -> np.ndarray:
    """The package's ``mask > 127`` as a 0/255 uint8 mask; a bool mask is taken as it is."""
    mask = np.asarray(mask.convert('L') if hasattr(mask, 'convert') else mask)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    if mask.ndim != 2:
        raise ValueError(f'mask must be H x W (or H x W x 1), one value per pixel; got shape {mask.shape}: '
                         'pass one channel, e.g. mask[..., 0]')
    if mask.shape != shape:
        raise ValueError(f'mask {mask.shape[1]}x{mask.shape[0]} and image {shape[1]}x{shape[0]} (W x H) differ in size')
    if mask.dtype == bool:
        return mask.astype(np.uint8) * np.uint8(255)
    if mask.size and mask.max() <= 1 and mask.max() > 0:
        log.warning('mask values are all within [0, 1] (a %s mask): the package reads > 127 as the foreground, so '
                    'this mask is empty; scale it to 0..255 (mask * 255) or pass a bool mask', mask.dtype)
    return (mask > 127).astype(np.uint8) * np.uint8(255)


def _size(value: Any, name: str, minimum: int, optional: bool = False) -> int | None:
    """An integer setting (``L``, ``max_size``) checked as the package's callers pass it; a clear error otherwise."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f'{name} must be an integer number of pixels{" or None" if optional else ""}, '
                        f'got {value!r} ({type(value).__name__})')
    if value < minimum:
        raise ValueError(f'{name} must be at least {minimum} pixels, got {value}')
    return int(value)


class Refiner:
    """The package's ``Refiner(device='cpu', model_folder=None, download_and_check_model=True)``."""

    def __init__(self, device: str = 'cpu', model_folder: str | os.PathLike | None = None,
                 download_and_check_model: bool = True, compat: str = 'pip', max_size: int | None = None,
                 exact: bool = False, fp16: bool = False, keep_freed_memory: bool | None = None) -> None:
        """The package's arguments, then: ``compat`` ('pip' or 'research'), ``max_size`` (px; larger images are
        refined downscaled), ``exact`` (bit-identical arithmetic), ``fp16`` (half precision, carvekit's option:
        for GPUs; on a CPU without native fp16 kernels it is very slow), ``keep_freed_memory`` (keep freed
        memory in the process during each call: faster on glibc for a higher peak, docs/performance.md; but
        process-wide, so off unless asked for; None: ``SEGREFINE_KEEP_FREED_MEMORY=1`` turns it on)."""
        CascadeConfig(compat=compat)  # a bad compat fails here, before any download
        self.max_size = _size(max_size, 'max_size', 8, optional=True)
        self.device = parse_device(device, 'device')
        folder = Path(os.path.expanduser(str(model_folder if model_folder is not None else DEFAULT_FOLDER)))
        if folder.exists() and not folder.is_dir():
            raise CheckpointError(f'model_folder {folder}: is a file; give the folder that holds (or will hold) the '
                                  "'model' file")
        path = folder / 'model'
        if path.is_dir():
            raise CheckpointError(f'{path}: is a folder; the weights are a file named model in {folder}')
        where = (f"download {MODEL_URL} (MD5 {MODEL_MD5}) by hand and put it at {path}, or pass "
                 'model_folder= a folder holding it')
        if download_and_check_model:
            if not path.exists():
                log.info('Downloading the released CascadePSP weights into %s', path)
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                    download_source(WEIGHT_SOURCES['model'], folder)  # MD5-verified before it appears
                except (DownloadError, OSError) as e:
                    raise CheckpointError(f'{path}: the released weights are not there and could not be '
                                          f'downloaded ({e}); {where}') from e
            elif file_digest(path, 'md5') != MODEL_MD5:
                log.warning('%s: MD5 of the model file does not match the release (%s); loading it anyway, '
                            'as the package does', path, MODEL_MD5)
        if not path.is_file():
            raise CheckpointError(f'{path}: no model file; {where} (download_and_check_model=True fetches it)')
        self.precision = 'fp16' if fp16 else 'fp32'
        check_precision(self.precision, self.device)
        self.model = prepare(load_model(path), self.device, exact)
        self.compat = compat
        self.keep_freed_memory = predict.KEEP_FREED_MEMORY if keep_freed_memory is None else keep_freed_memory

    def refine(self, image: Any, mask: Any, fast: bool = False, L: int = 900) -> np.ndarray:
        """Refine ``mask`` (H x W or H x W x 1; > 127 is foreground) on ``image`` (H x W x 3 RGB, 0..255).
        ``fast``: the Global step only. ``L``: the global resolution and local crop side. Returns H x W uint8."""
        image = _rgb(image)
        h, w = image.shape[:2]
        mask = _binary(mask, (h, w))
        cfg = CascadeConfig(L=_size(L, 'L', 8), global_only=bool(fast), compat=self.compat)
        tensors = image_tensors(image, mask)
        with keep_freed(self.keep_freed_memory), precision_scope(self.precision, self.device):
            probs = self._refine(tensors, cfg, (h, w))
        return probability_to_uint8(probs[0, 0])

    def _refine(self, tensors: tuple[torch.Tensor, torch.Tensor], cfg: CascadeConfig, size: tuple[int, int]
                ) -> torch.Tensor:
        h, w = size
        if self.max_size and max(h, w) > self.max_size:  # refined smaller, then upscaled (carvekit's option)
            scale = self.max_size / max(h, w)
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
            small = (F.interpolate(tensors[0].float(), size=size, mode='area').round().to(torch.uint8),
                     (F.interpolate(tensors[1], size=size, mode='area') > 0.5).float())
            return F.interpolate(refine_image(self.model, *small, cfg).probs, size=(h, w), mode='bilinear',
                                 align_corners=False)
        return refine_image(self.model, *tensors, cfg).probs

    def refine_batch(self, images: list, masks: list, fast: bool = False, L: int = 900) -> list[np.ndarray]:
        """:meth:`refine` over several images (any sizes)."""
        if len(images) != len(masks):
            raise ValueError(f'{len(images)} images but {len(masks)} masks')
        return [self.refine(image, mask, fast, L) for image, mask in zip(images, masks)]
