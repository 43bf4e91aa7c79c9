"""Refiner: the practitioner's API over any registered network (SamPredictor-style: it owns pre- and
post-processing; the method's inference runs in between)."""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from inference.engine import check_precision, precision_scope, prepare
from inference.objects import refine_objects
from inference import predict
from inference.predict import image_tensors, refine_image
from methods import method_of_model
from models.hub import DEFAULT, cache_dir, load_pretrained
from util.boxes import masks_from_labels
from util.devices import parse_device
from util.malloc import keep_freed_memory
from util.transforms import binarize, normalize_image, probability_to_uint8, rgb_tensor

log = logging.getLogger(__name__)


class Refiner:
    """Refine a coarse mask of any image.

    Example::

        refiner = Refiner()                                # the bundled 'lite' model, CPU
        refiner = Refiner('cascadepsp', device='cuda')     # the authors' weights (downloaded once)
        output = refiner.refine(image_rgb, coarse_mask)    # H x W uint8
    """

    def __init__(self, checkpoint: str | os.PathLike | None = None, device: str | torch.device = 'cpu',
                 model: nn.Module | None = None, precision: str = 'fp32', exact: bool = False,
                 backend: str = 'torch', keep_freed_memory: bool | None = None) -> None:
        """Load ``checkpoint``: a name (``lite``, the default, bundled; ``cascadepsp``, the authors' release)
        or a path (the released ``model`` file or a ``train.py`` checkpoint); or use an already built ``model``.

        ``precision``: fp32, bf16 or fp16 (autocast). ``exact``: the authors' arithmetic operation for operation
        instead of the same function computed cheaper (see :mod:`inference.engine`). ``backend``: ``torch``, or
        ``onnx`` for the cascade networks on ONNX Runtime (CPU; :mod:`inference.onnx_backend`): ``checkpoint`` is
        then an export folder, or a model that is exported once into the cache. ``keep_freed_memory``: keep freed
        memory in the process during each call (faster on glibc, for a higher peak; process-wide, so it is
        off unless asked for: see :data:`inference.predict.KEEP_FREED_MEMORY`, the default when None).
        """
        if checkpoint is not None and model is not None:
            raise ValueError('give a checkpoint or a model, not both')
        if isinstance(checkpoint, str) and checkpoint.split(':')[0] in ('cpu', 'cuda', 'mps') \
                and not os.path.exists(checkpoint):  # the authors' package takes the device first
            raise ValueError(f'{checkpoint!r} is a device, not a model: Refiner(device={checkpoint!r}) (the first '
                             'argument names the model: lite, cascadepsp, crm, or a file)')
        if checkpoint is None and model is None:
            log.info('Refiner: no model named, using the bundled %r', DEFAULT)
        self.device = parse_device(device, 'device')
        check_precision(precision, self.device)
        self.precision = precision
        if backend == 'onnx':
            if self.device.type != 'cpu':
                raise ValueError(f'backend onnx runs on the CPU here, not {self.device}')
            model = self._onnx(checkpoint, model)
        elif backend != 'torch':
            raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
        self.keep_freed_memory = predict.KEEP_FREED_MEMORY if keep_freed_memory is None else keep_freed_memory
        self.model = prepare(model if model is not None else load_pretrained(checkpoint), self.device, exact)
        self.method = method_of_model(self.model)

    @contextlib.contextmanager
    def _running(self) -> Iterator[None]:
        """The scope of one call: the precision, and the allocator setting chosen at construction."""
        with keep_freed_memory(self.keep_freed_memory), precision_scope(self.precision, self.device):
            yield

    @staticmethod
    def _onnx(checkpoint: str | os.PathLike | None, model: nn.Module | None) -> nn.Module:
        from inference.onnx_backend import OnnxCascade, cached_export, is_export
        if checkpoint is not None and is_export(checkpoint):
            return OnnxCascade(checkpoint)
        model = model if model is not None else load_pretrained(checkpoint)
        if method_of_model(model).name != 'cascadepsp':
            raise ValueError(f'backend onnx runs the cascade networks (lite, cascadepsp), not {model.arch}')
        folder = cached_export(model, cache_dir())
        try:
            return OnnxCascade(folder)
        except ValueError as e:  # a damaged file in the cache (truncated by a full disk, say): export it again
            log.warning('%s; exporting %s again', e, folder)
            return OnnxCascade(cached_export(model, cache_dir(), again=True))

    def config(self, fast: bool = False, cfg: Any = None, **settings: Any) -> Any:
        """The method's inference config with ``settings`` (its field names, e.g. ``L``, ``stride``, ``batch``);
        ``fast`` is the authors' name for ``global_only``. A ready ``cfg`` is returned as it is."""
        if cfg is not None:
            if fast or settings:
                raise ValueError('give a config or settings, not both')
            return cfg
        if fast:
            settings['global_only'] = True
        try:
            return self.method.InferConfig(**settings)
        except TypeError as e:
            raise TypeError(f'{self.method.name}: unknown inference setting ({e}); known: '
                            f'{", ".join(self.method.InferConfig.__dataclass_fields__)}') from e

    def refine(self, image: np.ndarray, mask: np.ndarray, fast: bool = False, cfg: Any = None,
               **settings: Any) -> np.ndarray:
        """Refine ``mask`` to follow the boundaries of ``image``.

        Args:
            image: H x W x 3 uint8 RGB (convert OpenCV's BGR first).
            mask: H x W (or H x W x 1) uint8 coarse mask; binarised at 127 as the authors' package does.
            fast: Global step only: faster, less accurate on large images.
            settings: the method's inference settings, e.g. ``L=900`` (global resolution and local crop side,
                pixels; lower uses less memory), ``stride`` (local crops, pixels; default: the architecture's),
                ``batch=1`` (local crops per forward pass: speed and memory only, the result does not change).
            cfg: a ready inference config of the method instead of ``fast`` and ``settings``.

        Returns:
            H x W uint8 soft mask, floor(probability * 255).
        """
        if not self.method.takes_mask:
            raise ValueError(f'{self.method.name} segments the image itself (no coarse mask): use '
                             'Refiner.segment(image)')
        image, mask = self._validate(image, mask)
        if mask.max(initial=0) == 1:  # {0, 1} labels, as the command line and refine_objects read them
            mask = mask * np.uint8(255)
        with self._running():
            refined = refine_image(self.model, *image_tensors(image, binarize(mask)), self.config(fast, cfg, **settings))
        return probability_to_uint8(refined.probs[0, 0])

    def segment(self, image: np.ndarray, cfg: Any = None, **settings: Any) -> tuple[np.ndarray, np.ndarray]:
        """A multi-class method (MagNet) on ``image`` (H x W x 3 uint8 RGB): (refined, coarse) H x W uint8 label
        maps, one class index per pixel (the coarse one is the segmentation network's own)."""
        if self.method.takes_mask:
            raise ValueError(f'{self.method.name} refines a coarse mask: use Refiner.refine(image, mask)')
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f'image must be an H x W x 3 uint8 RGB array, got {getattr(image, "shape", type(image))}')
        with self._running():
            refined = refine_image(self.model, rgb_tensor(image).to(self.device), None,
                                   self.config(False, cfg, **settings))
        return (refined.probs.argmax(1)[0].to(torch.uint8).cpu().numpy(),
                refined.extra['coarse'].argmax(1)[0].to(torch.uint8).cpu().numpy())

    def refine_objects(self, image: np.ndarray, masks: np.ndarray | list[np.ndarray], fast: bool = False,
                       cfg: Any = None, **settings: Any) -> list[np.ndarray]:
        """Refine every object of one image, each inside a window around its box (see :mod:`inference.objects`).

        Args:
            image: H x W x 3 uint8 RGB.
            masks: a list of H x W binary masks (bool, {0, 1}, or uint8 thresholded at 127), or one H x W integer
                instance label map (0 = background; objects in ascending id order).
            settings: as in :meth:`refine`; ``L`` caps each window's L (a window is refined at its own
                resolution up to L), ``batch`` windows of the same size (and local crops) run per forward pass.

        Returns:
            One H x W float32 probability map in [0, 1] per object, zero outside its window.
        """
        if isinstance(masks, np.ndarray):
            if masks.ndim != 2 or not (np.issubdtype(masks.dtype, np.integer) or masks.dtype == bool):
                raise ValueError(f'a label map must be an H x W integer array, got {masks.dtype} {masks.shape}')
            _, masks = masks_from_labels(masks)
        binary = [m > 0 if m.dtype == bool or m.max(initial=0) <= 1 else m > 127  # bool / {0,1} / 0..255
                  for m in map(np.asarray, masks)]
        for m in binary:
            self._validate(image, m.astype(np.uint8))
        with self._running():
            probs = refine_objects(self.model, normalize_image(image), binary, self.config(fast, cfg, **settings))
        return [p.numpy().astype(np.float32) for p in probs]

    @staticmethod
    def _validate(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(image, np.ndarray) or not isinstance(mask, np.ndarray):
            raise TypeError(f'image and mask must be numpy arrays, got {type(image).__name__} and {type(mask).__name__}')
        if image.dtype != np.uint8 or mask.dtype != np.uint8:
            raise TypeError(f'image and mask must be uint8 (0..255), got {image.dtype} and {mask.dtype}')
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f'image must be H x W x 3 RGB, got shape {image.shape}')
        if mask.ndim == 3 and mask.shape[2] == 1:
            mask = mask[:, :, 0]
        if mask.ndim != 2:
            raise ValueError(f'mask must be H x W (or H x W x 1), got shape {mask.shape}')
        if mask.shape != image.shape[:2]:
            raise ValueError(f'mask {mask.shape} and image {image.shape[:2]} differ in size')
        if min(mask.shape) < 1:
            raise ValueError(f'empty image of shape {image.shape}')
        return image, mask
