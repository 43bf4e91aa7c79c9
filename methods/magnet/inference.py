"""MagNet's progressive inference (MAGNET.md §6-7): the backbone's prediction on the first scale, then at every
finer scale the uncertain points are replaced by the refinement module's fusion of the backbone's patch
predictions with the upsampled previous result.

    probs, coarse = progressive(system, image_u8, MagNetConfig(scales=[(612, 612), (1224, 1224), (2448, 2448)]))

Every authors' quirk that changes their numbers is kept (Q3-Q8, Q18-Q20); ``fast_as_paper`` fixes the two
MagNet-Fast bugs; the crashes (a float ``n_points`` above the refined area, an even ``smooth_kernel``) are fixed.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dataset.magnet import scale_patches
from methods.base import Refined
from methods.magnet.config import MagNetConfig
from methods.magnet.geometry import (calculate_certainty, ensemble, get_patch_coords, grid_coords,
                                     get_uncertain_point_coords_on_grid, median_blur, point_sample, roi_align)
from models.magnet.system import MagNetSystem
from util.transforms import denormalize_image, normalize_image

#: (stage, error map 1 x 1 x H x W, k) -> flat point indices (1 x k'): tests inject the authors' points here.
PointPicker = Callable[[int, torch.Tensor, int], torch.Tensor]


def _predict(system: MagNetSystem, patches: list[np.ndarray], batch: int, device: torch.device) -> torch.Tensor:
    """softmax(backbone(patches)) in sub-batches: K x C x ih x iw."""
    out = []
    for i in range(0, len(patches), batch):
        x = normalize_image(torch.from_numpy(np.stack(patches[i:i + batch])).permute(0, 3, 1, 2)).to(device)
        out.append(torch.softmax(system.backbone(x), dim=1))
    return torch.cat(out)


def n_points(cfg: MagNetConfig, width: int, height: int, selected: int, total: int) -> int:
    """Points replaced at a W x H stage where ``selected`` of ``total`` patches were refined (MAGNET.md §6.13).
    A count above the refined area, a float and a TypeError in the authors' code (Q7), is capped here."""
    if cfg.n_points > 1:
        return int(min(int(cfg.n_points), width * height * selected / total))
    return int(width * height * cfg.n_points * selected / total)


@torch.no_grad()
def progressive(system: MagNetSystem, image: np.ndarray, cfg: MagNetConfig, pick: PointPicker | None = None,
                trace: list[dict[str, Any]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Refine the backbone's segmentation of ``image`` (H x W x 3 uint8 RGB; its size should be the last scale).

    Returns (refined, coarse) probabilities, each 1 x C x H x W float32: ``coarse`` is the backbone on the first
    scale's first patch, upsampled (the authors' "Coarse IoU"). ``pick`` replaces the top-k point choice (the
    authors' results hang on ``topk`` tie-breaking, MAGNET.md §7.3); ``trace`` receives each stage's
    intermediate values."""
    device = next(system.parameters()).device
    (iw, ih), crop = cfg.input_size, cfg.crop_size
    height, width = image.shape[:2]
    first = scale_patches(image, cfg.scales[0], crop, cfg.input_size)[:1]
    probs = _predict(system, first, 1, device)
    coarse = F.interpolate(probs, size=(height, width), mode='bilinear', align_corners=False)
    if cfg.n_patches == 0:
        return coarse, coarse
    for stage, (w, h) in enumerate(cfg.scales[1:], start=1):
        probs = F.interpolate(probs, size=(h, w), mode='bilinear', align_corners=False)
        ratios = torch.tensor(get_patch_coords((w, h), crop), dtype=torch.float32)
        boxes = ratios * torch.tensor([w, h, w, h], dtype=torch.float32)
        uncertainty = 1 - calculate_certainty(probs)
        patch_uncertainty = roi_align(uncertainty, [boxes], (ih, iw)).mean(dim=(1, 2, 3)).cpu()
        order = torch.sort(patch_uncertainty, descending=cfg.fast_as_paper and cfg.n_patches > 0).indices
        if cfg.n_patches > 0:
            order = order[:cfg.n_patches]  # the authors' ascending sort keeps the least uncertain (Q3)
        patches = scale_patches(image, (w, h), crop, cfg.input_size)
        early = _predict(system, [patches[i] for i in order.tolist()], cfg.sub_batch_size, device)
        crops = roi_align(probs, [boxes[order].to(device)], (ih, iw))
        module, step = system.refinement(stage), cfg.sub_batch_size  # in sub-batches too: 16 patches of 508 x 508
        refined = torch.cat([torch.softmax(module(early[i:i + step], crops[i:i + step]), dim=1)  # at once is 6 GB
                             for i in range(0, len(early), step)])
        fine, mask = ensemble(refined, ratios[order].to(device), (w, h))
        certainty = calculate_certainty(fine)
        if cfg.n_patches > 0:  # the authors zero the refined interiors (Q4); the paper means the rest
            certainty[:, :, ~mask if cfg.fast_as_paper else mask] = 0
        error = certainty * F.interpolate(uncertainty, size=(h, w), mode='bilinear', align_corners=False)
        error_raw = error
        error = median_blur(F.interpolate(error, size=(ih, iw)), cfg.smooth_kernel)
        blurred = error
        error = F.interpolate(error, size=(h, w))
        k = n_points(cfg, w, h, len(order), len(boxes))
        if pick is None:
            index, coords = get_uncertain_point_coords_on_grid(error, k)
        else:
            index = pick(stage, error, k).to(device).view(1, -1)
            coords = grid_coords(index, h, w)
        values = point_sample(fine, coords)
        chosen, kept = index.view(-1), None
        if cfg.n_patches > 0:
            kept = point_sample(mask[None, None].to(fine.dtype), coords).view(-1) != 0
            index, values = index[:, kept], values[:, :, kept]
        c = probs.shape[1]
        probs = probs.reshape(1, c, h * w).scatter(2, index.view(1, 1, -1).expand(1, c, -1), values).view(1, c, h, w)
        if trace is not None:
            trace.append(dict(scale=(w, h), patch_uncertainty=patch_uncertainty, selected_ids=order, early=early,
                              crops=crops, refined=refined, mask=mask, error_raw=error_raw[0, 0], k=k,
                              error_small_blurred=blurred[0, 0], point_indices=chosen, kept=kept, probs=probs))
    refined = F.interpolate(probs, size=(height, width), mode='bilinear', align_corners=False)
    return refined, coarse


def _as_uint8_image(image: torch.Tensor) -> np.ndarray:
    """The contract's 1 x 3 x H x W image (uint8, or float normalised) as H x W x 3 uint8 for OpenCV."""
    if image.dtype == torch.uint8:
        return image[0].permute(1, 2, 0).cpu().numpy()
    rgb = denormalize_image(image[:1].float())[0].clamp(0, 1) * 255
    return rgb.round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def refine(model: MagNetSystem, image: torch.Tensor, coarse: torch.Tensor | None, cfg: MagNetConfig) -> Refined:
    """The method contract: ``image`` 1 x 3 x H x W; ``coarse`` is ignored (MagNet's coarse segmentation is its
    backbone's). ``probs`` = the refined 1 x C x H x W probabilities, ``extra['coarse']`` the backbone's."""
    if image.shape[0] != 1:
        raise ValueError(f'MagNet refines one image at a time, got a batch of {image.shape[0]}')
    refined, backbone = progressive(model, _as_uint8_image(image), cfg)
    return Refined(probs=refined, extra={'coarse': backbone}, stats={'stages': len(cfg.scales) - 1})
