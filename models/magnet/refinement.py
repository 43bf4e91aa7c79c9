"""MagNet's refinement module ``RefinementMagNet(C)`` (MAGNET.md §2): it fuses two C-class softmax maps.

Module names are the authors' (``bn0``, ``conv1``, ``residual.0.downsample.0``, ``seg_conv``; 60 state-dict
entries), so ``cityscapes_refinement_*.pth`` and ``deepglobe_refinement.pth`` load strictly.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from models.resnet import Bottleneck

#: The authors' BatchNorm momentum in this module (PyTorch's default is 0.1).
BN_MOMENTUM = 0.01


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)


class RefinementMagNet(nn.Module):
    """bn0 on cat(A, B) -> 3x3 conv 2C->64 -> 3x3 conv 64->64 -> 2 bottlenecks (planes 32) -> 1x1 conv -> C logits.

    Args:
        num_classes: C.
        use_bn: the authors' ``use_bn`` (True in every released file): batch-normalise the input maps.
    """

    arch = 'magnet_refinement'

    def __init__(self, num_classes: int = 19, use_bn: bool = True) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f'num_classes must be at least 1, got {num_classes}')
        self.hparams = dict(num_classes=num_classes, use_bn=use_bn)
        c2 = 2 * num_classes
        self.use_bn = use_bn
        if use_bn:
            self.bn0 = _bn(c2)
        self.conv1 = nn.Conv2d(c2, 64, 3, padding=1, bias=False)
        self.bn1 = _bn(64)
        self.conv2 = nn.Conv2d(64, 64, 3, padding=1, bias=False)
        self.bn2 = _bn(64)
        self.relu = nn.ReLU(inplace=True)
        downsample = nn.Sequential(nn.Conv2d(64, 128, 1, bias=False), _bn(128))
        self.residual = nn.Sequential(Bottleneck(64, 32, downsample=downsample, bn_momentum=BN_MOMENTUM),
                                      Bottleneck(128, 32, bn_momentum=BN_MOMENTUM))
        self.seg_conv = nn.Conv2d(128, num_classes, 1, bias=False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a, b: N x C x H x W softmax maps -> N x C x H x W logits.

        The order of the two maps is the caller's (MAGNET.md Q1): at test time ``(fine, coarse)``, in the
        authors' training ``(coarse, fine)``."""
        x = torch.cat([a, b], dim=1)
        if self.use_bn:
            x = self.bn0(x)
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        return self.seg_conv(self.residual(x))
