"""The arbiter: a per-pixel choice, at full resolution, between a refined mask and classical alternatives.

A refinement network trained on a CPU budget moves boundaries that were already right (near-right masks from a
x4 segmenter), while a colour guided filter tuned to the mask's coarseness keeps them; on coarser or jittered
masks the network wins. The arbiter learns, per pixel, which to believe. Its inputs at every pixel:

* the candidates: the input mask ``m``, the network's output ``q``, and colour guided filters of both at
  radius (H + W) / 300, / 150, / 75 and eps 1e-4, 1e-3, 1e-2 (the settings a user would try), as logits;
* where the pixel is: signed distances to the boundaries of ``m`` and of ``q`` (units of (H + W) / 300 px,
  clipped to +-8), and the image's gradient magnitude (Sobel, divided by its 99th percentile);
* per image: how much ``q`` and each filter of ``m`` change ``m`` (the pixels that change side, per unit of
  ``m``'s perimeter, log), which tells how coarse the mask is;
* optionally (``evidence``, bundled), whether the image supports a boundary there: the mean
  gradient on the boundary pixels of ``m`` and of ``q`` within 2 units, and their difference; and the pixel's
  colour placed between the mean colours of ``m``'s foreground and background within 3 units (0: the
  background's, 1: the foreground's), with the distance between those means. The worst losses on near-right
  masks were regions whose colour is the background's, cut away where no edge says so.

A small MLP maps them to the probability of the foreground, on the *band* only: the pixels where the candidates
do not all fall on the same side of 0.5 (dilated by one pixel). Elsewhere every candidate agrees and ``q`` is
kept. Optionally (``post_radius``) the result is colour guided-filtered once more, at radius ``post_radius``
units, on the band and around it: the per-pixel choice leaves single-pixel steps that the filter moves onto
the image's edges. It is trained after the network, on the network's outputs (``scripts/train_arbiter.py``),
and saved in the network's checkpoint.

Sizes are relative to the image ((H + W) / 300 px is 2.3 px on a 400 x 300 image, 19 px on 3492 x 2328). Above
half a megapixel the filters are fitted at a stride (He and Sun's fast guided filter), the band is found at that
stride, and the candidates are evaluated at full resolution only around it, so the cost follows the band.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from util.guided_filter import (apply_coefficients, guided_filter, guided_filter_coefficients, pack_coefficients,
                                 unpack_coefficients)
from util.transforms import unit_rgb


#: Pixels per strip of rows, or per chunk of pixels, where a full-resolution intermediate would be large (the
#: gradient's grey image and Sobel responses, the distance maps, the candidates around the band, the final
#: filter's samples): each piece's values are the whole image's, computed piecewise.
_STRIP_PIXELS = 2_000_000
#: Band pixels per pass of the MLP, and per piece of its features.
_MLP_PIXELS = 1 << 16


def _gradient_magnitude(rgb: np.ndarray) -> np.ndarray:
    """H x W float32 Sobel gradient magnitude of the [0, 1] grey image. Above :data:`_STRIP_PIXELS` it is computed
    by strips of rows, each read with one row of context on either side (reflected, as OpenCV's default border,
    only at the image's own edges), so every value is the whole-image computation's while the grey image and both
    Sobel responses exist one strip at a time (at 96 megapixels they were 1.2 GB together)."""
    h, w = rgb.shape[:2]
    rows = max(1, _STRIP_PIXELS // max(w, 1))
    if rows >= h:
        grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
        gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)
        return np.sqrt(gx * gx + gy * gy)
    out = np.empty((h, w), np.float32)
    for y0 in range(0, h, rows):
        y1 = min(h, y0 + rows)
        a, b = max(0, y0 - 1), min(h, y1 + 1)
        grey = cv2.cvtColor(np.ascontiguousarray(rgb[a:b]), cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
        padded = cv2.copyMakeBorder(grey, int(y0 == 0), int(y1 == h), 0, 0, cv2.BORDER_REFLECT_101)
        gx, gy = cv2.Sobel(padded, cv2.CV_32F, 1, 0)[1:-1], cv2.Sobel(padded, cv2.CV_32F, 0, 1)[1:-1]
        out[y0:y1] = np.sqrt(gx * gx + gy * gy)
    return out


def _strips(region: np.ndarray):
    """The pixels (ys, xs) of H x W bool ``region``, row-major, as strips of rows of at most
    :data:`_STRIP_PIXELS` pixels in all: per-pixel work on a large region, a strip's worth of memory at a time."""
    rows = max(1, _STRIP_PIXELS // max(region.shape[1], 1))
    for y0 in range(0, region.shape[0], rows):
        ys, xs = np.nonzero(region[y0:y0 + rows])
        if len(ys):
            yield ys + y0, xs


def _signed_distance(binary: np.ndarray, unit: float, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Distance to the other side at pixels (ys, xs) of H x W bool ``binary`` (ys sorted, as np.nonzero lists
    them), positive inside, in ``unit`` px, clipped to +-8 (float32, one value per pixel).

    Above :data:`_STRIP_PIXELS` the distance maps are computed by strips of rows, each with 8.5 units (and 2 px)
    of rows on either side: OpenCV's 3 x 3 chamfer distance is a sum of fixed-point steps along a path that
    stays within the bounding box of a pixel and its nearest pixel of the other side, so any distance under
    the clip (8 units, at least 0.955 x the Euclidean one) is the whole image's, and one above it is clipped
    either way. At 96 megapixels one map is 384 MB."""
    if not binary.any() or binary.all():  # no boundary at all: everything is far on one side
        return np.full(len(ys), 8.0 if binary.all() else -8.0, np.float32)
    h, w = binary.shape
    context = math.ceil(8.5 * unit) + 2
    rows = max(_STRIP_PIXELS // max(w, 1), 2 * context)
    out = np.empty(len(ys), np.float32)
    for y0 in range(0, h, rows):
        i, j = np.searchsorted(ys, [y0, y0 + rows])
        if i == j:
            continue
        a, b = max(0, y0 - context), min(h, y0 + rows + context)
        strip = np.ascontiguousarray(binary[a:b], dtype=bool).view(np.uint8)
        sy, sx = ys[i:j] - a, xs[i:j]
        inside = cv2.distanceTransform(strip, cv2.DIST_L2, 3)[sy, sx]  # one map at a time
        outside = cv2.distanceTransform(strip ^ 1, cv2.DIST_L2, 3)[sy, sx]
        out[i:j] = np.clip((inside - outside) / unit, -8, 8)
    return out


class Arbiter(nn.Module):
    """Per-pixel MLP over the candidates and cues of the module docstring. The defaults are the bundled arbiter's
    (the training recipe, :class:`methods.cascadepsp.arbiter_recipe.ArbiterConfig`, takes its defaults from here).

    Args:
        radius_per: the filters' radii are (H + W) / each, in px (at least 1).
        eps: the filters' regularisers, squared [0, 1]-RGB units.
        hidden: width of the MLP's two hidden layers.
        image_stats: whether the per-image coarseness cues are inputs.
        max_pixels: above this H x W the filters are fitted at stride s = ceil(sqrt(H x W / max_pixels)) and
            evaluated at full resolution only around the band found at that stride (the evidence cues and the
            final filter too).
        evidence: whether the image-evidence cues are inputs.
        post_radius: radius of the final guided filter, in units of (H + W) / 300 px (0: none).
        post_eps: its regulariser, squared [0, 1]-RGB units.
    """

    def __init__(self, radius_per: tuple[int, ...] = (300, 150, 75), eps: tuple[float, ...] = (1e-4, 1e-3, 1e-2),
                 hidden: int = 64, image_stats: bool = True, max_pixels: int = 500_000, evidence: bool = True,
                 post_radius: float = 0.5, post_eps: float = 1e-3) -> None:
        super().__init__()
        if post_radius < 0 or not post_eps > 0:
            raise ValueError(f'arbiter: post_radius must be at least 0 and post_eps positive; got {post_radius}, '
                             f'{post_eps}')
        self.radius_per, self.eps = tuple(radius_per), tuple(eps)
        self.image_stats, self.max_pixels = image_stats, max_pixels
        self.evidence, self.post_radius, self.post_eps = evidence, post_radius, post_eps
        self.hparams = dict(radius_per=list(radius_per), eps=list(eps), hidden=hidden, image_stats=image_stats,
                            max_pixels=max_pixels, evidence=evidence, post_radius=post_radius, post_eps=post_eps)
        n = self.num_features
        # Feature standardisation, fitted on the training features (saved with the weights).
        self.register_buffer('mean', torch.zeros(n))
        self.register_buffer('std', torch.ones(n))
        self.mlp = nn.Sequential(nn.Linear(n, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

    @property
    def num_candidates(self) -> int:
        return 2 + 2 * len(self.radius_per) * len(self.eps)

    @property
    def num_features(self) -> int:
        settings = len(self.radius_per) * len(self.eps)
        return self.num_candidates + 3 + ((1 + settings) if self.image_stats else 0) + (5 if self.evidence else 0)

    def stride(self, h: int, w: int) -> int:
        """The stride at which an h x w image's filters are fitted (1: at full resolution)."""
        return max(1, math.ceil(math.sqrt(h * w / self.max_pixels)))

    def radii(self, h: int, w: int) -> list[int]:
        """The filters' radii on an h x w image, in px."""
        return [max(1, round((h + w) / per)) for per in self.radius_per]

    def pool(self, rgb: np.ndarray, mask: np.ndarray, prob: np.ndarray) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """Large images: stride s -> (guide, 1 x 3 x h x w RGB in [0, 1]; src, 1 x 2 x h x w mask and output) as
        s x s means (h = ceil(H / s)), for every stride the candidates are fitted at; :meth:`stride` is the finest."""
        h, w = mask.shape
        step = self.stride(h, w)
        strides = sorted({step} | {max(step, r // 4) for r in self.radii(h, w)})
        # Plane by plane, and one colour channel at a time: a float copy of a 96-megapixel RGB image is 1.15 GB
        # (area resizing treats channels independently, so the pooled values are the same).
        sizes = [(math.ceil(w / s), math.ceil(h / s)) for s in strides]
        pooled_rgb: list[list[np.ndarray]] = [[] for _ in strides]
        for c in range(3):
            plane = rgb[..., c].astype(np.float32)
            for k, size in enumerate(sizes):
                pooled_rgb[k].append(cv2.resize(plane, size, interpolation=cv2.INTER_AREA))
            del plane
        planes = (mask.astype(np.float32), np.ascontiguousarray(prob, dtype=np.float32))
        pooled = {}
        for k, (s, size) in enumerate(zip(strides, sizes)):
            mask_s, prob_s = (cv2.resize(p, size, interpolation=cv2.INTER_AREA) for p in planes)
            pooled[s] = (unit_rgb(np.stack(pooled_rgb[k], -1)), torch.from_numpy(np.stack([mask_s, prob_s]))[None])
        return pooled

    @torch.no_grad()
    def features(self, rgb: np.ndarray, mask: np.ndarray, prob: np.ndarray,
                 pooled: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None) -> tuple[torch.Tensor, np.ndarray]:
        """Per-pixel inputs of the MLP, and the band where it decides.

        Args:
            rgb: H x W x 3 uint8 image.
            mask: H x W bool input mask.
            prob: H x W float32 network output in [0, 1].
            pooled: :meth:`pool`'s result, when the caller has it (only used above ``max_pixels``).

        Returns:
            (F x N float32 features of the N band pixels, in row-major order; H x W bool band).
        """
        h, w = mask.shape
        unit = (h + w) / 300
        step = self.stride(h, w)
        radii = self.radii(h, w)
        if step == 1:  # every candidate at every pixel
            guide = unit_rgb(rgb)
            m = torch.from_numpy(mask.astype(np.float32))[None, None]
            q = torch.from_numpy(np.ascontiguousarray(prob, dtype=np.float32))[None, None]
            src = torch.cat([m, q], 1)
            cands = [m, q] + [guided_filter(guide, src, r, eps).clamp_(0, 1) for r in radii for eps in self.eps]
            c = torch.cat(cands, 1)[0]  # candidates: m, q, then per setting the filters of m and of q
            side = c > 0.5
            band = cv2.dilate((side.any(0) & ~side.all(0)).numpy().astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
            small_side, small_mask = side, mask

            def values_at(ys: np.ndarray, xs: np.ndarray) -> torch.Tensor:
                return c[:, ys, xs]
        else:
            pooled = pooled or self.pool(rgb, mask, prob)
            band, small_side, small_mask, coefficients = self._sparse_band(mask, radii, step, pooled, rgb, prob)

            def values_at(ys: np.ndarray, xs: np.ndarray) -> torch.Tensor:
                return self._candidates_at(coefficients, rgb, mask, prob, ys, xs)
        ys, xs = np.nonzero(band)
        if self.image_stats:
            edges = cv2.Canny(np.multiply(mask, 255, dtype=np.uint8), 100, 200)
            perimeter = max(1.0, float(cv2.countNonZero(edges))) / unit
            del edges
            changed = [float((small_side[i].numpy() != small_mask).sum()) * step * step / unit / perimeter
                       for i in [1] + list(range(2, small_side.shape[0], 2))]  # q, then each filter of m
            stats = torch.tensor([math.log(c + 1e-2) for c in changed], dtype=torch.float32)
        # The full-resolution gradient is read here and freed (at 96 megapixels it is 384 MB), before the
        # features are filled in, row by row and the candidates strip by strip: nothing is held twice.
        grad = _gradient_magnitude(rgb)
        scale = np.percentile(grad[::step, ::step], 99) + 1e-3
        grad_band = grad[ys, xs] / scale
        if self.evidence:  # the evidence cues read it at their own resolution
            g = grad / scale if step == 1 else cv2.resize(grad, pooled[step][0].shape[:1:-1],
                                                          interpolation=cv2.INTER_AREA) / scale
        del grad
        x = torch.empty(self.num_features, len(ys))
        k = self.num_candidates
        for i in range(0, len(ys), _MLP_PIXELS):
            x[:k, i:i + _MLP_PIXELS] = torch.logit(values_at(ys[i:i + _MLP_PIXELS], xs[i:i + _MLP_PIXELS]), eps=0.005)
        x[k] = torch.from_numpy(_signed_distance(mask, unit, ys, xs))
        x[k + 1] = torch.from_numpy(_signed_distance(prob > 0.5, unit, ys, xs))
        x[k + 2] = torch.from_numpy(grad_band)
        k += 3
        if self.image_stats:
            x[k:k + len(stats)] = stats[:, None]
            k += len(stats)
        if self.evidence:
            x[k:] = self._evidence(rgb, mask, prob, g, ys, xs, unit, step, pooled)
        return x, band

    @staticmethod
    def _evidence(rgb: np.ndarray, mask: np.ndarray, prob: np.ndarray, g: np.ndarray,
                  ys: np.ndarray, xs: np.ndarray, unit: float, step: int,
                  pooled: dict[int, tuple[torch.Tensor, torch.Tensor]] | None) -> torch.Tensor:
        """The image-evidence cues (module docstring) at pixels (ys, xs): 5 x N float32. ``g``: the normalised
        gradient magnitude, ~[0, 1], H x W, or at ``step`` > 1 its ``step`` x ``step`` means: above ``max_pixels``
        the cues are computed on the means of ``pooled``, as they are averages over windows of 2-3 units."""
        if step == 1:
            m, q = mask.astype(np.float32), np.ascontiguousarray(prob, dtype=np.float32)
            colour = rgb.astype(np.float32) / 255
        else:
            guide, src = pooled[step]
            m, q = src[0].numpy()
            colour = np.ascontiguousarray(guide[0].permute(1, 2, 0).numpy())
        iy, ix = ys // step, xs // step
        cross = np.ones((3, 3), np.uint8)

        def box(x: np.ndarray, radius_units: float) -> np.ndarray:
            k = 2 * max(1, round(radius_units * unit / step)) + 1
            return cv2.blur(x, (k, k), borderType=cv2.BORDER_REFLECT)

        support = []  # mean gradient on each boundary within 2 units
        for side in (m > 0.5, q > 0.5):
            b = side.view(np.uint8) if side.flags.c_contiguous else side.astype(np.uint8)
            edge = (cv2.dilate(b, cross) - cv2.erode(b, cross)).astype(np.float32)
            support.append((box(g * edge, 2) / (box(edge, 2) + 1e-3))[iy, ix])
        fg_share = box(m, 3)
        fg = box(colour * m[..., None], 3) / (fg_share[..., None] + 1e-3)
        bg = box(colour * (1 - m)[..., None], 3) / (1 - fg_share[..., None] + 1e-3)
        d, c = (fg - bg)[iy, ix], colour[iy, ix] - bg[iy, ix]
        separation = (d * d).sum(1)
        placed = np.clip((c * d).sum(1) / (separation + 1e-3), -1, 2)
        return torch.from_numpy(np.stack([support[0], support[1], support[1] - support[0], placed,
                                          np.sqrt(separation)]).astype(np.float32))

    def _sparse_band(self, mask: np.ndarray, radii: list[int], step: int,
                     pooled: dict[int, tuple[torch.Tensor, torch.Tensor]], rgb: np.ndarray, prob: np.ndarray
                     ) -> tuple[np.ndarray, torch.Tensor, np.ndarray, list[torch.Tensor]]:
        """Large images: the filters are fitted on ``step`` x ``step`` means (the fast guided filter), the band is
        found at that resolution, and the candidates are evaluated at full resolution only around it.

        Returns (H x W bool band, 20 x h x w sides of 0.5 of the candidates at the pooled resolution, h x w bool
        pooled mask, the filters' packed coefficients for :meth:`_candidates_at`)."""
        h, w = mask.shape
        small_guide, small_src = pooled[step]
        coefficients = []  # per setting: (a, b) packed, on the pooled grid, 1 x (3 * 2 + 2) x h x w
        for r in radii:
            # Wide windows are fitted coarser still (a radius of 4 cells at least): their coefficients vary slowly.
            s_r = max(step, r // 4)
            g_r, src_r = pooled[s_r]
            for eps in self.eps:
                a, b = guided_filter_coefficients(g_r, src_r, max(1, r // s_r), eps)
                ab = pack_coefficients(a, b)
                if s_r != step:
                    ab = F.interpolate(ab, size=small_guide.shape[-2:], mode='bilinear', align_corners=False)
                coefficients.append(ab)
        small = torch.cat([small_src] + [apply_coefficients(*unpack_coefficients(ab, 3), small_guide).clamp_(0, 1)
                                         for ab in coefficients], 1)[0]
        small_side = small > 0.5
        small_band = (small_side.any(0) & ~small_side.all(0)).numpy().astype(np.uint8)
        # Full-resolution pixels within a pooled cell (and one more) of the pooled band.
        region = cv2.resize(small_band, (small_band.shape[1] * step, small_band.shape[0] * step),
                            interpolation=cv2.INTER_NEAREST)[:h, :w]
        region = cv2.dilate(region, np.ones((2 * step + 1, 2 * step + 1), np.uint8)) > 0
        # Strip by strip, where the candidates disagree (their values on the whole region at once were 20 floats
        # for each of 10 M pixels on a 96-megapixel photo); :meth:`features` evaluates them again on the band.
        disagree = np.zeros((h, w), np.uint8)
        for ry, rx in _strips(region):
            side = self._candidates_at(coefficients, rgb, mask, prob, ry, rx) > 0.5
            d = (side.any(0) & ~side.all(0)).numpy()
            disagree[ry[d], rx[d]] = 1
        band = (cv2.dilate(disagree, np.ones((3, 3), np.uint8)) > 0) & region
        return band, small_side, small_side[0].numpy(), coefficients

    def _candidates_at(self, coefficients: list[torch.Tensor], rgb: np.ndarray, mask: np.ndarray, prob: np.ndarray,
                       ry: np.ndarray, rx: np.ndarray) -> torch.Tensor:
        """The candidates at full-resolution pixels (ry, rx): 20 x n float32 (the mask, the output, then the
        filters of both per setting, fitted on the pooled grid: :meth:`_filter_at`)."""
        return torch.cat([torch.from_numpy(np.stack([mask[ry, rx].astype(np.float32),
                                                      np.asarray(prob[ry, rx], np.float32)]))]
                         + self._filter_at(coefficients, rgb, ry, rx), 0)

    @torch.no_grad()
    def forward(self, rgb: np.ndarray, mask: np.ndarray, prob: np.ndarray, in_place: bool = False) -> np.ndarray:
        """The arbitrated probabilities (H x W float32 in [0, 1]): ``prob`` off the band, the MLP's on it.
        Arguments as in :meth:`features`; ``in_place``: written into ``prob`` itself (a float32 array), which every
        cue has read by then (a copy of a 96-megapixel output is 384 MB)."""
        if in_place and prob.dtype != np.float32:
            raise ValueError(f'arbiter: in_place needs a float32 output, got {prob.dtype}')
        pooled = self.pool(rgb, mask, prob) if self.stride(*mask.shape) > 1 else None
        x, band = self.features(rgb, mask, prob, pooled)
        out = prob if in_place else np.array(prob, dtype=np.float32, copy=True)
        if x.shape[1]:
            out[band] = self.decide(x)
            if self.post_radius:
                self._post_filter(rgb, out, band, pooled)
        return out

    @torch.no_grad()
    def decide(self, x: torch.Tensor) -> np.ndarray:
        """The MLP's foreground probabilities (N float32 in [0, 1]) for F x N features, in chunks of
        :data:`_MLP_PIXELS` pixels: each pixel's value is computed alone, and its hidden layers at 2.6 M band
        pixels (a 96-megapixel photo) were 1.3 GB at once."""
        out = np.empty(x.shape[1], np.float32)
        for i in range(0, x.shape[1], _MLP_PIXELS):
            chunk = ((x[:, i:i + _MLP_PIXELS].T - self.mean) / self.std).to(self.mean.dtype)
            out[i:i + _MLP_PIXELS] = torch.sigmoid(self.mlp(chunk)[:, 0]).float().numpy()
        return out

    def _post_filter(self, rgb: np.ndarray, out: np.ndarray, band: np.ndarray,
                     pooled: dict[int, tuple[torch.Tensor, torch.Tensor]] | None) -> None:
        """Guided-filter H x W ``out`` in place, within the filter's reach (2r) of the band, where r is
        ``post_radius`` units; above ``max_pixels`` fitted at a stride on ``pooled``'s guide, as the candidates are."""
        h, w = out.shape
        r = max(1, round(self.post_radius * (h + w) / 300))
        step = self.stride(h, w)
        region = cv2.dilate(band.view(np.uint8), np.ones((4 * r + 1, 4 * r + 1), np.uint8)) > 0
        if step == 1:
            ry, rx = np.nonzero(region)
            guide = unit_rgb(rgb)
            filtered = guided_filter(guide, torch.from_numpy(out)[None, None], r, self.post_eps)[0, 0]
            out[ry, rx] = filtered.clamp_(0, 1).numpy()[ry, rx]
            return
        small_guide = pooled[step][0]
        small_out = torch.from_numpy(cv2.resize(out, small_guide.shape[:1:-1], interpolation=cv2.INTER_AREA))
        a, b = guided_filter_coefficients(small_guide, small_out[None, None], max(1, r // step), self.post_eps)
        ab = pack_coefficients(a, b)
        for ry, rx in _strips(region):  # the coefficients are fitted: writing into ``out`` changes none
            out[ry, rx] = self._filter_at([ab], rgb, ry, rx)[0][0].numpy()

    @staticmethod
    def _filter_at(coefficients: list[torch.Tensor], rgb: np.ndarray, ry: np.ndarray, rx: np.ndarray
                   ) -> list[torch.Tensor]:
        """Guided filters fitted on a pooled grid (each a packed (a, b), 1 x (3K + K) x h x w), evaluated at the
        full-resolution pixels (ry, rx) of H x W x 3 uint8 ``rgb``: the coefficients sampled bilinearly there, as
        F.interpolate(align_corners=False) would, and applied to the pixels' colours. K x N each, in [0, 1]."""
        h, w = rgb.shape[:2]
        parts: list[list[torch.Tensor]] = [[] for _ in coefficients]
        for i in range(0, max(len(ry), 1), _STRIP_PIXELS):  # pixel by pixel: chunks give the same values
            cy, cx = ry[i:i + _STRIP_PIXELS], rx[i:i + _STRIP_PIXELS]
            grid = torch.stack([torch.from_numpy((2 * cx + 1) / w - 1), torch.from_numpy((2 * cy + 1) / h - 1)], -1)
            grid = grid.float()[None, None]
            pixels = torch.from_numpy(rgb[cy, cx].astype(np.float32)).T[None] / 255  # 1 x 3 x n
            for k, ab in enumerate(coefficients):
                ab = F.grid_sample(ab, grid, mode='bilinear', padding_mode='border', align_corners=False)[:, :, 0]
                parts[k].append(apply_coefficients(*unpack_coefficients(ab, 3), pixels)[0].clamp_(0, 1))
        return [torch.cat(p, -1) for p in parts]
