"""Pyramid pooling module of PSPNet (bins 1, 2, 3, 6)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _pooling_matrix(n: int, bins: int, like: torch.Tensor) -> torch.Tensor:
    """bins x n averaging matrix of adaptive average pooling: bin i averages [floor(i n / bins),
    ceil((i + 1) n / bins))."""
    i = torch.arange(bins, device=like.device)
    start, end = (i * n) // bins, ((i + 1) * n + bins - 1) // bins
    k = torch.arange(n, device=like.device)
    inside = (k[None, :] >= start[:, None]) & (k[None, :] < end[:, None])
    return inside.to(like.dtype) / (end - start)[:, None].to(like.dtype)


def adaptive_avg_pool2d(x: torch.Tensor, bins: int) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, bins)`` (B x C x h x w -> B x C x bins x bins) as two matrix products, so an
    exported graph (ONNX) keeps the input size dynamic: PyTorch's exporter fixes the adaptive pooling's windows
    at the example's size. Equal up to float rounding."""
    h, w = x.shape[-2:]
    return _pooling_matrix(h, bins, x) @ x @ _pooling_matrix(w, bins, x).T


class PyramidPooling(nn.Module):
    """Adaptive-average-pool to each bin, 1x1 conv (no bias), upsample, concatenate with the input,
    then a 1x1 conv with bias and ReLU.

    Input B x C x h x w, output B x out_features x h x w.

    Unless ``exact`` (an attribute, not saved), the bottleneck is computed without the concatenation: a 1x1
    convolution is linear and commutes with bilinear upsampling (whose weights sum to one), so each bin's
    slice of the bottleneck is applied at the bin's size (at most 6 x 6) before upsampling. The same function,
    with a fifth of the multiplications (the bins are four of the five input slices) and no
    (len(sizes) + 1) x C x h x w concatenation; float32 results differ from the authors' concatenated form
    (``exact = True``) by rounding only. While exported to ONNX, the pooling is :func:`adaptive_avg_pool2d`.
    """

    exact = False

    def __init__(self, features: int = 2048, out_features: int = 1024,
                 sizes: tuple[int, ...] = (1, 2, 3, 6)) -> None:
        super().__init__()
        # Released names: psp.stages.N.1.weight (index 0 is the parameter-free pooling).
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(size), nn.Conv2d(features, features, kernel_size=1, bias=False))
            for size in sizes)
        self.bottleneck = nn.Conv2d(features * (len(sizes) + 1), out_features, kernel_size=1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        h, w = feats.shape[-2:]
        if self.exact:
            priors = [F.interpolate(stage(feats), size=(h, w), mode='bilinear', align_corners=False)
                      for stage in self.stages]
            return F.relu(self.bottleneck(torch.cat(priors + [feats], 1)))
        c = feats.shape[1]
        weight = self.bottleneck.weight
        out = F.conv2d(feats, weight[:, len(self.stages) * c:], self.bottleneck.bias)
        exporting = torch.onnx.is_in_onnx_export()
        for i, stage in enumerate(self.stages):
            pooled = adaptive_avg_pool2d(feats, stage[0].output_size) if exporting else stage[0](feats)
            prior = F.conv2d(stage[1](pooled), weight[:, i * c:(i + 1) * c])
            out += F.interpolate(prior, size=(h, w), mode='bilinear', align_corners=False)
        return out.relu_()
