"""MagNet's Cityscapes backbone ``hrnet18+ocr``: HRNetV2-W18-Small-v2 with a stride-1 stem (``full_os``) and an
OCR head (MAGNET.md §3.2; Q16). Names are those of HRNet-Semantic-Segmentation (``stage3.1.fuse_layers.2.0.1.0``,
``ocr_distri_head.object_context_block.f_pixel.1.0``, ``aux_head.3``): 924 state-dict entries.

The backbone's batch norms have momentum 0.01, the OCR head's PyTorch's 0.1; every upsampling is bilinear with
``align_corners=True``. Returned logits: ``(out + 0.4 * aux) / 1.4``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.resnet import Bottleneck

BN_MOMENTUM = 0.01
#: W18-Small-v2: (modules, branches' channels) of stages 2-4; every branch has 2 basic blocks.
STAGES = ((1, (18, 36)), (3, (18, 36, 72)), (2, (18, 36, 72, 144)))


def _bn(channels: int, momentum: float = BN_MOMENTUM) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=momentum)


def _up(x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode='bilinear', align_corners=True)


class BasicBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = _bn(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = _bn(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


def _conv_bn(cin: int, cout: int, relu: bool, stride: int = 2) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), _bn(cout)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches, then every output branch sums every input branch resized to it (relu at the end)."""

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        n = len(channels)
        self.branches = nn.ModuleList(nn.Sequential(BasicBlock(c), BasicBlock(c)) for c in channels)
        fuse = []
        for i in range(n):
            row: list[nn.Module | None] = []
            for j in range(n):
                if j > i:
                    row.append(nn.Sequential(nn.Conv2d(channels[j], channels[i], 1, bias=False), _bn(channels[i])))
                elif j == i:
                    row.append(None)
                else:  # i - j stride-2 convs; only the last changes the channels, and has no relu
                    row.append(nn.Sequential(*[_conv_bn(channels[j], channels[j], relu=True) for _ in range(i - j - 1)],
                                             _conv_bn(channels[j], channels[i], relu=False)))
            fuse.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(fuse)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for i, row in enumerate(self.fuse_layers):
            y = xs[0] if i == 0 else row[0](xs[0])
            for j in range(1, len(xs)):
                if j == i:
                    y = y + xs[j]
                elif j > i:
                    y = y + _up(row[j](xs[j]), xs[i].shape[-2:])
                else:
                    y = y + row[j](xs[j])
            out.append(self.relu(y))
        return out


def _bn_relu(channels: int) -> nn.Sequential:
    """The OCR head's ``BNReLU`` (default momentum)."""
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class ObjectAttentionBlock(nn.Module):
    """Pixels attend to the C object-region vectors (key channels 256)."""

    def __init__(self, channels: int = 512, key_channels: int = 256) -> None:
        super().__init__()
        self.key_channels = key_channels

        def proj(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 1, bias=False), _bn_relu(cout)]
        self.f_pixel = nn.Sequential(*proj(channels, key_channels), *proj(key_channels, key_channels))
        self.f_object = nn.Sequential(*proj(channels, key_channels), *proj(key_channels, key_channels))
        self.f_down = nn.Sequential(*proj(channels, key_channels))
        self.f_up = nn.Sequential(*proj(key_channels, channels))

    def forward(self, x: torch.Tensor, proxy: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        query = self.f_pixel(x).view(b, self.key_channels, -1).permute(0, 2, 1)
        key = self.f_object(proxy).view(b, self.key_channels, -1)
        value = self.f_down(proxy).view(b, self.key_channels, -1).permute(0, 2, 1)
        sim = torch.softmax(self.key_channels ** -0.5 * torch.matmul(query, key), dim=-1)
        context = torch.matmul(sim, value).permute(0, 2, 1).contiguous().view(b, self.key_channels, h, w)
        return self.f_up(context)


class SpatialOCR(nn.Module):
    def __init__(self, channels: int = 512, key_channels: int = 256, dropout: float = 0.05) -> None:
        super().__init__()
        self.object_context_block = ObjectAttentionBlock(channels, key_channels)
        self.conv_bn_dropout = nn.Sequential(nn.Conv2d(2 * channels, channels, 1, bias=False), _bn_relu(channels),
                                             nn.Dropout2d(dropout))

    def forward(self, feats: torch.Tensor, proxy: torch.Tensor) -> torch.Tensor:
        return self.conv_bn_dropout(torch.cat([self.object_context_block(feats, proxy), feats], 1))


class HRNetOCR(nn.Module):
    """HRNetV2-W18-Small-v2 (stride-1 stem: branches at 1, 1/2, 1/4, 1/8 of the input) + OCR.

    ``forward(x)`` returns logits N x C x H x W = (out + 0.4 aux) / 1.4; ``forward(x, return_auxiliary=True)``
    returns (out, aux), the form the backbone's training uses."""

    arch = 'magnet_hrnet18_ocr'

    def __init__(self, num_classes: int = 19) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f'num_classes must be at least 1, got {num_classes}')
        self.hparams = dict(num_classes=num_classes)
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = _bn(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 1, 1, bias=False)
        self.bn2 = _bn(64)
        self.relu = nn.ReLU(inplace=True)
        downsample = nn.Sequential(nn.Conv2d(64, 256, 1, bias=False), _bn(256))
        self.layer1 = nn.Sequential(Bottleneck(64, 64, downsample=downsample, bn_momentum=BN_MOMENTUM),
                                    Bottleneck(256, 64, bn_momentum=BN_MOMENTUM))
        previous = (256,)
        for s, (modules, channels) in enumerate(STAGES, start=1):
            setattr(self, f'transition{s}', self._transition(previous, channels))
            setattr(self, f'stage{s + 1}', nn.Sequential(*[HighResolutionModule(channels) for _ in range(modules)]))
            previous = channels
        last = sum(previous)  # 270
        self.conv3x3_ocr = nn.Sequential(nn.Conv2d(last, 512, 3, 1, 1), nn.BatchNorm2d(512), nn.ReLU(inplace=True))
        self.ocr_distri_head = SpatialOCR(512, 256)
        self.cls_head = nn.Conv2d(512, num_classes, 1)
        self.aux_head = nn.Sequential(nn.Conv2d(last, last, 1), nn.BatchNorm2d(last), nn.ReLU(inplace=True),
                                      nn.Conv2d(last, num_classes, 1))

    @staticmethod
    def _transition(pre: tuple[int, ...], cur: tuple[int, ...]) -> nn.ModuleList:
        layers: list[nn.Module | None] = []
        for i, c in enumerate(cur):
            if i < len(pre):
                layers.append(_conv_bn(pre[i], c, relu=True, stride=1) if pre[i] != c else None)
            else:  # a new branch from the last previous one, halved (i + 1 - len(pre)) times
                steps = i + 1 - len(pre)
                layers.append(nn.Sequential(*[_conv_bn(pre[-1], c if k == steps - 1 else pre[-1], relu=True)
                                              for k in range(steps)]))
        return nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, return_auxiliary: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x: N x 3 x H x W normalised RGB -> logits N x C x H x W (see the class docstring)."""
        size = x.shape[-2:]
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer1(self.relu(self.bn2(self.conv2(x))))
        xs = [x]
        for s in range(1, len(STAGES) + 1):
            transition = getattr(self, f'transition{s}')
            xs = [xs[i] if t is None else t(xs[min(i, len(xs) - 1)]) for i, t in enumerate(transition)]
            xs = getattr(self, f'stage{s + 1}')(xs)
        feats = torch.cat([xs[0]] + [_up(y, xs[0].shape[-2:]) for y in xs[1:]], 1)
        aux = self.aux_head(feats)
        feats = self.conv3x3_ocr(feats)
        b, c = aux.shape[:2]
        probs = torch.softmax(aux.view(b, c, -1), dim=2)  # each class's distribution over the positions
        context = torch.matmul(probs, feats.view(b, feats.shape[1], -1).permute(0, 2, 1))
        context = context.permute(0, 2, 1).unsqueeze(3)  # N x 512 x C x 1
        out = self.cls_head(self.ocr_distri_head(feats, context))
        out, aux = _up(out, size), _up(aux, size)
        return (out, aux) if return_auxiliary else (out + 0.4 * aux) / 1.4
