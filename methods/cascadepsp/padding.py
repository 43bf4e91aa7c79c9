"""Forward pass on any image size: pad to a multiple of 8 the authors' way, then crop back."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def padded_size(h: int, w: int) -> tuple[int, int]:
    """The size the authors pad an h x w input to.

    When either side is not a multiple of 8, *each* side becomes ``(side // 8 + 1) * 8``, so a side that
    already is a multiple of 8 still gains 8 pixels. The padding changes the network's output (the
    pyramid pooling sees it), so the released numbers depend on this exact rule.
    """
    if h % 8 == 0 and w % 8 == 0:
        return h, w
    return (h // 8 + 1) * 8, (w // 8 + 1) * 8


def safe_forward(model: nn.Module, image: torch.Tensor, mask: torch.Tensor,
                 inter_s8: torch.Tensor | None = None, inter_s4: torch.Tensor | None = None,
                 keys: tuple[str, ...] = ('pred_224', 'pred_28_3', 'pred_56_2')) -> dict[str, torch.Tensor]:
    """Pad bottom/right (image with 0, masks with -1), run ``model`` for ``keys`` alone, crop them back to H x W.

    Shapes as in :meth:`models.RefinementModule.forward`, without the multiple-of-8 requirement.
    """
    h, w = image.shape[-2:]
    ph, pw = padded_size(h, w)
    if (ph, pw) != (h, w):
        pad = (0, pw - w, 0, ph - h)
        image = F.pad(image, pad, value=0.0)
        mask = F.pad(mask, pad, value=-1.0)
        inter_s8 = None if inter_s8 is None else F.pad(inter_s8, pad, value=-1.0)
        inter_s4 = None if inter_s4 is None else F.pad(inter_s4, pad, value=-1.0)
    out = model(image, mask, inter_s8, inter_s4, outputs=keys)
    return {k: out[k][..., :h, :w] for k in keys}
