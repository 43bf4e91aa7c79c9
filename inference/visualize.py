"""One PNG panel that shows what a refinement did (shared by ``refine.py --visualize`` and
``eval.py --visualize``).

Layout, 2 x 2 tiles with a caption above each:
  image | coarse mask (red overlay)
  refined mask (green overlay, its boundary in green; the ground truth's boundary in yellow when given)
        | zoom on the window where coarse and refined masks differ most (coarse boundary red, refined green)
"""
from __future__ import annotations

import cv2
import numpy as np

_RED, _GREEN, _YELLOW, _WHITE = (230, 40, 40), (40, 210, 60), (250, 220, 0), (255, 255, 255)
_CAPTION = 28  # caption strip height (pixels)


def _overlay(image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], alpha: float = 0.45) -> np.ndarray:
    out = image.astype(np.float32)
    m = (mask > 127)[..., None]
    out = np.where(m, out * (1 - alpha) + np.array(colour, np.float32) * alpha, out * 0.85)
    return out.astype(np.uint8)


def _draw_boundary(image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], thickness: int = 1) -> np.ndarray:
    contours, _ = cv2.findContours((mask > 127).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    return cv2.drawContours(np.ascontiguousarray(image), contours, -1, colour, thickness)


def difference_window(coarse: np.ndarray, refined: np.ndarray, size: int) -> tuple[int, int, int, int]:
    """The size x size window (y0, y1, x0, x1; clipped to the image) holding the most pixels where the
    binarised coarse and refined masks disagree."""
    h, w = coarse.shape
    diff = ((coarse > 127) != (refined > 127)).astype(np.float32)
    size = max(1, min(size, h, w))
    density = cv2.boxFilter(diff, -1, (size, size), normalize=False, borderType=cv2.BORDER_CONSTANT)
    cy, cx = np.unravel_index(int(np.argmax(density)), density.shape)
    y0, x0 = min(max(0, cy - size // 2), h - size), min(max(0, cx - size // 2), w - size)
    return y0, y0 + size, x0, x0 + size


def _fit(tile: np.ndarray, width: int, height: int, nearest: bool = False) -> np.ndarray:
    """Scale to fit width x height (aspect kept), centred on black."""
    h, w = tile.shape[:2]
    scale = min(width / w, height / h)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    tile = cv2.resize(tile, (nw, nh), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)
    out = np.zeros((height, width, 3), np.uint8)
    oy, ox = (height - nh) // 2, (width - nw) // 2
    out[oy:oy + nh, ox:ox + nw] = tile
    return out


def _captioned(tile: np.ndarray, text: str) -> np.ndarray:
    strip = np.full((_CAPTION, tile.shape[1], 3), 24, np.uint8)
    cv2.putText(strip, text, (6, _CAPTION - 9), cv2.FONT_HERSHEY_SIMPLEX, 0.55, _WHITE, 1, cv2.LINE_AA)
    return np.concatenate([strip, tile], 0)


def refinement_panel(image: np.ndarray, coarse: np.ndarray, refined: np.ndarray, gt: np.ndarray | None = None,
                     max_tile: int = 1024) -> np.ndarray:
    """The panel as an RGB uint8 array.

    Args:
        image: H x W x 3 uint8 RGB; coarse, refined, gt: H x W uint8 masks (binarised at 127 for drawing).
        max_tile: long side of each tile at most (large images are shown downscaled; small ones as they are).
    """
    h, w = coarse.shape
    scale = min(1.0, max_tile / max(h, w))
    th, tw = max(1, round(h * scale)), max(1, round(w * scale))
    thick = max(1, round(max(h, w) / 500))
    refined_view = _draw_boundary(_overlay(image, refined, _GREEN), refined, _GREEN, thick)
    if gt is not None:
        refined_view = _draw_boundary(refined_view, gt, _YELLOW, thick)
    y0, y1, x0, x1 = difference_window(coarse, refined, max(16, min(h, w) // 4))
    zoom = _draw_boundary(_draw_boundary(image[y0:y1, x0:x1].copy(), coarse[y0:y1, x0:x1], _RED),
                          refined[y0:y1, x0:x1], _GREEN)
    changed = float(((coarse > 127) != (refined > 127)).mean()) * 100
    tiles = [
        _captioned(_fit(image, tw, th), 'image'),
        _captioned(_fit(_overlay(image, coarse, _RED), tw, th), 'coarse mask'),
        _captioned(_fit(refined_view, tw, th), 'refined' + (' (yellow: ground truth)' if gt is not None else '')
                   + f', {changed:.1f}% of pixels changed'),
        _captioned(_fit(zoom, tw, th, nearest=True), f'zoom y{y0}:{y1} x{x0}:{x1} (red: coarse, green: refined)'),
    ]
    gap = np.zeros((th + _CAPTION, 4, 3), np.uint8)
    rows = [np.concatenate([tiles[0], gap, tiles[1]], 1), np.concatenate([tiles[2], gap, tiles[3]], 1)]
    return np.concatenate([rows[0], np.zeros((4, rows[0].shape[1], 3), np.uint8), rows[1]], 0)


def comparison_panel(image: np.ndarray, gt: np.ndarray, outputs: dict[str, np.ndarray],
                     window: tuple[int, int, int, int] | None = None, tile: int = 384) -> np.ndarray:
    """Several refinements of one image side by side, as an RGB uint8 array: the image with the ground
    truth's boundary (yellow) and the zoom window (white box), then, per output, the window enlarged with the
    ground truth's boundary (yellow) and the output's (green), captioned with its label.

    Args:
        image: H x W x 3 uint8 RGB; gt and each output: H x W uint8 masks (binarised at 127).
        window: (y0, y1, x0, x1) to zoom on; default: the quarter-size window where the last two outputs
            disagree most.
        tile: side of each square tile, in pixels.
    """
    h, w = gt.shape
    if window is None:
        masks = list(outputs.values())
        window = difference_window(masks[-2] if len(masks) > 1 else gt, masks[-1], max(16, min(h, w) // 4))
    y0, y1, x0, x1 = window
    thick = max(1, round(max(h, w) / 300))
    overview = _draw_boundary(image.copy(), gt, _YELLOW, thick)
    cv2.rectangle(overview, (x0, y0), (x1 - 1, y1 - 1), _WHITE, thick)
    tiles = [_captioned(_fit(overview, tile, tile), 'ground truth (yellow)')]
    # Enlarged by nearest neighbour before drawing, so a one-pixel difference between outputs stays visible.
    zoom = tile / max(y1 - y0, x1 - x0)
    size = (max(1, round((x1 - x0) * zoom)), max(1, round((y1 - y0) * zoom)))

    def enlarge(a: np.ndarray) -> np.ndarray:
        return cv2.resize(np.ascontiguousarray(a[y0:y1, x0:x1]), size, interpolation=cv2.INTER_NEAREST)
    base, gt_zoom = enlarge(image), enlarge(gt)
    for label, mask in outputs.items():
        view = _draw_boundary(_draw_boundary(base.copy(), gt_zoom, _YELLOW, 2), enlarge(mask), _GREEN, 2)
        tiles.append(_captioned(_fit(view, tile, tile), label))
    gap = np.zeros((tile + _CAPTION, 4, 3), np.uint8)
    return np.concatenate([t for pair in zip(tiles, [gap] * len(tiles)) for t in pair][:-1], 1)


def tiles_panel(tiles: dict[str, np.ndarray], max_tile: int = 1024) -> np.ndarray:
    """Images side by side, each captioned with its key, as an RGB uint8 array: every tile is the first one's
    size scaled so that its long side is at most ``max_tile`` (label maps are scaled nearest-neighbour).

    Args:
        tiles: caption -> H x W x 3 uint8 RGB (H x W tiles are shown grey).
    """
    first = next(iter(tiles.values()))
    h, w = first.shape[:2]
    scale = min(1.0, max_tile / max(h, w))
    th, tw = max(1, round(h * scale)), max(1, round(w * scale))
    row = []
    for caption, tile in tiles.items():
        tile = np.repeat(tile[..., None], 3, 2) if tile.ndim == 2 else tile
        row += [_captioned(_fit(tile, tw, th, nearest=caption != next(iter(tiles))), caption),
                np.zeros((th + _CAPTION, 4, 3), np.uint8)]
    return np.concatenate(row[:-1], 1)
