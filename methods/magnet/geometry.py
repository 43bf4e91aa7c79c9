"""MagNet's helpers in plain torch (MAGNET.md §4-5): patch boxes, certainty, uncertain points, point sampling,
the patch ensemble, the median blur and ``roi_align`` (torchvision's, ``aligned=False``; torchvision cannot be
imported on CPU-only machines here).

Sizes are written (w, h) where the authors do; tensors are N x C x H x W.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from dataset.magnet import pixel_boxes


def get_patch_coords(size_wh: tuple[int, int], crop_wh: tuple[int, int]) -> list[tuple[float, float, float, float]]:
    """Ratio boxes (x0/W, y0/H, x1/W, y1/H) of the tiling of a W x H scale by W_c x H_c crops, x-major
    (patch id = x * n_y + y): :func:`dataset.magnet.pixel_boxes` divided by the scale's size (the authors'
    ``int`` step can leave the last rows/columns uncovered, MAGNET.md Q8)."""
    w, h = size_wh
    return [(x0 / w, y0 / h, x1 / w, y1 / h) for x0, y0, x1, y1 in pixel_boxes(size_wh, crop_wh)]


def calculate_certainty(probs: torch.Tensor) -> torch.Tensor:
    """probs: N x C x H x W -> N x 1 x H x W, top-1 minus top-2 probability (C >= 2)."""
    top2 = torch.topk(probs, k=2, dim=1).values
    return (top2[:, 0] - top2[:, 1]).unsqueeze(1)


def get_uncertain_point_coords_on_grid(uncertainty: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k most uncertain cells of ``uncertainty`` (R x 1 x H x W): (flat indices R x k', coords R x k' x 2
    as (x, y) cell centres in [0, 1]), k' = min(k, H * W).

    Ties are broken by ``torch.topk(sorted=False)`` as in the authors' code (MAGNET.md §5.2, §7.3); points are
    listed by distance from (0, 0), as theirs (the order does not matter downstream)."""
    r, _, h, w = uncertainty.shape
    k = min(h * w, k)
    if k == h * w:
        idx = torch.arange(h * w, device=uncertainty.device).expand(r, h * w)
    else:
        idx = torch.topk(uncertainty.view(r, h * w), k=k, dim=1, sorted=False).indices
    coords = grid_coords(idx, h, w)
    order = torch.argsort(torch.sqrt(coords[:, :, 0] ** 2 + coords[:, :, 1] ** 2), dim=1)
    return torch.gather(idx, 1, order), torch.gather(coords, 1, order.unsqueeze(-1).expand(-1, -1, 2))


def point_sample(x: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of x (N x C x H x W) at ``coords`` (N x P x 2 or N x Hp x Wp x 2, (x, y) in [0, 1],
    zero outside) -> N x C x P (or N x C x Hp x Wp). ``F.grid_sample`` itself, as the authors: its rounding
    decides which pixels next to a patch read a tiny non-zero value (MAGNET.md §5.3)."""
    flat = coords.dim() == 3
    grid = coords.unsqueeze(2) if flat else coords
    out = F.grid_sample(x, 2.0 * grid - 1.0, align_corners=False)
    return out.squeeze(3) if flat else out


def ensemble(patches: torch.Tensor, ratios: torch.Tensor, size_wh: tuple[int, int]
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste K patches (K x C x h x w) at their ratio boxes (K x 4, or 4 for one) on a W x H canvas.

    Returns (1 x C x H x W, H x W bool covered mask). As the authors (MAGNET.md §5.4, Q5, Q6): every patch is
    resized to the *first* box's pixel size; a later patch overwrites an earlier one; the count only covers
    each box's interior (a 10-px margin) and the output is divided by it, so overlaps are not averaged."""
    if ratios.dim() == 1:
        ratios = ratios.unsqueeze(0)
    w, h = size_wh
    scale = torch.tensor([w, h, w, h], dtype=ratios.dtype, device=ratios.device)
    boxes = (ratios * scale).round().long().tolist()
    output = torch.zeros(1, patches.shape[1], h, w, dtype=patches.dtype, device=patches.device)
    count = torch.zeros(h, w, dtype=patches.dtype, device=patches.device)
    x0, y0, x1, y1 = boxes[0]
    patches = F.interpolate(patches, size=(y1 - y0, x1 - x0), mode='bilinear', align_corners=False)
    for patch, (x0, y0, x1, y1) in zip(patches, boxes):
        output[0, :, y0:y1, x0:x1] = patch
        count[y0 + 10:y1 - 10, x0 + 10:x1 - 10] += 1
    return output / count.clamp(min=1), count > 0


def median_blur(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """Median of every kernel x kernel zero-padded window of x (N x C x H x W), the lower median for even
    counts (kornia's ``MedianBlur``, as the authors use it). An even kernel, which scrambles or crashes theirs
    (MAGNET.md Q9), pads one pixel less before than after, so the output keeps the input's size."""
    if kernel < 1:
        raise ValueError(f'the median kernel must be at least 1 pixel, got {kernel}')
    n, c, h, w = x.shape
    before, after = (kernel - 1) // 2, kernel // 2
    padded = F.pad(x.reshape(n * c, 1, h, w), (before, after, before, after))
    windows = F.unfold(padded, kernel)  # (N C) x k^2 x H W
    return windows.median(dim=1).values.view(n, c, h, w)


#: Elements of one bilinear tap (channels x boxes x samples) gathered at once by :func:`roi_align`.
_ROI_ELEMENTS = 1 << 24


def roi_align(x: torch.Tensor, boxes: list[torch.Tensor], output_size: tuple[int, int]) -> torch.Tensor:
    """torchvision's ``roi_align(x, boxes, output_size)`` with its defaults (spatial_scale 1, sampling_ratio -1,
    ``aligned=False``; MAGNET.md §5.6, Q19), in float32.

    x: N x C x H x W; boxes: one K_n x 4 tensor per image, (x1, y1, x2, y2) in pixels of x (pixel centres at
    integers); output_size (oh, ow). Returns (sum K_n) x C x oh x ow, boxes in order.

    Boxes with the same sampling grid (the same ceil(size / output) per axis: all of MagNet's boxes at a scale)
    are sampled together, as many at a time as :data:`_ROI_ELEMENTS` allows; each value is computed with the
    same operations as box by box."""
    oh, ow = output_size
    _, c, height, width = x.shape
    out = []
    for n, image_boxes in enumerate(boxes):
        b = image_boxes.to(torch.float32).cpu().reshape(-1, 4)
        if not len(b):
            continue
        roi_w, roi_h = torch.clamp(b[:, 2] - b[:, 0], min=1.0), torch.clamp(b[:, 3] - b[:, 1], min=1.0)
        bw, bh = roi_w / ow, roi_h / oh
        gw, gh = torch.ceil(roi_w / ow).long(), torch.ceil(roi_h / oh).long()
        flat = x[n].reshape(c, height * width)
        result = x.new_empty(len(b), c, oh, ow)
        for g_h, g_w in sorted(set(zip(gh.tolist(), gw.tolist()))):
            group = ((gh == g_h) & (gw == g_w)).nonzero()[:, 0]
            step = max(1, _ROI_ELEMENTS // max(1, c * oh * g_h * ow * g_w))
            for part in group.split(step):
                _, (y_lo, y_hi, ly, vy) = _axis(b[part, 1:2], bh[part, None], g_h, oh, height)
                _, (x_lo, x_hi, lx, vx) = _axis(b[part, 0:1], bw[part, None], g_w, ow, width)
                hy, hx = 1 - ly, 1 - lx
                wy = [t.to(x.device)[None, :, :, None] for t in (hy, ly)]  # 1 x K x Sy x 1
                wx = [t.to(x.device)[None, :, None, :] for t in (hx, lx)]  # 1 x K x 1 x Sx

                def tap(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:  # C x K x Sy x Sx
                    return flat[:, (rows[:, :, None] * width + cols[:, None, :]).to(x.device)]

                sample = (wy[0] * wx[0] * tap(y_lo, x_lo) + wy[0] * wx[1] * tap(y_lo, x_hi)
                          + wy[1] * wx[0] * tap(y_hi, x_lo) + wy[1] * wx[1] * tap(y_hi, x_hi))
                valid = (vy[:, :, None] & vx[:, None, :]).to(x.device).to(x.dtype)
                sample = (sample * valid).view(c, len(part), oh, g_h, ow, g_w)
                result[part.to(x.device)] = (sample.sum(dim=(3, 5)) / max(g_h * g_w, 1)).transpose(0, 1)
        out.append(result)
    if not out:
        return x.new_zeros(0, c, oh, ow)
    return torch.cat(out)


def _axis(start: torch.Tensor, bin_size: torch.Tensor, grid: int, bins: int, size: int):
    """Sample positions along one axis of boxes (``start`` and ``bin_size``: K x 1, or scalars for one box; bins x
    grid positions each) and their bilinear taps: (positions, (low index, high index, fraction, valid)), each
    K x (bins x grid)."""
    p = torch.arange(bins, dtype=torch.float32).repeat_interleave(grid)
    i = torch.arange(grid, dtype=torch.float32).repeat(bins)
    pos = start + p * bin_size + (i + 0.5) * bin_size / grid
    valid = (pos >= -1.0) & (pos <= size)
    pos = pos.clamp(min=0.0)
    low = pos.long()
    edge = low >= size - 1
    low = torch.where(edge, torch.full_like(low, size - 1), low)
    high = torch.where(edge, low, low + 1)
    pos = torch.where(edge, low.to(torch.float32), pos)
    return pos, (low, high, pos - low.to(torch.float32), valid)


def grid_coords(index: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Cell centres (x, y) in [0, 1] of flat indices (R x k) on an H x W grid: R x k x 2 float32, computed as
    :func:`get_uncertain_point_coords_on_grid` computes them."""
    w_step, h_step = 1.0 / float(width), 1.0 / float(height)
    coords = torch.zeros(*index.shape, 2, dtype=torch.float32, device=index.device)
    coords[..., 0] = w_step / 2.0 + (index % width).to(torch.float32) * w_step
    coords[..., 1] = h_step / 2.0 + torch.div(index, width, rounding_mode='floor').to(torch.float32) * h_step
    return coords
