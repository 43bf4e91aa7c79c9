"""The guided filter (He et al., ECCV 2010 / TPAMI 2013) in PyTorch, differentiable.

One implementation serves two uses: the classical colour guided filter that ``scripts/benchmark_learning.py``
compares against, and the edge-aware full-resolution step of the ``lite`` architecture (a learnable guided
filter, after Wu et al., CVPR 2018). Box means are separable cumulative sums, so the cost per pixel does not
depend on the radius, and each sum runs along one axis only (no float32 precision loss over whole images).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _box_sum_1d(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """Sum over the window [i - r, i + r] along ``dim``, clipped at the borders: C[min(i + r, n - 1)] -
    C[i - r - 1] (0 for i <= r) with C the inclusive cumulative sum, written by slices of C into one output
    (slices, not gathers, and no padded copy of C; the values of the padded formulation, bit for bit)."""
    dim = dim % x.dim()
    n = x.shape[dim]
    c = torch.cumsum(x, dim)
    out = torch.empty_like(c)
    top = max(0, n - r)  # positions whose window ends inside: C[i + r]
    if top:
        out.narrow(dim, 0, top).copy_(c.narrow(dim, r, top))
    if top < n:  # windows that run past the end: the total
        out.narrow(dim, top, n - top).copy_(c.narrow(dim, n - 1, 1).expand_as(out.narrow(dim, top, n - top)))
    if r + 1 < n:  # windows that start after the beginning lose what comes before them
        out.narrow(dim, r + 1, n - r - 1).sub_(c.narrow(dim, 0, n - r - 1))
    return out


def _box_count_1d(n: int, r: int, like: torch.Tensor) -> torch.Tensor:
    """How many of the window's 2r + 1 positions fall inside [0, n), for each of the n positions."""
    idx = torch.arange(n, device=like.device)
    return ((idx + r).clamp(max=n - 1) - (idx - r).clamp(min=0) + 1).to(like.dtype)


def box_mean(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over the (2r+1) x (2r+1) window around each pixel of B x C x H x W ``x``; windows are
    clipped at the image border and averaged over the pixels they keep."""
    h, w = x.shape[-2:]
    count = _box_count_1d(h, r, x)[:, None] * _box_count_1d(w, r, x)[None, :]
    return _box_sum_1d(_box_sum_1d(x, r, -1), r, -2) / count


def _coefficients(guide: torch.Tensor, src: torch.Tensor, r: int, eps: float | torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The box means of the linear coefficients: a (B x C x K x H x W, one per guide channel) and b (B x K x H x W)."""
    mean_i, mean_p = box_mean(guide, r), box_mean(src, r)
    channels, k = guide.shape[1], src.shape[1]

    def outer(g: torch.Tensor, p: torch.Tensor) -> torch.Tensor:  # B x (C * K), guide channel major
        return (g.unsqueeze(2) * p.unsqueeze(1)).flatten(1, 2)
    # cov(guide channel c, src), B x K each; one box filter over all C x K products.
    cov_ip = box_mean(outer(guide, src), r) - outer(mean_i, mean_p)
    if channels == 1:
        a = cov_ip / (box_mean(guide * guide, r) - mean_i * mean_i + eps)
    else:
        # Covariance entries (rr, rg, rb, gg, gb, bb), regularised on the diagonal.
        pairs = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))
        prods = torch.cat([guide[:, i:i + 1] * guide[:, j:j + 1] for i, j in pairs], 1)
        cov = box_mean(prods, r) - torch.cat([mean_i[:, i:i + 1] * mean_i[:, j:j + 1] for i, j in pairs], 1)
        rr, rg, rb, gg, gb, bb = cov.split(1, 1)
        rr, gg, bb = rr + eps, gg + eps, bb + eps
        # Inverse of the symmetric 3 x 3 matrix via its adjugate.
        inv = (gg * bb - gb * gb, gb * rb - rg * bb, rg * gb - gg * rb,
               rr * bb - rb * rb, rb * rg - rr * gb, rr * gg - rg * rg)
        det = rr * inv[0] + rg * inv[1] + rb * inv[2]
        i_rr, i_rg, i_rb, i_gg, i_gb, i_bb = inv
        cr, cg, cb = cov_ip.split(k, 1)
        a = torch.cat([i_rr * cr + i_rg * cg + i_rb * cb,
                       i_rg * cr + i_gg * cg + i_gb * cb,
                       i_rb * cr + i_gb * cg + i_bb * cb], 1).unflatten(1, (channels, k)) / det.unsqueeze(1)
        a = a.flatten(1, 2)
    b = mean_p - (a.unflatten(1, (channels, k)) * mean_i.unsqueeze(2)).sum(1)
    return box_mean(a, r).unflatten(1, (channels, k)), box_mean(b, r)


def guided_filter(guide: torch.Tensor, src: torch.Tensor, r: int, eps: float | torch.Tensor,
                  step: int = 1) -> torch.Tensor:
    """Filter each channel of ``src`` (B x K x H x W) with the edges of ``guide`` (B x 1 x H x W or B x 3 x H x W).

    The output (B x K x H x W) is locally a linear function of the guide, q = mean(a) . guide + mean(b), with
    (a, b) the least-squares fit of src on the guide in each (2r+1)^2 window, regularised by ``eps`` (in squared
    guide units: 1e-4 for a guide in [0, 1] keeps edges of contrast above about 0.01). With a colour guide, a is
    a 3-vector and the fit solves a 3 x 3 system per pixel (closed form, via the adjugate). The guide's
    statistics are computed once for all K channels.

    ``step`` > 1: the fast guided filter (He & Sun 2015): (a, b) are fitted on ``step`` x ``step`` area means of
    the guide and source, at radius ``max(1, r // step)`` there, then bilinearly upsampled and applied to the
    full-resolution guide, which keeps its edges; the full-resolution cost no longer grows with the statistics.
    """
    a, b = guided_filter_coefficients(guide, src, r, eps, step)
    if step > 1:
        up = F.interpolate(pack_coefficients(a, b), size=guide.shape[-2:], mode='bilinear', align_corners=False)
        a, b = unpack_coefficients(up, guide.shape[1])
    return apply_coefficients(a, b, guide)


def apply_coefficients(a: torch.Tensor, b: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """The filter's output from its coefficients: (a . guide) over the guide's C channels, plus b.

    a: B x C x K x *S, b: B x K x *S, guide: B x C x *S, for any trailing shape S (H x W, or N sampled pixels).
    Returns B x K x *S."""
    return (a * guide.unsqueeze(2)).sum(1) + b


def pack_coefficients(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(a, b) as one B x (C * K + K) x *S tensor, to resample both at once; :func:`unpack_coefficients` undoes it."""
    return torch.cat((a.flatten(1, 2), b), 1)


def unpack_coefficients(ab: torch.Tensor, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`pack_coefficients` for a guide of ``channels`` channels."""
    k = ab.shape[1] // (channels + 1)
    return ab[:, :-k].unflatten(1, (channels, k)), ab[:, -k:]


def guided_filter_coefficients(guide: torch.Tensor, src: torch.Tensor, r: int, eps: float | torch.Tensor,
                               step: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The box-averaged coefficients of :func:`guided_filter`: (a, B x C x K x h x w; b, B x K x h x w), so that
    the output is (a . guide) summed over C, plus b. With ``step`` > 1 they are at the ``step`` x ``step``-pooled
    resolution (h = ceil(H / step)), to be bilinearly upsampled (or sampled where needed) at full resolution."""
    if guide.shape[-2:] != src.shape[-2:] or guide.shape[1] not in (1, 3) or src.dim() != 4 or step < 1:
        raise ValueError(f'guided_filter: guide {tuple(guide.shape)} and src {tuple(src.shape)} must be '
                         f'B x 1|3 x H x W and B x K x H x W of one size, step ({step}) at least 1')
    if step == 1:
        return _coefficients(guide, src, r, eps)
    return _coefficients(F.avg_pool2d(guide, step, ceil_mode=True), F.avg_pool2d(src, step, ceil_mode=True),
                         max(1, r // step), eps)
