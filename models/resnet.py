"""Dilated ResNet-50 feature extractor (output stride 8) with an RGB + mask stem, shared by the authors' networks
(CascadePSP's RM: 6 input channels; CRM: 4).

Module names follow the authors' released checkpoints (``feats.conv1``, ``feats.layer3.0.downsample.0``,
...), so their state dicts load without any key mapping.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class Bottleneck(nn.Module):
    """ResNet bottleneck block (1x1 -> 3x3 -> 1x1, expansion 4); the stride sits on the 3x3 conv."""

    expansion = 4
    #: Convolutions whose output only their batch norm reads (inference may fold them: util.fastconv).
    conv_bn_pairs = (('conv1', 'bn1'), ('conv2', 'bn2'), ('conv3', 'bn3'))

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, dilation: int = 1, bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=bn_momentum)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, dilation=dilation,
                               padding=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=bn_momentum)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion, momentum=bn_momentum)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += residual  # in place: one full-size activation fewer
        return self.relu(out)


class ResNet50(nn.Module):
    """ResNet-50 (blocks 3-4-6-3) for ``in_channels`` inputs (RGB + mask channels: 6 for CascadePSP's RM, 4 for
    CRM; 3 for MagNet's FPN).

    ``output_stride`` 8 (CascadePSP, CRM): layer3 and layer4 keep stride 1 and use dilation 2 and 4. As in the
    released models, the first block of each dilated layer keeps dilation 1: only the blocks after it are
    dilated. ``output_stride`` 32: torchvision's ResNet-50 without its classifier (MagNet's FPN).
    """

    def __init__(self, layers: tuple[int, int, int, int] = (3, 4, 6, 3), in_channels: int = 6,
                 output_stride: int = 8) -> None:
        super().__init__()
        if output_stride not in (8, 32):
            raise ValueError(f'output_stride must be 8 (dilated) or 32 (torchvision\'s ResNet-50), got {output_stride}')
        dilated = output_stride == 8
        self.in_channels = in_channels
        self.inplanes = 64
        self.conv1 = nn.Conv2d(self.in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], dilation=2) if dilated else self._make_layer(256, layers[2], 2)
        self.layer4 = self._make_layer(512, layers[3], dilation=4) if dilated else self._make_layer(512, layers[3], 2)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes, dilation=dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: B x 6 x H x W (H, W multiples of 8).

        Returns (layer4 output B x 2048 x H/8 x W/8,
                 raw stem-conv output before its batch norm B x 64 x H/2 x W/2,
                 layer1 output B x 256 x H/4 x W/4).
        """
        stem = self.conv1(x)
        x = self.maxpool(self.relu(self.bn1(stem)))
        s4 = self.layer1(x)
        x = self.layer4(self.layer3(self.layer2(s4)))
        return x, stem, s4

    def stages(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """CRM's features: (stem after BN+ReLU, stride 2, 64 ch; layer1, stride 4, 256 ch; layer3, stride 8,
        1024 ch). layer4 is not computed. Any input size (each stride-2 step maps n to ceil(n / 2))."""
        x1 = self.relu(self.bn1(self.conv1(x)))
        x2 = self.layer1(self.maxpool(x1))
        return x1, x2, self.layer3(self.layer2(x2))
