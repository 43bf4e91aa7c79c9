"""CRM's inference (the authors' ``test.py``): a coarse-to-fine loop over input scales, each step decoding
the mask at every full-resolution pixel, its result the next step's input mask.

Per image (docs/crm.md), with H x W the reflect-padded size:
  1. the image and the current mask are resized (bilinear, align_corners=True, no antialiasing, always from
     the full-resolution padded tensors) to (round(H s), round(W s)), Python's round (half to even);
  2. features once per scale; queries: every padded full-resolution pixel, ``chunk`` at a time;
  3. if the scale's full-resolution input mask sums to under one pixel ((seg + 1).sum() < 2 in [-1, 1],
     padding included) the probabilities are set to 0;
  4. the next scale's mask is (p - 0.5) * 2 over the whole padded map, the border included (the model's own
     prediction there, not a mirror of the interior).

Kept quirks (they change the outputs): banker's rounding of the input size, align_corners=True resizes, the
padded border carried over. Fixed crashes: a side of at most ``pad`` px cannot be reflect-padded by torch;
here the padding repeats the reflection (what ``numpy.pad(mode='reflect')`` does), identical to torch's where
torch works. ``global_only`` (which crashes in the authors' code) runs one pass with the input's long side
scaled to at most L, queries still at full resolution.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from methods.base import Refined
from methods.crm.config import CRMConfig
from models.crm.network import axis_coord
from util.transforms import as_normalized


def reflect_indices(n: int, pad: int, device: torch.device | None = None) -> torch.Tensor:
    """Indices of a reflect padding (no edge repeat) of an axis of n by ``pad`` on both sides, for any pad:
    the reflection repeats when pad >= n (n = 1 repeats its one value)."""
    i = torch.arange(-pad, n + pad, device=device)
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    i = torch.remainder(i, period)
    return torch.where(i >= n, period - i, i)


def reflect_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """B x C x H x W reflect-padded by ``pad`` on every side (``F.pad(mode='reflect')`` where that works)."""
    if pad == 0:
        return x
    h, w = x.shape[-2:]
    if pad < h and pad < w:
        return F.pad(x, (pad,) * 4, mode='reflect')
    return x[..., reflect_indices(h, pad, x.device), :][..., reflect_indices(w, pad, x.device)]


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode='bilinear', align_corners=True)


@torch.inference_mode()
def decode_full(model: nn.Module, image: torch.Tensor, seg: torch.Tensor, size: tuple[int, int], chunk: int
                ) -> torch.Tensor:
    """Features of (image, seg) once, then logits at every pixel centre of a ``size`` grid, ``chunk`` queries
    at a time (coordinates made per chunk, identical to the authors' full grid). Returns B x 1 x H x W on the
    input's device."""
    dev = next(model.parameters()).device
    feat = model.features(image.to(dev), seg.to(dev))
    if model.splits_decoder:  # the split decoder's table, once per scale; the features are not kept
        lookup = model.lookup_table(feat)
        del feat

        def decode(coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
            return model.decode_table(lookup, coord, cell)
    else:
        def decode(coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
            return model.decode(feat, coord, cell)
    h, w = size
    rows, cols = axis_coord(h, device=dev), axis_coord(w, device=dev)
    cell = torch.tensor([2 / h, 2 / w], dtype=torch.float32, device=dev)
    b = image.shape[0]
    out = torch.empty(b, h * w, device=image.device)
    for start in range(0, h * w, chunk):
        q = torch.arange(start, min(start + chunk, h * w), device=dev)
        coord = torch.stack([rows[q // w], cols[q % w]], -1)[None].expand(b, -1, 2)
        out[:, start:start + len(q)] = decode(coord, cell.expand(b, len(q), 2))[..., 0].to(image.device)
    return out.view(b, 1, h, w)


def scale_size(h: int, w: int, s: float) -> tuple[int, int]:
    """The authors' per-scale input size: Python's round (half to even) of H s and W s."""
    return max(1, round(h * s)), max(1, round(w * s))


@torch.inference_mode()
def refine(model: nn.Module, image: torch.Tensor, coarse: torch.Tensor, cfg: CRMConfig = CRMConfig()) -> Refined:
    """CRM's coarse-to-fine refinement.

    Args:
        model: :class:`models.crm.network.CRMNet` in eval mode, on any device.
        image: B x 3 x H x W normalised RGB; coarse: B x 1 x H x W in [0, 1] (same device, normally the CPU).
        cfg: scales, query chunk, padding, or the single-pass ``global_only`` mode at L.

    Returns:
        :class:`Refined`: the last scale's probabilities B x 1 x H x W, and ``extra[str(s)]`` for every scale
        (named as the authors name their files: ``0.125``, ``0.25``, ``0.5``, ``1.0``).
    """
    if image.shape[-2:] != coarse.shape[-2:] or image.shape[0] != coarse.shape[0]:
        raise ValueError(f'image {tuple(image.shape)} and mask {tuple(coarse.shape)} differ in size')
    h0, w0 = image.shape[-2:]
    p = cfg.pad
    im = reflect_pad(as_normalized(image), p)
    seg = reflect_pad(coarse * 2 - 1, p)
    h, w = im.shape[-2:]
    if cfg.global_only:
        steps = [('global', min(1.0, cfg.L / max(h, w)))]
    else:
        steps = [(str(float(s)), float(s)) for s in cfg.scales]
    extra = {}
    prob = None
    for name, s in steps:
        size = scale_size(h, w, s)
        logits = decode_full(model, _resize(im, size), _resize(seg, size), (h, w), cfg.chunk)
        prob = torch.sigmoid(logits)
        empty = (seg + 1).flatten(1).sum(1) < 2
        prob[empty] = 0
        seg = (prob - 0.5) * 2
        if name != 'global':
            extra[name] = prob[..., p:p + h0, p:p + w0]
    return Refined(prob[..., p:p + h0, p:p + w0], extra=extra, stats={'passes': len(steps)})


def extra_outputs(cfg: CRMConfig) -> tuple[str, ...]:
    """The keys of :attr:`Refined.extra` that :func:`refine` returns with ``cfg``: every scale's, as the authors
    name their files (``0.125``, ...); none in the single-pass mode."""
    return () if cfg.global_only else tuple(str(float(s)) for s in cfg.scales)
