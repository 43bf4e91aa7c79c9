"""The CascadePSP refinement module (RM): a 3-level cascade run inside one forward pass."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.backbone import ResNet50
from models.psp import PyramidPooling
from models.upsample import UpsampleBlock

#: The twelve outputs of a full forward pass, by the authors' names. The number is the side a
#: 224 crop has at that stride (28 = stride 8, 56 = stride 4, 224 = stride 1); ``out_*`` are logits,
#: ``pred_*`` their sigmoid; ``_2``/``_3`` mark later cascade levels.
#: Level 1 gives 28; level 2 gives 28_2 and 56; level 3 gives 28_3, 56_2 and 224.
OUTPUT_KEYS = ('out_28', 'pred_28', 'out_28_2', 'pred_28_2', 'out_56', 'pred_56',
               'out_28_3', 'pred_28_3', 'out_56_2', 'pred_56_2', 'out_224', 'pred_224')


def _head(in_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, 32, kernel_size=1), nn.ReLU(inplace=True),
                         nn.Conv2d(32, 1, kernel_size=1))


class RefinementModule(nn.Module):
    """PSPNet on a dilated ResNet-50 with stride 8, 4 and 1 heads, run as a 3-level cascade.

    Attribute names are those of the authors' released checkpoint, so its state dict (once the
    ``module.`` prefix of ``nn.DataParallel`` is stripped, see :mod:`models.checkpoint`) loads strictly.
    """

    def __init__(self) -> None:
        super().__init__()
        self.feats = ResNet50()
        self.psp = PyramidPooling(2048, 1024, (1, 2, 3, 6))
        self.up_1 = UpsampleBlock(1024, 1024 + 256, 512)  # skip: layer1 output, stride 4
        self.up_2 = UpsampleBlock(512, 512 + 64, 256)     # skip: stem conv output, stride 2
        self.up_3 = UpsampleBlock(256, 256 + 3, 32)       # skip: the normalised RGB image, stride 1
        self.final_28 = _head(1024)  # stride-8 head
        self.final_56 = _head(512)   # stride-4 head
        self.final_11 = nn.Conv2d(32 + 3, 32, kernel_size=1)  # stride-1 head, first conv (on features + RGB)
        self.final_21 = nn.Conv2d(32, 1, kernel_size=1)       # stride-1 head, second conv

    def _encode(self, image: torch.Tensor, m1: torch.Tensor, m2: torch.Tensor, m3: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f, stem, s4 = self.feats(torch.cat((image, m1, m2, m3), 1))
        return self.psp(f), stem, s4

    @staticmethod
    def _up(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(logits, size=size, mode='bilinear', align_corners=False)

    def forward(self, image: torch.Tensor, mask: torch.Tensor,
                inter_s8: torch.Tensor | None = None, inter_s4: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        """Run the cascade.

        Args:
            image: B x 3 x H x W, RGB/255 normalised with the ImageNet mean/std. H and W must be
                multiples of 8 (callers pad, see :func:`util.padding.pad_to_multiple_of_8`).
            mask: B x 1 x H x W input mask in [-1, 1].
            inter_s8: optional B x 1 x H x W map in [-1, 1] that replaces the level-1 output, so
                level 1 is skipped (the Local step passes the binarised global mask).
            inter_s4: optional B x 1 x H x W map in [-1, 1]; with ``inter_s8`` it replaces the level-2
                outputs (as the stride-8 and stride-4 inputs of level 3), so levels 1 and 2 are skipped.

        Returns:
            A dict of B x 1 x H x W tensors keyed as in :data:`OUTPUT_KEYS`: logits ``out_*`` and
            probabilities ``pred_*`` in [0, 1]. Levels that were skipped give no entry.
        """
        if image.shape[-2] % 8 or image.shape[-1] % 8:
            raise ValueError(f'image sides must be multiples of 8, got {tuple(image.shape[-2:])}; '
                             'pad it first (util.padding)')
        if inter_s4 is not None and inter_s8 is None:
            raise ValueError('inter_s4 needs inter_s8: level 3 takes both level-2 outputs')
        size = tuple(image.shape[-2:])
        out: dict[str, torch.Tensor] = {}

        if inter_s8 is None:  # level 1: mask in all three mask channels
            p, _, _ = self._encode(image, mask, mask, mask)
            out['out_28'] = self._up(self.final_28(p), size)
            inter_s8 = torch.tanh(out['out_28'])

        if inter_s4 is None:  # level 2: refine the level-1 stride-8 output
            p, _, s4 = self._encode(image, mask, inter_s8, inter_s8)
            out['out_28_2'] = self._up(self.final_28(p), size)
            out['out_56'] = self._up(self.final_56(self.up_1(p, s4)), size)
            inter_s8, inter_s4 = torch.tanh(out['out_28_2']), torch.tanh(out['out_56'])

        # Level 3: all three strides.
        p, stem, s4 = self._encode(image, mask, inter_s8, inter_s4)
        out['out_28_3'] = self._up(self.final_28(p), size)
        p = self.up_1(p, s4)
        out['out_56_2'] = self._up(self.final_56(p), size)
        p = self.up_3(self.up_2(p, stem), image)
        out['out_224'] = self.final_21(F.relu(self.final_11(torch.cat([p, image], 1))))

        for key in list(out):
            out['pred' + key[3:]] = torch.sigmoid(out[key])
        return out
