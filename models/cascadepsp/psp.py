"""Pyramid pooling module of PSPNet (bins 1, 2, 3, 6)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class PyramidPooling(nn.Module):
    """Adaptive-average-pool to each bin, 1x1 conv (no bias), upsample, concatenate with the input,
    then a 1x1 conv with bias and ReLU.

    Input B x C x h x w, output B x out_features x h x w.
    """

    def __init__(self, features: int = 2048, out_features: int = 1024,
                 sizes: tuple[int, ...] = (1, 2, 3, 6)) -> None:
        super().__init__()
        # Released names: psp.stages.N.1.weight (index 0 is the parameter-free pooling).
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(size), nn.Conv2d(features, features, kernel_size=1, bias=False))
            for size in sizes)
        self.bottleneck = nn.Conv2d(features * (len(sizes) + 1), out_features, kernel_size=1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        h, w = feats.shape[-2:]
        priors = [F.interpolate(stage(feats), size=(h, w), mode='bilinear', align_corners=False)
                  for stage in self.stages]
        return F.relu(self.bottleneck(torch.cat(priors + [feats], 1)))
