"""CascadePSP's inference (paper §3.2): the Global and Local steps behind every driver (eval.py, Refiner, ...).

Tensors follow :mod:`util.transforms`: image B x 3 x H x W RGB, normalised float or uint8 0..255 (each step
normalises what it uses: a float copy of a whole 100-megapixel photo is 1.2 GB), mask B x 1 x H x W in
[-1, 1], results B x 1 x H x W probabilities in [0, 1]. B is 1 for an image; B > 1 refines several
same-sized images (object windows) together, each exactly as it would be alone. Full-resolution tensors
stay on the device they come in on (the *aggregation* device, normally the CPU); only L x L inputs go to
the model's device, so accelerator memory depends on L and the crop batch, not on the image size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from methods.base import Refined, model_device
from methods.cascadepsp.config import CascadeConfig
from methods.cascadepsp.padding import safe_forward
from util.malloc import returning_freed_memory
from util.transforms import as_normalized, denormalize_image


#: Images with a side under TINY_SIDE px are refined enlarged by an integer factor (towards a short side of
#: TINY_TARGET px, the long side at most L), then area-downscaled back: at their own size the stride-8 levels
#: see little but padding, and objects vanish. Larger images are refined as the authors do.
TINY_SIDE, TINY_TARGET = 8, 32
#: The shortest side a resized input keeps (an image of 4000 x 4 at L = 900 would otherwise have a side of 0).
MIN_SIDE = 8


def resize_max_side(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """Resize so the long side becomes ``size``, with the size rounding of ``F.interpolate(scale_factor=...)``
    (the authors' rule; e.g. 190 x 250 -> 96 gives 72 x 96). A side that would fall under ``MIN_SIDE`` px
    (extreme aspect ratios, where the authors' code crashes) is kept at ``MIN_SIDE`` (or its own size)."""
    ratio = size / max(x.shape[-2:])
    short = [int(s * ratio) for s in x.shape[-2:]]
    if min(short) < MIN_SIDE:
        out = tuple(max(n, min(MIN_SIDE, s)) for n, s in zip(short, x.shape[-2:]))
        return F.interpolate(x, size=out, mode=mode, **({'align_corners': False} if mode in ('bilinear', 'bicubic') else {}))
    if mode in ('bilinear', 'bicubic'):
        return F.interpolate(x, scale_factor=ratio, mode=mode, align_corners=False)
    return F.interpolate(x, scale_factor=ratio, mode=mode)


def _bilinear(x: torch.Tensor, size: tuple[int, int], align_corners: bool = False) -> torch.Tensor:
    return F.interpolate(x, size=size, mode='bilinear', align_corners=align_corners)


@dataclass(frozen=True)
class Window:
    """One local crop: ``crop`` = (y0, y1, x0, x1) in the image; its prediction is kept on ``keep`` (image
    coordinates, margins trimmed), which is ``crop`` shifted by (``oy``, ``ox``) inside the crop."""
    crop: tuple[int, int, int, int]
    keep: tuple[int, int, int, int]

    @property
    def offset(self) -> tuple[int, int]:
        return self.keep[0] - self.crop[0], self.keep[2] - self.crop[2]


def crop_windows(h: int, w: int, L: int, stride: int, margin: int = 16) -> list[Window]:
    """The local-step tiling of an h x w image, in the authors' order (columns outer, rows inner).

    Starts every ``stride - 2 * margin`` px, ``w // step + 1`` x ``h // step + 1`` positions; crops past the
    border are shifted back inside (clamped at 0 when the image is smaller than L); duplicates dropped.
    """
    step = stride - 2 * margin
    if step <= 0:
        raise ValueError(f'stride {stride} must exceed twice the margin {margin}')
    windows, seen = [], set()
    for xi in range(w // step + 1):
        for yi in range(h // step + 1):
            y0, x0 = yi * step, xi * step
            y1, x1 = y0 + L, x0 + L
            if y1 > h:
                y1, y0 = h, h - L
            if x1 > w:
                x1, x0 = w, w - L
            y0, x0, y1, x1 = max(0, y0), max(0, x0), min(h, y1), min(w, x1)
            if (y0, x0) in seen:
                continue
            seen.add((y0, x0))
            # Trim the margin on every side that is not the image border (less reliable context there).
            keep = (y0 + margin if y0 else 0, y1 - margin if y1 != h else h,
                    x0 + margin if x0 else 0, x1 - margin if x1 != w else w)
            windows.append(Window((y0, y1, x0, x1), keep))
    return windows


def global_step(model: nn.Module, image: torch.Tensor, mask: torch.Tensor, L: int, upscale: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """3-level cascade on the whole image, area-downscaled so its long side is at most L (``upscale``: an
    image under L is also upscaled to L, bicubic image and bilinear mask, as the authors' pip package does).

    Returns the level-3 stride-1 and stride-4 probabilities at that (possibly resized) resolution, on
    the input's device.
    """
    image = as_normalized(image)
    if max(image.shape[-2:]) > L:
        image, mask = resize_max_side(image, L, 'area'), resize_max_side(mask, L, 'area')
    elif upscale and max(image.shape[-2:]) < L:
        image, mask = resize_max_side(image, L, 'bicubic'), resize_max_side(mask, L, 'bilinear')
    dev = model_device(model)
    out = safe_forward(model, image.to(dev), mask.to(dev), keys=('pred_224', 'pred_56_2'))
    return out['pred_224'].to(image.device), out['pred_56_2'].to(image.device)


def _foreground(seg: torch.Tensor, win: Window) -> float:
    """Foreground fraction of the binarised (bool) global mask in the window's crop."""
    y0, y1, x0, x1 = win.crop
    return float(seg[:, :, y0:y1, x0:x1].float().mean())


def local_step(model: nn.Module, image: torch.Tensor, pred_224: torch.Tensor, pred_56: torch.Tensor,
               cfg: CascadeConfig = CascadeConfig()) -> tuple[torch.Tensor, int]:
    """Refine L x L crops at full resolution with levels 2-3 (or level 3 alone: ``cfg.local_levels``, by default
    the architecture's, :data:`methods.cascadepsp.config.LOCAL_POLICIES`) and fuse them. The crops step
    ``cfg.local_stride(model)`` - 2 * margin px (the paper's stride, 450, unless the architecture says otherwise).

    Args:
        image: B x 3 x H x W full-resolution images (B > 1: several images of one size, e.g. object windows;
            their crops share the forward passes, ``cfg.batch`` at a time).
        pred_224, pred_56: global-step stride-1 and stride-4 probabilities (B x 1 x h x w, any h x w).

    Returns:
        (B x 1 x H x W probabilities: the average of the trimmed crop predictions, and the binarised
        global result where no crop reached; the number of crops run).
    """
    h, w = image.shape[-2:]
    dev = model_device(model)
    levels = cfg.levels(model)
    # The binarised global mask is the crop's input mask; the soft stride-4 map replaces level 1's output.
    # Full-resolution buffers are what limits the image size: the binarised mask is kept as bool, the crop
    # counts as uint8, and arithmetic happens in place (the same operations, so the same values).
    seg = _bilinear(pred_224, (h, w)) > 0.5
    soft = _bilinear(pred_56, (h, w)).mul_(2).sub_(1)
    fused = torch.zeros(seg.shape, dtype=soft.dtype, device=soft.device)
    weight = torch.zeros(seg.shape, dtype=torch.uint8, device=soft.device)

    # (image index, window); crops with too little or too much foreground have nothing to refine.
    windows = crop_windows(h, w, cfg.L, cfg.local_stride(model), cfg.margin)
    todo = [(b, win) for b in range(image.shape[0]) for win in windows
            if cfg.min_foreground <= _foreground(seg[b:b + 1], win) <= cfg.max_foreground]

    def crops(t: torch.Tensor, items: list[tuple[int, Window]]) -> torch.Tensor:
        return torch.cat([t[b:b + 1, :, a:c, d:e] for b, (a, c, d, e) in ((b, w_.crop) for b, w_ in items)]).to(dev)

    for i in range(0, len(todo), cfg.batch):
        items = todo[i:i + cfg.batch]
        inter = crops(soft, items)
        pred = safe_forward(model, as_normalized(crops(image, items)), crops(seg, items).to(soft.dtype) * 2 - 1,
                            inter, inter if levels == 1 else None,
                            keys=('pred_224',))['pred_224'].to(fused.device)
        for j, (b, win) in enumerate(items):
            ky0, ky1, kx0, kx1 = win.keep
            oy, ox = win.offset
            fused[b:b + 1, :, ky0:ky1, kx0:kx1] += pred[j:j + 1, :, oy:oy + ky1 - ky0, ox:ox + kx1 - kx0]
            weight[b:b + 1, :, ky0:ky1, kx0:kx1] += 1
    fused.div_(weight.clamp(min=1))
    fused.masked_fill_((weight == 0) & seg, 1.0)  # where no crop reached: the binarised global result
    return fused, len(todo)


def refine_global_only(model: nn.Module, image: torch.Tensor, mask: torch.Tensor, L: int = 900,
                       min_size: int | None = None, align_corners: bool = False) -> torch.Tensor:
    """Global step only (the fast mode). Returns B x 1 x H x W probabilities.

    Images whose long side is under ``min_size`` (default L) are upscaled to it first (bicubic image,
    bilinear mask) and the output is area-downscaled back; others go through :func:`global_step` and
    the output is resized bilinearly to the input size (``align_corners=True`` in the authors' pip package).
    """
    h, w = image.shape[-2:]
    min_size = L if min_size is None else min_size
    if max(h, w) < min_size:
        image = as_normalized(image)
        up_image, up_mask = resize_max_side(image, min_size, 'bicubic'), resize_max_side(mask, min_size, 'bilinear')
        dev = model_device(model)
        pred = safe_forward(model, up_image.to(dev), up_mask.to(dev), keys=('pred_224',))['pred_224']
        return F.interpolate(pred.to(image.device), size=(h, w), mode='area')
    pred_224, _ = global_step(model, image, mask, L)
    if pred_224.shape[-2:] == (h, w):
        return pred_224
    return _bilinear(pred_224, (h, w), align_corners)


def arbitrate(arbiter: nn.Module, image: torch.Tensor, coarse: torch.Tensor, prob: torch.Tensor) -> torch.Tensor:
    """Run ``arbiter`` (:class:`models.cascadepsp.arbiter.Arbiter`) on each image of a batch.

    image: B x 3 x H x W uint8 or normalised; coarse: B x 1 x H x W in [0, 1] (the input mask is coarse > 0.5);
    prob: B x 1 x H x W cascade output in [0, 1], overwritten where it is a float32 CPU tensor (the cascade's
    output is not needed after; at 96 megapixels each copy is 384 MB). Returns B x 1 x H x W probabilities, on
    prob's device.
    """
    out = prob if prob.dtype == torch.float32 and prob.device.type == 'cpu' else torch.empty_like(prob)
    # The cascade's freed memory, kept for its many passes (util.malloc), is returned first: the arbiter's few
    # large arrays would not fit into it, and it grew a 96-megapixel refinement's peak by 0.8 GiB.
    with returning_freed_memory():
        for b in range(image.shape[0]):
            rgb = (image[b] if image.dtype == torch.uint8 else
                   denormalize_image(image[b:b + 1])[0].mul(255).round_().clamp_(0, 255).byte())
            p = prob[b, 0].float().cpu().numpy()
            result = arbiter(rgb.permute(1, 2, 0).cpu().numpy(), (coarse[b, 0] > 0.5).cpu().numpy(), p,
                             in_place=out is prob)
            if out is not prob:
                out[b, 0] = torch.from_numpy(result)
    return out


@torch.inference_mode()
def refine(model: nn.Module, image: torch.Tensor, coarse: torch.Tensor, cfg: CascadeConfig = CascadeConfig()
           ) -> Refined:
    """CascadePSP's inference: the Global+Local cascade, or the Global step alone (``cfg.global_only``).

    Args:
        model: a three-level refinement module (``cascadepsp`` or ``lite``) in eval mode, on any device.
        image: B x 3 x H x W RGB, normalised float or uint8 0..255 (normalised here, region by region), on the
            aggregation device (normally the CPU); B > 1 refines same-sized images together, each as it would
            be alone.
        coarse: B x 1 x H x W coarse masks in [0, 1] (soft masks stay soft, as in the authors' research
            pipeline), same device.
        cfg: L, stride, crop batch, global_only, min_size, local_levels, arbiter, compat ('pip': the authors'
            pip package).

    A model with an arbiter (:mod:`models.cascadepsp.arbiter`; the bundled ``lite``) has it choose, per pixel
    near the boundaries, between the Global+Local result, the input mask and guided filters of both
    (``cfg.arbiter=False`` skips it; the Global step alone never runs it).

    Returns:
        :class:`Refined` with B x 1 x H x W probabilities and ``stats['crops']``, the local crops run. An
        essentially empty input mask (less than one full foreground pixel) gives an all-zero output, as in
        the authors' eval.py.
    """
    if image.shape[-2:] != coarse.shape[-2:] or image.shape[0] != coarse.shape[0]:
        raise ValueError(f'image {tuple(image.shape)} and mask {tuple(coarse.shape)} differ in size')
    h, w = image.shape[-2:]
    factor = min(math.ceil(TINY_TARGET / min(h, w)), cfg.L // max(h, w)) if min(h, w) < TINY_SIDE else 1
    if factor >= 2:  # a tiny image: the stride-8 levels see (almost) nothing but padding, so refine it enlarged
        image = as_normalized(image)
        big = refine(model, F.interpolate(image, scale_factor=factor, mode='bicubic', align_corners=False),
                     F.interpolate(coarse, scale_factor=factor, mode='bilinear', align_corners=False), cfg)
        return Refined(F.avg_pool2d(big.probs, factor), stats=big.stats)
    mask = (coarse * 2).sub_(1)  # the network's [-1, 1] convention
    pip = cfg.compat == 'pip'  # the authors' pip package: refines an empty mask too
    empty = coarse.flatten(1).sum(1) < (0 if pip else 1)
    if bool(empty.all()):
        return Refined(torch.zeros_like(mask), stats={'crops': 0})
    keep = (~empty).nonzero()[:, 0]
    if not bool(empty.any()):  # nothing to drop: no full-resolution copies
        image_k, mask_k = image, mask
    else:
        image_k, mask_k = image[keep], mask[keep]
    if cfg.global_only:
        prob, crops = refine_global_only(model, image_k, mask_k, cfg.L, cfg.min_size, align_corners=pip), 0
    else:
        pred_224, pred_56 = global_step(model, image_k, mask_k, cfg.L, upscale=pip)
        del mask, mask_k  # full resolution, and the Local step needs only the global result
        prob, crops = local_step(model, image_k, pred_224, pred_56, cfg)
    # After Global+Local only: the arbiter was fitted on that output, and the fast mode is chosen for speed.
    if cfg.arbiter and not cfg.global_only and getattr(model, 'arbiter', None) is not None:
        prob = arbitrate(model.arbiter, image_k, coarse if image_k is image else coarse[keep], prob)
    if image_k is image:
        return Refined(prob, stats={'crops': crops})
    out = torch.zeros(coarse.shape, dtype=prob.dtype, device=prob.device)  # where the input lives
    out[keep] = prob
    return Refined(out, stats={'crops': crops})
