"""The gradient magnitude of CascadePSP's (and CRM's) gradient loss."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class GradientMagnitude(nn.Module):
    """sqrt(gx^2 + gy^2 + eps) of a 3x3-mean-filtered map, Sobel kernels / 4, zero padding throughout.

    B x 1 x H x W -> B x 1 x H x W.
    """

    def __init__(self, eps: float = 1e-4) -> None:
        super().__init__()
        self.eps = eps
        sobel_x = torch.tensor([[1., 0., -1.], [2., 0., -2.], [1., 0., -1.]]) / 4
        self.register_buffer('mean', torch.full((1, 1, 3, 3), 1 / 9), persistent=False)
        self.register_buffer('kernels', torch.stack([sobel_x, sobel_x.t()])[:, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.mean.to(x.dtype), padding=1)
        g = F.conv2d(x, self.kernels.to(x.dtype), padding=1)
        return torch.sqrt(g[:, :1] ** 2 + g[:, 1:] ** 2 + self.eps)
