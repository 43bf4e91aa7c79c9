"""The CascadePSP refinement module (RM): PSPNet on a dilated ResNet-50, as released by the authors."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.resnet import ResNet50
from models.cascadepsp.psp import PyramidPooling
from models.cascadepsp.three_level import OUTPUT_KEYS, ThreeLevelCascade
from models.cascadepsp.upsample import UpsampleBlock

__all__ = ['OUTPUT_KEYS', 'RefinementModule']


def _head(in_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, 32, kernel_size=1), nn.ReLU(inplace=True),
                         nn.Conv2d(32, 1, kernel_size=1))


class RefinementModule(ThreeLevelCascade):
    """PSPNet on a dilated ResNet-50 with stride 8, 4 and 1 heads, run as a 3-level cascade.

    Attribute names are those of the authors' released checkpoint, so its state dict (once the
    ``module.`` prefix of ``nn.DataParallel`` is stripped, see :mod:`models.checkpoint`) loads strictly.
    The heads predict from features alone (the ``prior`` masks are not added back).
    """

    arch = 'cascadepsp'

    def __init__(self) -> None:
        super().__init__()
        self.hparams = {}
        self.feats = ResNet50()
        self.psp = PyramidPooling(2048, 1024, (1, 2, 3, 6))
        self.up_1 = UpsampleBlock(1024, 1024 + 256, 512)  # skip: layer1 output, stride 4
        self.up_2 = UpsampleBlock(512, 512 + 64, 256)     # skip: stem conv output, stride 2
        self.up_3 = UpsampleBlock(256, 256 + 3, 32)       # skip: the normalised RGB image, stride 1
        self.final_28 = _head(1024)  # stride-8 head
        self.final_56 = _head(512)   # stride-4 head
        self.final_11 = nn.Conv2d(32 + 3, 32, kernel_size=1)  # stride-1 head, first conv (on features + RGB)
        self.final_21 = nn.Conv2d(32, 1, kernel_size=1)       # stride-1 head, second conv

    def encode(self, image: torch.Tensor, m1: torch.Tensor, m2: torch.Tensor, m3: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f, stem, s4 = self.feats(torch.cat((image, m1, m2, m3), 1))
        return self.psp(f), stem, s4

    def stride8(self, feats, prior: torch.Tensor) -> torch.Tensor:
        return self.final_28(feats[0])

    def stride4(self, feats, prior: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.up_1(feats[0], feats[2])
        return self.final_56(p), p

    def stride1(self, feats, decoder: torch.Tensor, image: torch.Tensor, mask: torch.Tensor,
                inter_s4: torch.Tensor) -> torch.Tensor:
        p = self.up_3(self.up_2(decoder, feats[1]), image)
        return self.final_21(F.relu(self.final_11(torch.cat([p, image], 1))))
