"""A MagNet system: a segmentation backbone and its refinement module(s), one per stage or one for all (the
authors release them as separate files; :func:`methods.magnet.weights.load_system` reads those)."""
from __future__ import annotations

import torch.nn as nn

from models.magnet.fpn import ResnetFPN
from models.magnet.hrnet_ocr import HRNetOCR
from models.magnet.refinement import RefinementMagNet

#: The authors' ``--model`` names.
BACKBONES = {'fpn': ResnetFPN, 'hrnet18+ocr': HRNetOCR}


class MagNetSystem(nn.Module):
    """``backbone`` (N x 3 x h x w normalised RGB -> N x C x h x w logits) and ``refinements`` (stage i uses
    ``refinements[min(i, len) - 1]``)."""

    arch = 'magnet'

    def __init__(self, backbone: str = 'fpn', num_classes: int = 7, refinements: int = 1) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f'unknown MagNet backbone {backbone!r}; known: {", ".join(BACKBONES)}')
        if refinements < 1:
            raise ValueError(f'a MagNet system needs at least one refinement module, got {refinements}')
        self.hparams = dict(backbone=backbone, num_classes=num_classes, refinements=refinements)
        self.num_classes = num_classes
        self.backbone = BACKBONES[backbone](num_classes)
        self.refinements = nn.ModuleList(RefinementMagNet(num_classes) for _ in range(refinements))

    def refinement(self, stage: int) -> RefinementMagNet:
        """The module of stage ``stage`` (1-based): one per stage, or the last for the later stages."""
        return self.refinements[min(stage, len(self.refinements)) - 1]
