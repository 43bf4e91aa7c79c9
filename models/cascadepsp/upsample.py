"""Decoder block: x2 bilinear upsampling fused with a skip connection through pre-activation convs."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _preact_convs(in_channels: int, out_channels: int) -> nn.Sequential:
    # BN-ReLU-conv twice; the Sequential indices (0, 2, 3, 5) are the released checkpoint's names.
    return nn.Sequential(
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1),
    )


class UpsampleBlock(nn.Module):
    """Upsample ``x`` (B x x_channels x h x w) by 2, concatenate ``skip`` (B x s x 2h x 2w) and refine.

    ``in_channels`` = x_channels + s. Output: B x out_channels x 2h x 2w.

    Unless ``exact`` (an attribute, not saved), the 1x1 shortcut runs before the upsampling (a 1x1
    convolution commutes with bilinear upsampling, whose weights sum to one): the same function on a quarter
    of the pixels, equal to the authors' order (``exact = True``) up to float rounding.
    """

    exact = False

    def __init__(self, x_channels: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = _preact_convs(in_channels, out_channels)
        self.conv2 = _preact_convs(out_channels, out_channels)
        self.shortcut = nn.Conv2d(x_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False)
        p = self.conv(torch.cat([up, skip], 1))
        if self.exact:
            p += self.shortcut(up)
        else:
            del up
            p += F.interpolate(self.shortcut(x), scale_factor=2, mode='bilinear', align_corners=False)
        return self.conv2(p).add_(p)
