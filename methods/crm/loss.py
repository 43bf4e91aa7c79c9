"""CRM's training loss (the authors' ``util/metrics_compute_crm.py``): one output, four terms, means over every
pixel: CE on logits against the ground truth binarised at 0.5, L1 and L2 on probabilities against the soft
ground truth, and the gradient loss |S(gt) - S(p)| (CascadePSP's Sobel magnitude)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from util.gradient import GradientMagnitude


class CRMLoss(nn.Module):
    def __init__(self, ce: float = 1.0, l1: float = 0.5, l2: float = 0.5, grad: float = 2.0) -> None:
        super().__init__()
        self.weights = (ce, l1, l2, grad)
        self.gradient = GradientMagnitude()

    def forward(self, logits: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
        """logits: B x 1 x H x W; gt: B x 1 x H x W soft in [0, 1]. Returns every term and ``total_loss``."""
        logits = logits.float()
        prob = torch.sigmoid(logits)
        terms = {'ce_loss': F.binary_cross_entropy_with_logits(logits, (gt > 0.5).to(logits.dtype)),
                 'l1_loss': F.l1_loss(prob, gt), 'l2_loss': F.mse_loss(prob, gt),
                 'grad_loss': F.l1_loss(self.gradient(prob), self.gradient(gt))}
        ce, l1, l2, grad = self.weights
        terms['total_loss'] = (ce * terms['ce_loss'] + l1 * terms['l1_loss'] + l2 * terms['l2_loss']
                               + grad * terms['grad_loss'])
        return terms
