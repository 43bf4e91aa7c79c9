"""MagNet's DeepGlobe backbone ``fpn``: a ResNet-50 feature pyramid with a linear head (MAGNET.md §3.1).

Names are the authors' (``resnet_backbone.layer1.0.conv1``, ``toplayer``, ``latlayer1``, ``smooth1_1``,
``classify``): 344 state-dict entries.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.resnet import ResNet50


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode='bilinear', align_corners=False)


class ResnetFPN(nn.Module):
    """ResNet-50 (torchvision layout, stride 32) + FPN; every head conv has a bias and no nonlinearity follows
    it (the authors' head is linear). Returns logits N x C x H x W at the input's size.

    Unlike the authors' constructor, no ImageNet weights are downloaded (MAGNET.md Q17): released files and
    :func:`models.checkpoint.load_weights` give the weights."""

    arch = 'magnet_fpn'

    def __init__(self, num_classes: int = 7) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f'num_classes must be at least 1, got {num_classes}')
        self.hparams = dict(num_classes=num_classes)
        self.resnet_backbone = ResNet50(in_channels=3, output_stride=32)
        self.toplayer = nn.Conv2d(2048, 256, 1)
        self.latlayer1 = nn.Conv2d(1024, 256, 1)
        self.latlayer2 = nn.Conv2d(512, 256, 1)
        self.latlayer3 = nn.Conv2d(256, 256, 1)
        for level in range(1, 5):
            setattr(self, f'smooth{level}_1', nn.Conv2d(256, 256, 3, padding=1))
        for level in range(1, 5):
            setattr(self, f'smooth{level}_2', nn.Conv2d(256, 128, 3, padding=1))
        self.classify = nn.Conv2d(512, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: N x 3 x H x W normalised RGB -> logits N x C x H x W."""
        r = self.resnet_backbone
        c1 = r.maxpool(r.relu(r.bn1(r.conv1(x))))
        c2 = r.layer1(c1)
        c3 = r.layer2(c2)
        c4 = r.layer3(c3)
        c5 = r.layer4(c4)
        p5 = self.toplayer(c5)
        p4 = _up(p5, c4) + self.latlayer1(c4)
        p3 = _up(p4, c3) + self.latlayer2(c3)
        p2 = _up(p3, c2) + self.latlayer3(c2)
        p5 = self.smooth1_2(self.smooth1_1(p5))
        p4 = self.smooth2_2(self.smooth2_1(p4))
        p3 = self.smooth3_2(self.smooth3_1(p3))
        p2 = self.smooth4_2(self.smooth4_1(p2))
        out = self.classify(torch.cat([_up(p5, p2), _up(p4, p2), _up(p3, p2), p2], dim=1))
        return F.interpolate(out, size=x.shape[-2:], mode='bilinear', align_corners=False)
