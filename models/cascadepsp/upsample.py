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
    """

    def __init__(self, x_channels: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = _preact_convs(in_channels, out_channels)
        self.conv2 = _preact_convs(out_channels, out_channels)
        self.shortcut = nn.Conv2d(x_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False)
        p = self.conv(torch.cat([x, skip], 1)) + self.shortcut(x)
        return p + self.conv2(p)
