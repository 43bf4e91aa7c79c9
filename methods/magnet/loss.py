"""MagNet's refinement loss: OHEM cross-entropy (HRNet-Semantic-Segmentation's ``OhemCrossEntropy``, MAGNET.md §9)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class OhemCrossEntropy(nn.Module):
    """Mean cross-entropy over the valid pixels whose true-class probability is below
    max(thres, the (min_kept)-th smallest such probability) (strict). With ``min_kept`` at least the number of
    valid pixels, all but the easiest pixel(s) count (Q10).

    score: N x C x h x w logits (resized bilinearly to the target's size if they differ);
    target: N x H x W class indices, ``ignore_label`` ignored (-1: none)."""

    def __init__(self, ignore_label: int = -1, thres: float = 0.7, min_kept: int = 100000) -> None:
        super().__init__()
        self.ignore_label, self.thres, self.min_kept = ignore_label, thres, max(1, min_kept)

    def forward(self, score: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if score.shape[-2:] != target.shape[-2:]:
            score = F.interpolate(score, size=target.shape[-2:], mode='bilinear', align_corners=False)
        target = target.long()
        pixel_losses = F.cross_entropy(score, target, ignore_index=self.ignore_label, reduction='none').view(-1)
        valid = target.view(-1) != self.ignore_label
        if not bool(valid.any()):
            raise ValueError('OHEM loss: every pixel of the batch is ignored')
        tmp = target.clone()
        tmp[tmp == self.ignore_label] = 0
        prob = torch.softmax(score, dim=1).gather(1, tmp.unsqueeze(1)).view(-1)[valid]
        pixel_losses = pixel_losses[valid]
        prob, order = prob.contiguous().sort()
        min_value = prob[min(self.min_kept, prob.numel() - 1)]
        threshold = max(float(min_value.detach()), self.thres)
        return pixel_losses[order][prob < threshold].mean()
