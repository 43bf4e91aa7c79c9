"""The CascadePSP training loss (authors' ``compute_loss_and_metrics`` with their default weights).

Six outputs, in this order (the order of the weight vectors and of ``--ce_weight`` etc.):
  0 level-3 stride 1 (``out_224``), 1 level-1 stride 8 (``out_28``), 2 level-2 stride 4 (``out_56``),
  3 level-2 stride 8 (``out_28_2``), 4 level-3 stride 8 (``out_28_3``), 5 level-3 stride 4 (``out_56_2``).
Per output: CE on logits against the ground truth binarised at 0.5, L1 and L2 on probabilities against
the soft ground truth; plus ``grad_weight`` x the gradient loss on the stride-1 output.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from util.gradient import GradientMagnitude

#: (output key suffix, name used in logs) in the loss order above.
LOSS_OUTPUTS = (('224', 'os1'), ('28', 'os8_level1'), ('56', 'os4_level2'),
                ('28_2', 'os8_level2'), ('28_3', 'os8_level3'), ('56_2', 'os4_level3'))


@dataclass
class LossWeights:
    """Authors' defaults: stride-8 outputs learn the coarse shape (CE), stride 1 the exact
    boundary (L1 + L2 + gradient), stride 4 both, at half weight."""
    ce: list[float] = field(default_factory=lambda: [0.0, 1.0, 0.5, 1.0, 1.0, 0.5])
    l1: list[float] = field(default_factory=lambda: [1.0, 0.0, 0.25, 0.0, 0.0, 0.25])
    l2: list[float] = field(default_factory=lambda: [1.0, 0.0, 0.25, 0.0, 0.0, 0.25])
    grad: float = 5.0


class CascadeLoss(nn.Module):
    """Weighted sum of the CE/L1/L2 terms of the six outputs and the stride-1 gradient loss."""

    def __init__(self, weights: LossWeights | None = None) -> None:
        super().__init__()
        self.weights = weights or LossWeights()
        for name in ('ce', 'l1', 'l2'):
            if len(getattr(self.weights, name)) != len(LOSS_OUTPUTS):
                raise ValueError(f'{name} weights need {len(LOSS_OUTPUTS)} values')
        self.gradient = GradientMagnitude()

    def forward(self, outputs: dict[str, torch.Tensor], gt: torch.Tensor) -> dict[str, torch.Tensor]:
        """
        Args:
            outputs: the model's dict (``out_*`` logits and ``pred_*`` probabilities, B x 1 x H x W).
            gt: B x 1 x H x W soft ground truth in [0, 1].

        Returns:
            ``total_loss``, ``grad_loss`` and ``ce[name]``, ``l1[name]``, ``l2[name]`` per output name.
        """
        w = self.weights
        hard = (gt > 0.5).to(gt.dtype)
        terms: dict[str, torch.Tensor] = {}
        total = gt.new_zeros(())
        for i, (suffix, name) in enumerate(LOSS_OUTPUTS):
            logits, prob = outputs['out_' + suffix].float(), outputs['pred_' + suffix].float()
            terms[f'ce[{name}]'] = F.binary_cross_entropy_with_logits(logits, hard)
            terms[f'l1[{name}]'] = F.l1_loss(prob, gt)
            terms[f'l2[{name}]'] = F.mse_loss(prob, gt)
            total = total + (w.ce[i] * terms[f'ce[{name}]'] + w.l1[i] * terms[f'l1[{name}]']
                             + w.l2[i] * terms[f'l2[{name}]'])
        terms['grad_loss'] = F.l1_loss(self.gradient(outputs['pred_224'].float()), self.gradient(gt))
        terms['total_loss'] = total + w.grad * terms['grad_loss']
        return terms
